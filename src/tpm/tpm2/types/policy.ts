import { checked, codec, list, oneOf, sized, struct, u16, u32, type Codec } from '../../wire/codec.ts';
import { MAX_DIGEST_SIZE } from '../../crypto/hash.ts';
import { HT, RH, ST } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import { digestBuf, hierarchyOrNull } from './basic.ts';

/** TPMI_SH_POLICY: a policy (or trial) session handle. */
export const shPolicy: Codec<number> = checked(u32, (h) => h >>> 24 === HT.POLICY_SESSION, RC.VALUE);

const ENTITY_PERMANENT = new Set<number>([RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.LOCKOUT]);

/** TPMI_DH_ENTITY: a hierarchy, lockout, an object, an NV index or a PCR. */
export const dhEntity: Codec<number> = checked(
  u32,
  (h) => {
    const ht = h >>> 24;
    return ht === HT.PCR || ht === HT.NV_INDEX || ht === HT.TRANSIENT || ht === HT.PERSISTENT || ENTITY_PERMANENT.has(h);
  },
  RC.VALUE,
);

/** INT32 (TPM2_PolicySigned / PolicySecret expiration). */
export const i32: Codec<number> = codec(
  (w, v) => w.u32(v >>> 0),
  (r) => r.u32() | 0,
);

/** TPM2B_TIMEOUT: a TPM-specific timeout, at most a UINT64. */
export const timeoutBuf = sized(8);

/** TPMA_LOCALITY: localities 0–4 as bits, or an extended locality (32–255). */
export const localityAttr: Codec<number> = codec(
  (w, v) => w.u8(v),
  (r) => r.u8(),
);

/** TPM_EO: the comparison PolicyNV and PolicyCounterTimer make. */
export const EO = {
  EQ: 0x0000,
  NEQ: 0x0001,
  SIGNED_GT: 0x0002,
  UNSIGNED_GT: 0x0003,
  SIGNED_LT: 0x0004,
  UNSIGNED_LT: 0x0005,
  SIGNED_GE: 0x0006,
  UNSIGNED_GE: 0x0007,
  SIGNED_LE: 0x0008,
  UNSIGNED_LE: 0x0009,
  BITSET: 0x000a,
  BITCLEAR: 0x000b,
} as const;

export const eo: Codec<number> = oneOf(u16, Object.values(EO), RC.VALUE);

/** TPML_DIGEST as TPM2_PolicyOR takes it: two to eight digests (fewer or more is TPM_RC_SIZE). */
const digestList8 = list(digestBuf, 8);
export const orDigestList: Codec<Buffer[]> = codec(digestList8.encode, (r) => {
  const v = digestList8.decode(r);
  if (v.length < 2) throw new TpmError(RC.SIZE);
  return v;
});

/** TPMT_TK_AUTH: PolicySigned / PolicySecret tickets for PolicyTicket. */
export const tkAuth = struct({
  tag: oneOf(u16, [ST.AUTH_SIGNED, ST.AUTH_SECRET], RC.TAG),
  hierarchy: hierarchyOrNull,
  digest: digestBuf,
});
export type TkAuth = { tag: number; hierarchy: number; digest: Buffer };

/** TPMT_TK_VERIFIED: VerifySignature's proof that a key signed a digest. */
export const tkVerified = struct({
  tag: oneOf(u16, [ST.VERIFIED], RC.TAG),
  hierarchy: hierarchyOrNull,
  digest: digestBuf,
});
export type TkVerified = { tag: number; hierarchy: number; digest: Buffer };

/** The most bytes a TPM2B_OPERAND compares (sizeof TPMU_HA). */
export const MAX_OPERAND = MAX_DIGEST_SIZE;
