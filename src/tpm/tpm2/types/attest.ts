import { codec, sized, type Codec } from '../../wire/codec.ts';
import type { Reader, Writer } from '../../wire/buffer.ts';
import { ST, TPM_GENERATED_VALUE } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import { dataBuf, digestBuf } from './basic.ts';
import { nameBuf } from './creation.ts';
import { pcrSelectionList, type PcrSelection } from './pcr.ts';
import { clockInfo, timeInfo } from './time.ts';
import { maxNvBuffer } from './nv.ts';

/** TPMS_CLOCK_INFO as decoded. */
export interface ClockInfo {
  clock: bigint;
  resetCount: number;
  restartCount: number;
  safe: boolean;
}

/** TPMS_TIME_INFO as decoded. */
export interface TimeInfo {
  time: bigint;
  clockInfo: ClockInfo;
}

/** TPMS_CERTIFY_INFO. */
export interface CertifyInfo {
  name: Buffer;
  qualifiedName: Buffer;
}
/** TPMS_CREATION_INFO. */
export interface CreationInfo {
  objectName: Buffer;
  creationHash: Buffer;
}
/** TPMS_QUOTE_INFO. */
export interface QuoteInfo {
  pcrSelect: PcrSelection[];
  pcrDigest: Buffer;
}
/** TPMS_COMMAND_AUDIT_INFO. */
export interface CommandAuditInfo {
  auditCounter: bigint;
  digestAlg: number;
  auditDigest: Buffer;
  commandDigest: Buffer;
}
/** TPMS_SESSION_AUDIT_INFO. */
export interface SessionAuditInfo {
  exclusiveSession: boolean;
  sessionDigest: Buffer;
}
/** TPMS_TIME_ATTEST_INFO. */
export interface TimeAttestInfo {
  time: TimeInfo;
  firmwareVersion: bigint;
}
/** TPMS_NV_CERTIFY_INFO. */
export interface NvCertifyInfo {
  indexName: Buffer;
  offset: number;
  nvContents: Buffer;
}
/** TPMS_NV_DIGEST_CERTIFY_INFO. */
export interface NvDigestCertifyInfo {
  indexName: Buffer;
  nvDigest: Buffer;
}

/** TPMU_ATTEST, selected by TPMI_ST_ATTEST. */
export type Attested =
  | { type: typeof ST.ATTEST_CERTIFY; attested: CertifyInfo }
  | { type: typeof ST.ATTEST_CREATION; attested: CreationInfo }
  | { type: typeof ST.ATTEST_QUOTE; attested: QuoteInfo }
  | { type: typeof ST.ATTEST_COMMAND_AUDIT; attested: CommandAuditInfo }
  | { type: typeof ST.ATTEST_SESSION_AUDIT; attested: SessionAuditInfo }
  | { type: typeof ST.ATTEST_TIME; attested: TimeAttestInfo }
  | { type: typeof ST.ATTEST_NV; attested: NvCertifyInfo }
  | { type: typeof ST.ATTEST_NV_DIGEST; attested: NvDigestCertifyInfo };

/**
 * TPMS_ATTEST, the structure every attestation command signs. `magic` (TPM_GENERATED_VALUE) is
 * not a field: the encoder writes it and the decoder insists on it.
 */
export type Attest = {
  qualifiedSigner: Buffer;
  extraData: Buffer;
  clockInfo: ClockInfo;
  firmwareVersion: bigint;
} & Attested;

/** TPMI_ST_ATTEST values. */
export const ATTEST_TYPES: readonly number[] = [
  ST.ATTEST_CERTIFY,
  ST.ATTEST_CREATION,
  ST.ATTEST_QUOTE,
  ST.ATTEST_COMMAND_AUDIT,
  ST.ATTEST_SESSION_AUDIT,
  ST.ATTEST_TIME,
  ST.ATTEST_NV,
  ST.ATTEST_NV_DIGEST,
];

