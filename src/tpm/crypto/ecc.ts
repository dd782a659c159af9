import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { p256, p384 } from '@noble/curves/nist.js';
import { ECC_CURVE } from '../tpm2/constants.ts';
import { toBigInt, toBytes } from './bigint.ts';
import type { SeededStream } from './drbg.ts';

/** A NIST curve the TPM implements: its order, coordinate size and names in each library. */
export interface Curve {
  readonly id: number;
  readonly bytes: number;
  readonly order: bigint;
  readonly jwk: string;
  readonly noble: typeof p256;
}

const CURVES: readonly Curve[] = [
  { id: ECC_CURVE.NIST_P256, bytes: 32, order: p256.Point.CURVE().n, jwk: 'P-256', noble: p256 },
  { id: ECC_CURVE.NIST_P384, bytes: 48, order: p384.Point.CURVE().n, jwk: 'P-384', noble: p384 as unknown as typeof p256 },
];

export function curve(id: number): Curve {
  const c = CURVES.find((x) => x.id === id);
  if (!c) throw new RangeError(`curve 0x${id.toString(16)} is not implemented`);
  return c;
}

/** An ECC key: the private scalar and the public point, as TPM structures and as KeyObjects. */
export interface EccKey {
  d: Buffer;
  x: Buffer;
  y: Buffer;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export function eccFromScalar(c: Curve, d: Buffer): EccKey {
  const pub = c.noble.getPublicKey(d, false);
  const x = Buffer.from(pub.subarray(1, 1 + c.bytes));
  const y = Buffer.from(pub.subarray(1 + c.bytes));
  const privateKey = createPrivateKey({
    key: { kty: 'EC', crv: c.jwk, x: x.toString('base64url'), y: y.toString('base64url'), d: d.toString('base64url') },
    format: 'jwk',
  });
  return { d, x, y, privateKey, publicKey: createPublicKey(privateKey) };
}

/** A scalar in [1, n-1] drawn from the stream (extra bytes make the bias negligible). */
export function deriveEcc(c: Curve, stream: SeededStream): EccKey {
  const d = (toBigInt(stream.next(c.bytes + 8)) % (c.order - 1n)) + 1n;
  return eccFromScalar(c, toBytes(d, c.bytes));
}

export function generateEcc(c: Curve, random: (n: number) => Buffer): EccKey {
  const d = (toBigInt(random(c.bytes + 8)) % (c.order - 1n)) + 1n;
  return eccFromScalar(c, toBytes(d, c.bytes));
}

export function eccPublicKey(c: Curve, x: Buffer, y: Buffer): KeyObject {
  return createPublicKey({ key: { kty: 'EC', crv: c.jwk, x: x.toString('base64url'), y: y.toString('base64url') }, format: 'jwk' });
}

/** Whether (x, y) is a point on the curve (imported keys, ECDH peers). */
export function isOnCurve(c: Curve, x: Buffer, y: Buffer): boolean {
  try {
    c.noble.Point.fromBytes(Buffer.concat([Buffer.from([4]), x, y])).assertValidity();
    return x.length === c.bytes && y.length === c.bytes;
  } catch {
    return false;
  }
}

/** The shared point d·P (ECDH_ZGen, salted sessions). */
export function multiply(c: Curve, d: Buffer, x: Buffer, y: Buffer): { x: Buffer; y: Buffer } {
  const P = c.noble.Point.fromBytes(Buffer.concat([Buffer.from([4]), x, y]));
  const Z = P.multiply(toBigInt(d)).toBytes(false);
  return { x: Buffer.from(Z.subarray(1, 1 + c.bytes)), y: Buffer.from(Z.subarray(1 + c.bytes)) };
}
