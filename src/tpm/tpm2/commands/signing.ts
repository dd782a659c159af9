/**
 * Signing commands (TPM 2.0 Part 3, 15.5 HMAC, 17.2 HMAC_Start — its sequence is completed by
 * SequenceUpdate / SequenceComplete in hash.ts — and clause 20, VerifySignature and Sign).
 */
import { constantTimeEqual, digestSize, hmac, startHmac } from '../../crypto/hash.ts';
import { ALG, CC, RH, ST } from '../constants.ts';
import { objectAt } from './object.ts';
import { command } from '../command.ts';
import { RC, TpmError } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { algHashOrNull, authBuf, digestBuf, hashCheckTicket, maxBuffer, type HashCheckTicket } from '../types/basic.ts';
import { dhObject } from '../types/handles.ts';
import { OBJECT_ATTR as A } from '../types/public.ts';
import { tkVerified } from '../types/policy.ts';
import { sigScheme, signature } from '../types/signature.ts';
import { verifiedTicket } from '../auth/tickets.ts';
import { keyedHashHmac, selectSignScheme, signDigest, verifyDigest } from '../objects/sign.ts';
import type { TpmObject } from '../objects/model.ts';
import { signerAt } from './attestation.ts';
import type { SequenceObject } from './hash.ts';

/**
 * The HMAC key and hash of HMAC and HMAC_Start: an unrestricted keyed-hash signing key
 * (TPM_RC_TYPE, _ATTRIBUTES, _KEY for handle 1), and the key's hash or the caller's — the
 * caller may name the key's own or NULL when the key has one, and must name one when it has
 * none (TPM_RC_VALUE for parameter 2).
 */
function hmacKey(tpm: Tpm2Engine, h: number, hashAlg: number): { key: TpmObject; alg: number } {
  const o = objectAt(tpm, h, 1);
  const p = o.public;
  if (p.type !== ALG.KEYEDHASH || p.parameters.type !== ALG.KEYEDHASH) throw TpmError.handle(RC.TYPE, 1);
  if (p.objectAttributes & A.restricted) throw TpmError.handle(RC.ATTRIBUTES, 1);
  if (!(p.objectAttributes & A.sign) || (!o.sensitive && !o.hardware)) throw TpmError.handle(RC.KEY, 1);
  const own = p.parameters.scheme;
  let alg = hashAlg;
  if (own.scheme !== ALG.NULL) alg = hashAlg === ALG.NULL || hashAlg === own.hashAlg ? own.hashAlg : ALG.NULL;
  if (alg === ALG.NULL) throw TpmError.parameter(RC.VALUE, 2);
  return { key: o, alg };
}

const HASHCHECK_TAG = Buffer.from([ST.HASHCHECK >> 8, ST.HASHCHECK & 0xff]);

/** A TPMT_TK_HASHCHECK for `digest` made by this TPM with `hashAlg` (a NULL ticket never is). */
function hashCheckValid(tpm: Tpm2Engine, ticket: HashCheckTicket, hashAlg: number, digest: Buffer): boolean {
  if (ticket.hierarchy === RH.NULL || hashAlg === ALG.NULL) return false;
  return constantTimeEqual(hmac(hashAlg, tpm.proofOf(ticket.hierarchy), HASHCHECK_TAG, digest), ticket.digest);
}

export const signingCommands = [
  command({
    cc: CC.HMAC,
    name: 'HMAC',
    handles: [{ name: 'handle', type: dhObject, auth: 'user' }],
    params: { buffer: maxBuffer, hashAlg: algHashOrNull },
    response: { outHMAC: digestBuf },
    handler: ({ tpm, handles }, { buffer, hashAlg }) => {
      const { key, alg } = hmacKey(tpm, handles[0]!, hashAlg);
      return { outHMAC: keyedHashHmac(key, alg, buffer) };
    },
  }),
  command({
    cc: CC.HMAC_Start,
    name: 'HMAC_Start',
    handles: [{ name: 'handle', type: dhObject, auth: 'user' }],
    params: { auth: authBuf, hashAlg: algHashOrNull },
    responseHandle: true,
    response: {},
    handler: ({ tpm, handles }, { auth, hashAlg }) => {
      const { key, alg } = hmacKey(tpm, handles[0]!, hashAlg);
      const seq: SequenceObject = {
        kind: 'hmacSequence',
        auth,
        // Sequences have nameAlg TPM_ALG_NULL (an empty Name) and are exempt from DA.
        name: Buffer.alloc(0),
        noDA: true,
        hashAlg: alg,
        // A chip-resident key's sequence collects the data, which the chip HMACs at completion.
        ...(key.hardware ? { states: [], chip: { key, chunks: [], bytes: 0 } } : { states: [{ alg, state: startHmac(alg, key.sensitive!.sensitive) }] }),
        prefix: Buffer.alloc(0),
      };
      return { handle: tpm.objects.add(seq) };
    },
  }),
  command({
    cc: CC.VerifySignature,
    name: 'VerifySignature',
    handles: [{ name: 'keyHandle', type: dhObject, auth: 'none' }],
    params: { digest: digestBuf, signature },
    response: { validation: tkVerified },
    handler: ({ tpm, handles }, { digest, signature: sig }) => {
      const o = objectAt(tpm, handles[0]!, 1);
      if (!(o.public.objectAttributes & A.sign)) throw TpmError.handle(RC.ATTRIBUTES, 1);
      const rc = verifyDigest(o, digest, sig);
      if (rc !== RC.SUCCESS) throw TpmError.parameter(rc, 2);
      // A key of the NULL hierarchy, or one without a Name, gets the NULL ticket.
      const hierarchy = o.public.nameAlg === ALG.NULL ? RH.NULL : o.hierarchy;
      return { validation: verifiedTicket(tpm, hierarchy, digest, o.name) };
    },
  }),
  command({
    cc: CC.Sign,
    name: 'Sign',
    handles: [{ name: 'keyHandle', type: dhObject, auth: 'user' }],
    params: { digest: digestBuf, inScheme: sigScheme, validation: hashCheckTicket },
    response: { signature },
    handler: ({ tpm, handles }, { digest, inScheme, validation }) => {
      const key = signerAt(tpm, handles[0]!, 1)!;
      const a = key.public.objectAttributes;
      // An X.509-signing key may sign only what TPM2_CertifyX509 builds.
      if (a & A.x509sign) throw TpmError.handle(RC.ATTRIBUTES, 1);
      const scheme = selectSignScheme(key, inScheme);
      if (!scheme) throw TpmError.parameter(RC.SCHEME, 2);
      // A restricted key signs only digests the TPM computed over data that does not begin with
      // TPM_GENERATED_VALUE — which is what a hash-check ticket proves. A ticket given to an
      // unrestricted key must be valid too.
      if (validation.digest.length !== 0 || a & A.restricted) {
        if (!hashCheckValid(tpm, validation, scheme.hashAlg, digest)) throw TpmError.parameter(RC.TICKET, 3);
      } else if (digest.length !== digestSize(scheme.hashAlg)) {
        throw TpmError.parameter(RC.SIZE, 1);
      }
      return { signature: signDigest(key, scheme, digest, tpm.random) };
    },
  }),
];
