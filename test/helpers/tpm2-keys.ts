/**
 * Keys for signing and attestation tests: templates, CreatePrimary / Create+Load / LoadExternal
 * wrappers, and the node:crypto view of a TPM public area for independent verification.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { ALG, CC, ECC_CURVE, RH } from '../../src/tpm/tpm2/constants.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { digestBuf } from '../../src/tpm/tpm2/types/basic.ts';
import { creationData2b, creationTicket, nameBuf, privateBuf, type Ticket } from '../../src/tpm/tpm2/types/creation.ts';
import { pcrSelectionList } from '../../src/tpm/tpm2/types/pcr.ts';
import { OBJECT_ATTR as A, public2b, sensitiveCreate, type Public } from '../../src/tpm/tpm2/types/public.ts';
import type { Scheme } from '../../src/tpm/tpm2/types/public-parms.ts';
import { buildCommand, enc, params, pw, responseParams, tpm2b, u16b, u32b } from './tpm2-commands.ts';
import { ok } from './tpm2-engine.ts';

export const NULL_SYM = { algorithm: ALG.NULL, keyBits: 0, mode: ALG.NULL };
export const NULL_SCHEME: Scheme = { scheme: ALG.NULL, hashAlg: ALG.NULL };
export const SIGN = A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.sign;
export const RESTRICTED = SIGN | A.restricted;
export const EMPTY = Buffer.alloc(0);

export function eccTemplate(attributes: number, scheme: Scheme = NULL_SCHEME, curveID: number = ECC_CURVE.NIST_P256): Public {
  return {
    type: ALG.ECC,
    nameAlg: ALG.SHA256,
    objectAttributes: attributes,
    authPolicy: EMPTY,
    parameters: { type: ALG.ECC, symmetric: NULL_SYM, scheme, curveID, kdf: NULL_SCHEME },
    unique: { ecc: { x: EMPTY, y: EMPTY } },
  };
}

export function rsaTemplate(attributes: number, scheme: Scheme = NULL_SCHEME, keyBits = 2048): Public {
  return {
    type: ALG.RSA,
    nameAlg: ALG.SHA256,
    objectAttributes: attributes,
    authPolicy: EMPTY,
    parameters: { type: ALG.RSA, symmetric: NULL_SYM, scheme, keyBits, exponent: 0 },
    unique: { rsa: EMPTY },
  };
}

export function storageTemplate(): Public {
  const t = eccTemplate(A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.restricted | A.decrypt);
  if (t.parameters.type === ALG.ECC) t.parameters.symmetric = { algorithm: ALG.AES, keyBits: 128, mode: ALG.CFB };
  return t;
}

export function hmacTemplate(attributes: number, scheme: Scheme = NULL_SCHEME): Public {
  return {
    type: ALG.KEYEDHASH,
    nameAlg: ALG.SHA256,
    objectAttributes: attributes,
    authPolicy: EMPTY,
    parameters: { type: ALG.KEYEDHASH, scheme },
    unique: { digest: EMPTY },
  };
}

export interface Key {
  handle: number;
  pub: Public;
  name: Buffer;
  /** What CreatePrimary / Create returned for CertifyCreation (absent for LoadExternal). */
  creationHash?: Buffer;
  creationTicket?: Ticket;
}

export function createPrimary(tpm: Tpm2Engine, template: Public, opts: { hierarchy?: number; data?: Buffer; auth?: string } = {}): Key {
  const r = ok(
    tpm,
    buildCommand({
      cc: CC.CreatePrimary,
      handles: [opts.hierarchy ?? RH.OWNER],
      sessions: [pw('')],
      params: params(
        enc(sensitiveCreate, { userAuth: Buffer.from(opts.auth ?? ''), data: opts.data ?? EMPTY }),
        enc(public2b, template),
        tpm2b(''),
        enc(pcrSelectionList, []),
      ),
    }),
  );
  const out = responseParams(r, { outPublic: public2b, creationData: creationData2b, creationHash: digestBuf, creationTicket, name: nameBuf });
  return { handle: r.handle!, pub: out.outPublic!, name: out.name, creationHash: out.creationHash, creationTicket: out.creationTicket };
}

/** Create under a parent and Load: how RSA keys are made here (node:crypto generates them). */
export function createLoaded(tpm: Tpm2Engine, parent: number, template: Public): Key {
  const c = responseParams(
    ok(
      tpm,
      buildCommand({
        cc: CC.Create,
        handles: [parent],
        sessions: [pw('')],
        params: params(enc(sensitiveCreate, { userAuth: EMPTY, data: EMPTY }), enc(public2b, template), tpm2b(''), enc(pcrSelectionList, [])),
      }),
    ),
    { outPrivate: privateBuf, outPublic: public2b, creationData: creationData2b, creationHash: digestBuf, creationTicket },
  );
  const l = ok(tpm, buildCommand({ cc: CC.Load, handles: [parent], sessions: [pw('')], params: params(enc(privateBuf, c.outPrivate), enc(public2b, c.outPublic)) }));
  return { handle: l.handle!, pub: c.outPublic!, name: responseParams(l, { name: nameBuf }).name, creationHash: c.creationHash, creationTicket: c.creationTicket };
}

export function flush(tpm: Tpm2Engine, h: number): void {
  ok(tpm, buildCommand({ cc: CC.FlushContext, params: u32b(h) }));
}

export function rsaKey(tpm: Tpm2Engine, attributes: number, scheme: Scheme = NULL_SCHEME): Key {
  const parent = createPrimary(tpm, storageTemplate());
  const key = createLoaded(tpm, parent.handle, rsaTemplate(attributes, scheme));
  flush(tpm, parent.handle);
  return key;
}

/** The key's public part as node:crypto sees it. */
export function nodeKey(pub: Public): KeyObject {
  if ('ecc' in pub.unique && pub.parameters.type === ALG.ECC) {
    const crv = pub.parameters.curveID === ECC_CURVE.NIST_P384 ? 'P-384' : 'P-256';
    return createPublicKey({ key: { kty: 'EC', crv, x: pub.unique.ecc.x.toString('base64url'), y: pub.unique.ecc.y.toString('base64url') }, format: 'jwk' });
  }
  if ('rsa' in pub.unique) return createPublicKey({ key: { kty: 'RSA', n: pub.unique.rsa.toString('base64url'), e: 'AQAB' }, format: 'jwk' });
  throw new Error('not an asymmetric key');
}

/** TPMT_PUBLIC of a node:crypto public key, for LoadExternal. */
export function externalPublic(key: KeyObject, attributes: number = A.userWithAuth | A.sign): Public {
  const jwk = key.export({ format: 'jwk' });
  if (jwk.kty === 'EC') {
    const t = eccTemplate(attributes);
    t.unique = { ecc: { x: Buffer.from(jwk.x!, 'base64url'), y: Buffer.from(jwk.y!, 'base64url') } };
    return t;
  }
  const t = rsaTemplate(attributes);
  t.unique = { rsa: Buffer.from(jwk.n!, 'base64url') };
  return t;
}

export function loadExternal(tpm: Tpm2Engine, pub: Public, hierarchy: number = RH.NULL): Key {
  const r = ok(tpm, buildCommand({ cc: CC.LoadExternal, params: params(u16b(0), enc(public2b, pub), u32b(hierarchy)) }));
  return { handle: r.handle!, pub, name: responseParams(r, { name: nameBuf }).name };
}

export const scheme = (s: number, h: number = ALG.SHA256): Scheme => ({ scheme: s, hashAlg: h });

