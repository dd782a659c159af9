import { createHash, createHmac, hash as oneShotHash, timingSafeEqual } from 'node:crypto';
import { ALG } from '../tpm2/constants.ts';

/** A hash algorithm the TPM implements, keyed by its TPM_ALG_ID. */
export interface HashAlg {
  readonly alg: number;
  /** OpenSSL's name for it. */
  readonly name: string;
  readonly size: number;
  readonly blockSize: number;
}

const TABLE: readonly HashAlg[] = [
  { alg: ALG.SHA1, name: 'sha1', size: 20, blockSize: 64 },
  { alg: ALG.SHA256, name: 'sha256', size: 32, blockSize: 64 },
  { alg: ALG.SHA384, name: 'sha384', size: 48, blockSize: 128 },
  { alg: ALG.SHA512, name: 'sha512', size: 64, blockSize: 128 },
];

/** The implemented hash algorithms, in TPM_ALG_ID order (the order banks are reported in). */
export const HASH_ALGS: readonly HashAlg[] = TABLE;

const BY_ID = new Map<number, HashAlg>(TABLE.map((h) => [h.alg, h]));

/** Largest digest of any implemented hash: sizeof(TPMU_HA). */
export const MAX_DIGEST_SIZE = 64;

export function hashAlg(alg: number): HashAlg | undefined {
  return BY_ID.get(alg);
}

export function isHashAlg(alg: number): boolean {
  return BY_ID.has(alg);
}

/** Digest size of an implemented hash; 0 for anything else (TPM_ALG_NULL included). */
export function digestSize(alg: number): number {
  return BY_ID.get(alg)?.size ?? 0;
}

function nameOf(alg: number): string {
  const h = BY_ID.get(alg);
  if (!h) throw new RangeError(`hash algorithm 0x${alg.toString(16)} is not implemented`);
  return h.name;
}

export function digest(alg: number, ...parts: Uint8Array[]): Buffer {
  // One native call over the joined input beats a Hash object for the short inputs TPMs hash.
  const data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  return oneShotHash(nameOf(alg), data, 'buffer');
}

export function hmac(alg: number, key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac(nameOf(alg), key);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** An incremental hash whose state can be carried across commands (hash sequences). */
export interface HashState {
  update(data: Uint8Array): void;
  digest(): Buffer;
}

export function startHash(alg: number): HashState {
  const h = createHash(nameOf(alg));
  return { update: (d) => void h.update(d), digest: () => h.digest() };
}

export function startHmac(alg: number, key: Uint8Array): HashState {
  const h = createHmac(nameOf(alg), key);
  return { update: (d) => void h.update(d), digest: () => h.digest() };
}

/** Compares secrets without leaking where they differ. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length === 0 && b.length === 0) return true;
  if (a.length !== b.length) {
    timingSafeEqual(a, a);
    return false;
  }
  return timingSafeEqual(a, b);
}
