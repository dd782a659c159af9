/**
 * Attestation commands (TPM 2.0 Part 3, clause 18 and NV_Certify of clause 31): Certify,
 * CertifyCreation, Quote, GetTime and NV_Certify, and the machinery they share with the audit
 * commands — FillInAttestInfo (the TPMS_ATTEST header, with Part 1's privacy obfuscation of
 * clockInfo and firmwareVersion for keys outside the endorsement and platform hierarchies) and
 * SignAttestInfo (marshal, hash, sign), as the reference implementation's Attest_spt.c names them.
 */
import { checked, oneOf, u16, u32 } from '../../wire/codec.ts';
import { Writer } from '../../wire/buffer.ts';
import { constantTimeEqual, digest, hmac } from '../../crypto/hash.ts';
import { kdfa } from '../../crypto/kdf.ts';
import { ALG, CC, HT, RH, ST } from '../constants.ts';
import { checkNvRead } from './nv.ts';
import { objectAt } from './object.ts';
import { command } from '../command.ts';
import { RC, TpmError } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { dataBuf, digestBuf } from '../types/basic.ts';
import { creationTicket } from '../types/creation.ts';
import { dhObject } from '../types/handles.ts';
import { pcrSelectionList, type PcrSelection } from '../types/pcr.ts';
import { MAX_NV_BUFFER_SIZE, nvIndexHandle, rhNvAuth } from '../types/nv.ts';
import { attest, attest2b, type Attest, type Attested, type ClockInfo } from '../types/attest.ts';
import { sigScheme, signature, type SigScheme, type Signature } from '../types/signature.ts';
import { TICKET_HASH } from '../auth/tickets.ts';
import { hasPrivate, type TpmObject } from '../objects/model.ts';
import { isSigningKey, selectSignScheme, signMessage } from '../objects/sign.ts';
import { nvIndexAccessible } from './nv.ts';

/** TPMI_DH_OBJECT+: a transient or persistent object, or TPM_RH_NULL. */
export const dhObjectOrNull = checked(u32, (h) => h >>> 24 === HT.TRANSIENT || h >>> 24 === HT.PERSISTENT || h === RH.NULL, RC.VALUE);
/** TPMI_RH_ENDORSEMENT (the privacy administrator of GetTime and the audit commands). */
export const rhEndorsement = oneOf(u32, [RH.ENDORSEMENT], RC.VALUE);

/**
 * The signing key at handle number `n`, or undefined for TPM_RH_NULL. Anything that cannot sign
 * — not a signing key, a sequence, a key loaded without its private part — is TPM_RC_KEY.
 */
export function signerAt(tpm: Tpm2Engine, h: number, n: number): TpmObject | undefined {
  if (h === RH.NULL) return undefined;
  const o = tpm.objectAt(h);
  if (!o || o.kind !== 'object' || !isSigningKey(o as TpmObject) || !hasPrivate(o as TpmObject)) throw TpmError.handle(RC.KEY, n);
  return o as TpmObject;
}

/** CryptSelectSignScheme, or TPM_RC_SCHEME for parameter `n`. */
export function schemeFor(o: TpmObject | undefined, inScheme: SigScheme, n: number): SigScheme {
  const s = selectSignScheme(o, inScheme);
  if (!s) throw TpmError.parameter(RC.SCHEME, n);
  return s;
}

/** The TPMS_ATTEST fields FillInAttestInfo sets, before the type-specific ones. */
export interface AttestHeader {
  qualifiedSigner: Buffer;
  extraData: Buffer;
  clockInfo: ClockInfo;
  firmwareVersion: bigint;
}

/** The obfuscation of one signer: (firmwareVersion, resetCount, restartCount) offsets. */
interface Obfuscation {
  readonly proof: Buffer;
  readonly signer: Buffer;
  readonly firmware: bigint;
  readonly reset: number;
  readonly restart: number;
}

const obfuscations = new WeakMap<TpmObject, Obfuscation>();
const NULL_SIGNER = Buffer.from([0x40, 0x00, 0x00, 0x07]);
const U64 = (1n << 64n) - 1n;

/**
 * KDFa(contextIntegrityHash, shProof, "OBFUSCATE", qualifiedSigner, –, 128): two 64-bit values,
 * the first added to firmwareVersion, the second's halves to resetCount and restartCount. A
 * verifier cannot link attestations by their counters across keys, and the owner (who holds no
 * shProof) cannot undo it; it changes when TPM2_Clear changes the owner proof.
 */
function obfuscation(tpm: Tpm2Engine, signer: TpmObject | undefined, qualifiedSigner: Buffer): Obfuscation {
  const proof = tpm.nv.hierarchy.proofs.owner;
  const cached = signer && obfuscations.get(signer);
  if (cached && cached.signer === qualifiedSigner && cached.proof.equals(proof)) return cached;
  const k = kdfa(TICKET_HASH, proof, 'OBFUSCATE', qualifiedSigner, EMPTY, 128);
  const o: Obfuscation = {
    proof: Buffer.from(proof),
    signer: qualifiedSigner,
    firmware: k.readBigUInt64BE(0),
    reset: k.readUInt32BE(8),
    restart: k.readUInt32BE(12),
  };
  if (signer) obfuscations.set(signer, o);
  return o;
}