function encodeAttested(w: Writer, v: Attested): void {
  switch (v.type) {
    case ST.ATTEST_CERTIFY:
      nameBuf.encode(w, v.attested.name);
      nameBuf.encode(w, v.attested.qualifiedName);
      return;
    case ST.ATTEST_CREATION:
      nameBuf.encode(w, v.attested.objectName);
      digestBuf.encode(w, v.attested.creationHash);
      return;
    case ST.ATTEST_QUOTE:
      pcrSelectionList.encode(w, v.attested.pcrSelect);
      digestBuf.encode(w, v.attested.pcrDigest);
      return;
    case ST.ATTEST_COMMAND_AUDIT:
      w.u64(v.attested.auditCounter).u16(v.attested.digestAlg);
      digestBuf.encode(w, v.attested.auditDigest);
      digestBuf.encode(w, v.attested.commandDigest);
      return;
    case ST.ATTEST_SESSION_AUDIT:
      w.u8(v.attested.exclusiveSession ? 1 : 0);
      digestBuf.encode(w, v.attested.sessionDigest);
      return;
    case ST.ATTEST_TIME:
      timeInfo.encode(w, v.attested.time);
      w.u64(v.attested.firmwareVersion);
      return;
    case ST.ATTEST_NV:
      nameBuf.encode(w, v.attested.indexName);
      w.u16(v.attested.offset);
      maxNvBuffer.encode(w, v.attested.nvContents);
      return;
    case ST.ATTEST_NV_DIGEST:
      nameBuf.encode(w, v.attested.indexName);
      digestBuf.encode(w, v.attested.nvDigest);
      return;
  }
}

function decodeAttested(r: Reader, type: number): Attested {
  switch (type) {
    case ST.ATTEST_CERTIFY:
      return { type, attested: { name: nameBuf.decode(r), qualifiedName: nameBuf.decode(r) } };
    case ST.ATTEST_CREATION:
      return { type, attested: { objectName: nameBuf.decode(r), creationHash: digestBuf.decode(r) } };
    case ST.ATTEST_QUOTE:
      return { type, attested: { pcrSelect: pcrSelectionList.decode(r), pcrDigest: digestBuf.decode(r) } };
    case ST.ATTEST_COMMAND_AUDIT:
      return {
        type,
        attested: { auditCounter: r.u64(), digestAlg: r.u16(), auditDigest: digestBuf.decode(r), commandDigest: digestBuf.decode(r) },
      };
    case ST.ATTEST_SESSION_AUDIT: {
      const flag = r.u8();
      if (flag > 1) throw new TpmError(RC.VALUE);
      return { type, attested: { exclusiveSession: flag === 1, sessionDigest: digestBuf.decode(r) } };
    }
    case ST.ATTEST_TIME:
      return { type, attested: { time: timeInfo.decode(r), firmwareVersion: r.u64() } };
    case ST.ATTEST_NV:
      return { type, attested: { indexName: nameBuf.decode(r), offset: r.u16(), nvContents: maxNvBuffer.decode(r) } };
    case ST.ATTEST_NV_DIGEST:
      return { type, attested: { indexName: nameBuf.decode(r), nvDigest: digestBuf.decode(r) } };
    default:
      throw new TpmError(RC.VALUE);
  }
}

/** TPMS_ATTEST. A magic other than TPM_GENERATED_VALUE, or an unknown type, is TPM_RC_VALUE. */
export const attest: Codec<Attest> = codec(
  (w, v) => {
    w.u32(TPM_GENERATED_VALUE).u16(v.type);
    nameBuf.encode(w, v.qualifiedSigner);
    dataBuf.encode(w, v.extraData);
    clockInfo.encode(w, v.clockInfo);
    w.u64(v.firmwareVersion);
    encodeAttested(w, v);
  },
  (r) => {
    if (r.u32() !== TPM_GENERATED_VALUE) throw new TpmError(RC.VALUE);
    const type = r.u16();
    if (!ATTEST_TYPES.includes(type)) throw new TpmError(RC.VALUE);
    const qualifiedSigner = nameBuf.decode(r);
    const extraData = dataBuf.decode(r);
    const ci = clockInfo.decode(r);
    const firmwareVersion = r.u64();
    return { qualifiedSigner, extraData, clockInfo: ci, firmwareVersion, ...decodeAttested(r, type) };
  },
);

/**
 * sizeof(TPMS_ATTEST): the fixed part (magic, type, qualifiedSigner, extraData, clockInfo,
 * firmwareVersion) plus the largest TPMU_ATTEST arm, TPMS_NV_CERTIFY_INFO with a full
 * TPM2B_MAX_NV_BUFFER.
 */
export const MAX_ATTEST_SIZE = 4 + 2 + (2 + 66) + (2 + 66) + 17 + 8 + (2 + 66) + 2 + (2 + 1024);

/**
 * TPM2B_ATTEST: the marshaled TPMS_ATTEST as the bytes that were signed (a verifier must hash
 * exactly these bytes, so they travel as bytes; decode them with `attest`).
 */
export const attest2b: Codec<Buffer> = sized(MAX_ATTEST_SIZE);
