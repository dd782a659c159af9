import { codec, list, oneOf, sized, struct, u16, u32, type Codec } from '../../wire/codec.ts';
import { HASH_ALGS, MAX_DIGEST_SIZE, digestSize, isHashAlg } from '../../crypto/hash.ts';
import { ALG, RH } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';

/** Largest TPM2B_MAX_BUFFER / TPM2B_EVENT (MAX_DIGEST_BUFFER, MAX_EVENT_SIZE). */
export const MAX_BUFFER = 1024;
/** Largest TPM2B_SENSITIVE_DATA (MAX_SYM_DATA). */
export const MAX_SYM_DATA = 128;
/** Number of implemented hashes: the most digests a TPML_DIGEST_VALUES carries. */
export const HASH_COUNT = HASH_ALGS.length;

/** TPMI_ALG_HASH: an implemented hash; anything else is TPM_RC_HASH. */
export const algHash: Codec<number> = oneOf(u16, HASH_ALGS.map((h) => h.alg), RC.HASH);
/** TPMI_ALG_HASH+: an implemented hash or TPM_ALG_NULL. */
export const algHashOrNull: Codec<number> = oneOf(u16, [...HASH_ALGS.map((h) => h.alg), ALG.NULL], RC.HASH);

export const digestBuf = sized(MAX_DIGEST_SIZE); // TPM2B_DIGEST
export const authBuf = sized(MAX_DIGEST_SIZE); // TPM2B_AUTH
export const nonceBuf = sized(MAX_DIGEST_SIZE); // TPM2B_NONCE
export const dataBuf = sized(MAX_DIGEST_SIZE + 2); // TPM2B_DATA: sizeof(TPMT_HA)
export const maxBuffer = sized(MAX_BUFFER); // TPM2B_MAX_BUFFER
export const eventBuf = sized(MAX_BUFFER); // TPM2B_EVENT
export const sensitiveData = sized(MAX_SYM_DATA); // TPM2B_SENSITIVE_DATA

/**
 * TPMT_HA: a digest tagged with its algorithm; the size follows from the algorithm. Decoding
 * returns a view into the command (PCR extends consume digests at once); keepers must copy.
 */
export interface TaggedHash {
  hashAlg: number;
  digest: Buffer;
}

export const taggedHash: Codec<TaggedHash> = codec(
  (w, v) => {
    w.u16(v.hashAlg);
    w.bytes(v.digest);
  },
  (r) => {
    const hashAlg = r.u16();
    if (!isHashAlg(hashAlg)) throw new TpmError(RC.HASH);
    return { hashAlg, digest: r.bytes(digestSize(hashAlg)) };
  },
);

/** TPML_DIGEST_VALUES. */
export const digestValues = list(taggedHash, HASH_COUNT);
/** TPML_DIGEST: at most eight digests. */
export const digestList = list(digestBuf, 8);
/** TPML_ALG (MAX_ALG_LIST_SIZE = 64). */
export const algList = list(u16, 64);
/** TPML_CC / TPML_HANDLE items are plain u32s. */
export const u32List = (max: number) => list(u32, max);

const HIERARCHIES = [RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM];

/** TPMI_RH_HIERARCHY+ (owner, endorsement, platform or null). */
export const hierarchyOrNull: Codec<number> = oneOf(u32, [...HIERARCHIES, RH.NULL], RC.VALUE);

/** TPMT_TK_HASHCHECK. */
export const hashCheckTicket = struct({
  tag: oneOf(u16, [0x8024], RC.TAG),
  hierarchy: hierarchyOrNull,
  digest: digestBuf,
});
export type HashCheckTicket = { tag: number; hierarchy: number; digest: Buffer };