const EMPTY = Buffer.alloc(0);

/**
 * FillInAttestInfo: qualifiedSigner (TPM_RH_NULL's handle for no key), extraData, the current
 * clock and the firmware version — both obfuscated unless the signer is in the endorsement or
 * platform hierarchy. (No anonymous schemes are implemented, so the signer is always named.)
 */
export function attestHeader(tpm: Tpm2Engine, signer: TpmObject | undefined, qualifyingData: Buffer): AttestHeader {
  const qualifiedSigner = signer ? signer.qualifiedName : NULL_SIGNER;
  const nv = tpm.nv;
  const [fw1, fw2] = tpm.identity.firmwareVersion;
  let firmwareVersion = (BigInt(fw1 >>> 0) << 32n) | BigInt(fw2 >>> 0);
  let resetCount = nv.resetCount;
  let restartCount = nv.restartCount;
  if (!signer || (signer.hierarchy !== RH.ENDORSEMENT && signer.hierarchy !== RH.PLATFORM)) {
    const o = obfuscation(tpm, signer, qualifiedSigner);
    firmwareVersion = (firmwareVersion + o.firmware) & U64;
    resetCount = (resetCount + o.reset) >>> 0;
    restartCount = (restartCount + o.restart) >>> 0;
  }
  return {
    qualifiedSigner,
    extraData: qualifyingData,
    clockInfo: { clock: tpm.clock.clock, resetCount, restartCount, safe: nv.clockSafe },
    firmwareVersion,
  };
}

/**
 * SignAttestInfo: the marshaled TPMS_ATTEST and its signature, over H_scheme(TPMS_ATTEST) (no
 * anonymous schemes, so no qualifying-data rehash). A NULL signer gives the NULL signature.
 */
export function signAttest(signer: TpmObject | undefined, scheme: SigScheme, value: Attest): { bytes: Buffer; signature: Signature } {
  const w = new Writer(256);
  attest.encode(w, value);
  const bytes = w.finish();
  return { bytes, signature: signMessage(signer, scheme, bytes) };
}

/**
 * FilterPcr: clears selection bits of PCRs that are not allocated (or past the last PCR), in
 * place. The attestation carries the filtered selection.
 */
function filterSelection(tpm: Tpm2Engine, selections: PcrSelection[]): PcrSelection[] {
  const pcrs = tpm.pcrs;
  for (const sel of selections) {
    const select = sel.select;
    for (let i = 0; i < select.length; i++) {
      let byte = select[i]!;
      if (byte === 0) continue;
      for (let bit = 0; bit < 8; bit++) if (byte & (1 << bit) && !pcrs.isAllocated(sel.hash, i * 8 + bit)) byte &= ~(1 << bit);
      select[i] = byte;
    }
  }
  return selections;
}

/** The ticket CreatePrimary/Create return: HMAC_nameAlg(proof, TPM_ST_CREATION || name || creationHash). */
function creationTicketValid(tpm: Tpm2Engine, o: TpmObject, ticket: { hierarchy: number; digest: Buffer }, creationHash: Buffer): boolean {
  if (ticket.hierarchy === RH.NULL) return false;
  const expected = hmac(o.public.nameAlg, tpm.proofOf(ticket.hierarchy), CREATION_TAG, o.name, creationHash);
  return constantTimeEqual(expected, ticket.digest);
}

const CREATION_TAG = Buffer.from([ST.CREATION >> 8, ST.CREATION & 0xff]);

const signingParams = { qualifyingData: dataBuf, inScheme: sigScheme };

