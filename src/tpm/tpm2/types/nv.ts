import { checked, codec, sized, sizedStruct, struct, u16, u32, type Codec } from '../../wire/codec.ts';
import { digest } from '../../crypto/hash.ts';
import { ALG, HT, RH } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import { algHash, digestBuf } from './basic.ts';

/** MAX_NV_INDEX_SIZE: the largest dataSize of an NV index (TPM_PT_NV_INDEX_MAX). */
export const MAX_NV_INDEX_SIZE = 2048;
/** MAX_NV_BUFFER_SIZE: the most bytes one NV_Read or NV_Write moves (TPM_PT_NV_BUFFER_MAX). */
export const MAX_NV_BUFFER_SIZE = 1024;

/** TPMA_NV bits (Part 2, Table "Definition of TPMA_NV Bits"). */
export const NV_ATTR = {
  PPWRITE: 1 << 0,
  OWNERWRITE: 1 << 1,
  AUTHWRITE: 1 << 2,
  POLICYWRITE: 1 << 3,
  /** Bits 7:4: the TPM_NT of the index. */
  TPM_NT_MASK: 0xf << 4,
  POLICY_DELETE: 1 << 10,
  WRITELOCKED: 1 << 11,
  WRITEALL: 1 << 12,
  WRITEDEFINE: 1 << 13,
  WRITE_STCLEAR: 1 << 14,
  GLOBALLOCK: 1 << 15,
  PPREAD: 1 << 16,
  OWNERREAD: 1 << 17,
  AUTHREAD: 1 << 18,
  POLICYREAD: 1 << 19,
  NO_DA: 1 << 25,
  ORDERLY: 1 << 26,
  CLEAR_STCLEAR: 1 << 27,
  READLOCKED: 1 << 28,
  WRITTEN: 1 << 29,
  PLATFORMCREATE: 1 << 30,
  READ_STCLEAR: 2 ** 31,
} as const;

/** Bits 9:8 and 24:20 of TPMA_NV are reserved. */
export const NV_ATTR_RESERVED = 0x01f00300;

/** TPM_NT: the type of an NV index, bits 7:4 of its attributes. */
export const NT = {
  ORDINARY: 0x0,
  COUNTER: 0x1,
  BITS: 0x2,
  EXTEND: 0x4,
  PIN_FAIL: 0x8,
  PIN_PASS: 0x9,
} as const;

/** The TPM_NT of a set of attributes. */
export function nvType(attributes: number): number {
  return (attributes >>> 4) & 0xf;
}

/** TPMI_RH_NV_INDEX. */
export const nvIndexHandle: Codec<number> = checked(u32, (h) => h >>> 24 === HT.NV_INDEX, RC.VALUE);

/** TPMI_RH_NV_AUTH: the owner, the platform, or an NV index authorizing for itself. */
export const rhNvAuth: Codec<number> = checked(u32, (h) => h === RH.OWNER || h === RH.PLATFORM || h >>> 24 === HT.NV_INDEX, RC.VALUE);

/** TPMA_NV: a set reserved bit is TPM_RC_RESERVED_BITS. */
export const nvAttributes: Codec<number> = codec(
  (w, v) => w.u32(v),
  (r) => {
    const v = r.u32();
    if (v & NV_ATTR_RESERVED) throw new TpmError(RC.RESERVED_BITS);
    return v;
  },
);

/** TPMS_NV_PUBLIC: dataSize above MAX_NV_INDEX_SIZE is TPM_RC_SIZE. */
export const nvPublic = struct({
  nvIndex: nvIndexHandle,
  nameAlg: algHash,
  attributes: nvAttributes,
  authPolicy: digestBuf,
  dataSize: checked(u16, (n) => n <= MAX_NV_INDEX_SIZE, RC.SIZE),
});
export type NvPublic = { nvIndex: number; nameAlg: number; attributes: number; authPolicy: Buffer; dataSize: number };

/** TPM2B_NV_PUBLIC. */
export const nvPublic2b = sizedStruct(nvPublic) as Codec<NvPublic>;

/** TPM2B_MAX_NV_BUFFER. */
export const maxNvBuffer = sized(MAX_NV_BUFFER_SIZE);

/** The Name of an NV index: nameAlg || H_nameAlg(TPMS_NV_PUBLIC), with its current attributes. */
export function nvName(pub: NvPublic): Buffer {
  const w = Buffer.alloc(4 + 2 + 4 + 2 + pub.authPolicy.length + 2);
  let o = w.writeUInt32BE(pub.nvIndex >>> 0, 0);
  o = w.writeUInt16BE(pub.nameAlg, o);
  o = w.writeUInt32BE(pub.attributes >>> 0, o);
  o = w.writeUInt16BE(pub.authPolicy.length, o);
  o += pub.authPolicy.copy(w, o);
  w.writeUInt16BE(pub.dataSize, o);
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(pub.nameAlg);
  return pub.nameAlg === ALG.NULL ? Buffer.alloc(0) : Buffer.concat([alg, digest(pub.nameAlg, w)]);
}
