import { diffieHellman, type KeyObject } from 'node:crypto';
import { toBigInt, toBytes } from './bigint.ts';
import type { Curve } from './ecc.ts';

/**
 * The x coordinate of d·Q (ECDH's shared value Z), by OpenSSL, padded to the coordinate size.
 * Both keys must be on the same curve; the public point must already be known to be valid.
 */
export function ecdhSharedX(privateKey: KeyObject, publicKey: KeyObject): Buffer {
  return diffieHellman({ privateKey, publicKey });
}

/**
 * A coordinate given as a TPM2B_ECC_PARAMETER, as a field element of exactly the curve's size:
 * leading zeros may be missing or extra; undefined if the value is not below the field prime.
 */
export function fieldElement(c: Curve, v: Uint8Array): Buffer | undefined {
  const x = toBigInt(v);
  if (x >= c.noble.Point.CURVE().p) return undefined;
  return toBytes(x, c.bytes);
}