export const attestationCommands = [
  command({
    cc: CC.Certify,
    name: 'Certify',
    handles: [
      { name: 'objectHandle', type: dhObject, auth: 'admin' },
      { name: 'signHandle', type: dhObjectOrNull, auth: 'user' },
    ],
    params: signingParams,
    response: { certifyInfo: attest2b, signature },
    handler: ({ tpm, handles }, { qualifyingData, inScheme }) => {
      const signer = signerAt(tpm, handles[1]!, 2);
      const scheme = schemeFor(signer, inScheme, 2);
      const certified = objectAt(tpm, handles[0]!, 1);
      const header = attestHeader(tpm, signer, qualifyingData);
      const out = signAttest(signer, scheme, {
        ...header,
        type: ST.ATTEST_CERTIFY,
        attested: { name: certified.name, qualifiedName: certified.qualifiedName },
      });
      return { certifyInfo: out.bytes, signature: out.signature };
    },
  }),
  command({
    cc: CC.CertifyCreation,
    name: 'CertifyCreation',
    handles: [
      { name: 'signHandle', type: dhObjectOrNull, auth: 'user' },
      { name: 'objectHandle', type: dhObject, auth: 'none' },
    ],
    params: { qualifyingData: dataBuf, creationHash: digestBuf, inScheme: sigScheme, creationTicket },
    response: { certifyInfo: attest2b, signature },
    handler: ({ tpm, handles }, { qualifyingData, creationHash, inScheme, creationTicket: ticket }) => {
      const signer = signerAt(tpm, handles[0]!, 1);
      const scheme = schemeFor(signer, inScheme, 3);
      const certified = objectAt(tpm, handles[1]!, 2);
      if (!creationTicketValid(tpm, certified, ticket, creationHash)) throw TpmError.parameter(RC.TICKET, 4);
      const header = attestHeader(tpm, signer, qualifyingData);
      const out = signAttest(signer, scheme, {
        ...header,
        type: ST.ATTEST_CREATION,
        attested: { objectName: certified.name, creationHash },
      });
      return { certifyInfo: out.bytes, signature: out.signature };
    },
  }),
  command({
    cc: CC.Quote,
    name: 'Quote',
    handles: [{ name: 'signHandle', type: dhObject, auth: 'user' }],
    params: { qualifyingData: dataBuf, inScheme: sigScheme, PCRselect: pcrSelectionList },
    response: { quoted: attest2b, signature },
    handler: ({ tpm, handles }, { qualifyingData, inScheme, PCRselect }) => {
      const signer = signerAt(tpm, handles[0]!, 1)!;
      const scheme = schemeFor(signer, inScheme, 2);
      const pcrSelect = filterSelection(tpm, PCRselect);
      const header = attestHeader(tpm, signer, qualifyingData);
      const out = signAttest(signer, scheme, {
        ...header,
        type: ST.ATTEST_QUOTE,
        attested: { pcrSelect, pcrDigest: tpm.pcrs.digestOf(scheme.hashAlg, pcrSelect).digest },
      });
      return { quoted: out.bytes, signature: out.signature };
    },
  }),
  command({
    cc: CC.GetTime,
    name: 'GetTime',
    handles: [
      { name: 'privacyAdminHandle', type: rhEndorsement, auth: 'user' },
      { name: 'signHandle', type: dhObjectOrNull, auth: 'user' },
    ],
    params: signingParams,
    response: { timeInfo: attest2b, signature },
    handler: ({ tpm, handles }, { qualifyingData, inScheme }) => {
      const signer = signerAt(tpm, handles[1]!, 2);
      const scheme = schemeFor(signer, inScheme, 2);
      const header = attestHeader(tpm, signer, qualifyingData);
      const nv = tpm.nv;
      const [fw1, fw2] = tpm.identity.firmwareVersion;
      const out = signAttest(signer, scheme, {
        ...header,
        type: ST.ATTEST_TIME,
        attested: {
          // The attested time is in the clear: only the header's copy is obfuscated.
          time: { time: tpm.clock.time, clockInfo: { clock: header.clockInfo.clock, resetCount: nv.resetCount, restartCount: nv.restartCount, safe: nv.clockSafe } },
          firmwareVersion: (BigInt(fw1 >>> 0) << 32n) | BigInt(fw2 >>> 0),
        },
      });
      return { timeInfo: out.bytes, signature: out.signature };
    },
  }),
  command({
    cc: CC.NV_Certify,
    name: 'NV_Certify',
    handles: [
      { name: 'signHandle', type: dhObjectOrNull, auth: 'user' },
      { name: 'authHandle', type: rhNvAuth, auth: 'user' },
      { name: 'nvIndex', type: nvIndexHandle, auth: 'none' },
    ],
    params: { qualifyingData: dataBuf, inScheme: sigScheme, size: u16, offset: u16 },
    response: { certifyInfo: attest2b, signature },
    handler: ({ tpm, handles }, { qualifyingData, inScheme, size, offset }) => {
      const [signHandle, authHandle, nvHandle] = handles as [number, number, number];
      const signer = signerAt(tpm, signHandle, 1);
      const scheme = schemeFor(signer, inScheme, 2);
      const ix = tpm.nv.nvIndices.get(nvHandle);
      if (!ix || nvIndexAccessible(tpm, nvHandle) !== RC.SUCCESS) throw TpmError.handle(RC.HANDLE, 3);
      checkNvRead(authHandle, ix);
      if (size + offset > ix.dataSize) throw new TpmError(RC.NV_RANGE);
      if (size > MAX_NV_BUFFER_SIZE) throw TpmError.parameter(RC.VALUE, 3);
      const indexName = tpm.nameOf(nvHandle);
      const header = attestHeader(tpm, signer, qualifyingData);
      // Size and offset both zero ask for a digest of the whole index (TPM_ST_ATTEST_NV_DIGEST).
      const body: Attested =
        size === 0 && offset === 0
          ? { type: ST.ATTEST_NV_DIGEST, attested: { indexName, nvDigest: scheme.hashAlg === ALG.NULL ? EMPTY : digest(scheme.hashAlg, ix.data.subarray(0, ix.dataSize)) } }
          : { type: ST.ATTEST_NV, attested: { indexName, offset, nvContents: Buffer.from(ix.data.subarray(offset, offset + size)) } };
      const out = signAttest(signer, scheme, { ...header, ...body });
      return { certifyInfo: out.bytes, signature: out.signature };
    },
  }),
];
