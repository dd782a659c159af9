import { checkPrime, checkPrimeSync, createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { base64url, modInverse, toBigInt, toBytes } from './bigint.ts';
import type { SeededStream } from './drbg.ts';

export const DEFAULT_EXPONENT = 65537;

const SMALL_PRIMES: number[] = (() => {
  const out: number[] = [];
  const sieve = new Uint8Array(4000);
  for (let i = 2; i < sieve.length; i++) {
    if (sieve[i]) continue;
    out.push(i);
    for (let j = i * i; j < sieve.length; j += i) sieve[j] = 1;
  }
  return out;
})();

/**
 * The search for a prime of `bits` bits with the top two bits set (so p·q has exactly 2·bits
 * bits) and gcd(p-1, e) = 1, upward from a candidate drawn from the stream, through a sieve of
 * small primes. It yields each candidate that passes the sieve and is told whether it is prime,
 * so the same search runs with OpenSSL's test on this thread or on libuv's threads.
 *
 * The stream also gives up eight bytes per tested candidate and forty more for the prime found:
 * the witnesses of the Miller–Rabin rounds this search once ran itself. The next prime's
 * starting point depends on where the stream stands, so drawing them keeps every key derived
 * from a seed — a certified EK among them — the key it always was.
 */
function* primeSearch(stream: SeededStream, bits: number, e: bigint): Generator<bigint, bigint, boolean> {
  for (;;) {
    const start = toBigInt(stream.next(bits / 8)) | (3n << BigInt(bits - 2)) | 1n;
    const window = 4096;
    const composite = new Uint8Array(window);
    for (const p of SMALL_PRIMES) {
      const bp = BigInt(p);
      // Offset k (candidate start + 2k) divisible by p: solve start + 2k ≡ 0 (mod p).
      const r = Number(start % bp);
      let k = r === 0 ? 0 : ((p - r) * ((p + 1) / 2)) % p;
      for (; k < window; k += p) composite[k] = 1;
    }
    for (let k = 0; k < window; k++) {
      if (composite[k]) continue;
      const c = start + 2n * BigInt(k);
      if (c >> BigInt(bits) !== 0n) break;
      if ((c - 1n) % e === 0n) continue;
      stream.next(8);
      if (!(yield c)) continue;
      stream.next(40);
      return c;
    }
  }
}

/** The search for an RSA key of `bits` bits from the stream: two primes (primeSearch). */
function* rsaSearch(stream: SeededStream, bits: number, exponent: number): Generator<bigint, RsaKey, boolean> {
  const e = BigInt(exponent);
  for (;;) {
    const p = yield* primeSearch(stream, bits / 2, e);
    const q = yield* primeSearch(stream, bits / 2, e);
    if (p === q) continue;
    const n = p * q;
    if (n >> BigInt(bits - 1) !== 1n) continue;
    return rsaFromPrimes(p, q, exponent, bits / 8);
  }
}

/** The RSA key the stream gives, found on this thread. */
export function deriveRsa(stream: SeededStream, bits: number, exponent: number): RsaKey {
  const search = rsaSearch(stream, bits, exponent);
  let step = search.next();
  while (!step.done) step = search.next(checkPrimeSync(step.value));
  return step.value;
}

const isPrime = promisify(checkPrime) as (candidate: bigint) => Promise<boolean>;

/**
 * The same key, its candidates tested on libuv's threads: this thread only sieves, so it serves
 * other work while the search runs.
 */
export async function deriveRsaAsync(stream: SeededStream, bits: number, exponent: number): Promise<RsaKey> {
  const search = rsaSearch(stream, bits, exponent);
  let step = search.next();
  while (!step.done) step = search.next(await isPrime(step.value));
  return step.value;
}

/** An RSA private key from its two primes: what node:crypto needs, and the TPM's modulus. */
export interface RsaKey {
  n: Buffer;
  p: Buffer;
  privateKey: KeyObject;
  publicKey: KeyObject;
}

export function rsaFromPrimes(p: bigint, q: bigint, exponent: number, modulusBytes: number): RsaKey {
  if (p < q) [p, q] = [q, p];
  const e = BigInt(exponent);
  const n = p * q;
  const d = modInverse(e, (p - 1n) * (q - 1n));
  const jwk = {
    kty: 'RSA',
    n: base64url(n, modulusBytes),
    e: base64url(e),
    d: base64url(d, modulusBytes),
    p: base64url(p, modulusBytes / 2),
    q: base64url(q, modulusBytes / 2),
    dp: base64url(d % (p - 1n), modulusBytes / 2),
    dq: base64url(d % (q - 1n), modulusBytes / 2),
    qi: base64url(modInverse(q, p), modulusBytes / 2),
  };
  const privateKey = createPrivateKey({ key: jwk, format: 'jwk' });
  return { n: toBytes(n, modulusBytes), p: toBytes(p, modulusBytes / 2), privateKey, publicKey: createPublicKey(privateKey) };
}

/** Rebuilds a key from the modulus and the one prime a TPMT_SENSITIVE keeps. */
export function rsaFromModulusAndPrime(nBytes: Buffer, pBytes: Buffer, exponent: number): RsaKey {
  const n = toBigInt(nBytes);
  const p = toBigInt(pBytes);
  if (p <= 1n || n % p !== 0n) throw new RangeError('the prime does not divide the modulus');
  return rsaFromPrimes(p, n / p, exponent, nBytes.length);
}

/** A fresh key from OpenSSL, made on this thread (rsa-key-pool.ts makes them on others). */
export function generateRsa(bits: number, exponent: number): RsaKey {
  return rsaFromPrivateKey(generatePrivateKey('rsa', { modulusLength: bits, publicExponent: exponent }), exponent, bits);
}

/** The key node:crypto holds as `privateKey`, in the form the TPM code uses. */
export function rsaFromPrivateKey(privateKey: KeyObject, exponent: number, bits: number): RsaKey {
  const jwk = privateKey.export({ format: 'jwk' });
  const p = toBigInt(Buffer.from(jwk.p!, 'base64url'));
  const q = toBigInt(Buffer.from(jwk.q!, 'base64url'));
  return rsaFromPrimes(p, q, exponent, bits / 8);
}

/**
 * A fresh private key that no key-generation job refers to. The KeyObjects generateKeyPairSync
 * returns share their key data with the job that made them, and on Node 20 exporting such a key
 * while the garbage collector destroys that job deadlocks the process (both take the key's lock).
 * Taking the key out as DER and importing it again gives an object of its own.
 */
export function generatePrivateKey(type: 'rsa', options: { modulusLength: number; publicExponent: number }): KeyObject;
export function generatePrivateKey(type: 'ec', options: { namedCurve: string }): KeyObject;
export function generatePrivateKey(type: 'rsa' | 'ec', options: { modulusLength?: number; publicExponent?: number; namedCurve?: string }): KeyObject {
  const privateKeyEncoding = { type: 'pkcs8', format: 'der' } as const;
  const publicKeyEncoding = { type: 'spki', format: 'der' } as const;
  const der: Buffer =
    type === 'rsa'
      ? generateKeyPairSync('rsa', { modulusLength: options.modulusLength!, publicExponent: options.publicExponent!, privateKeyEncoding, publicKeyEncoding }).privateKey
      : generateKeyPairSync('ec', { namedCurve: options.namedCurve!, privateKeyEncoding, publicKeyEncoding }).privateKey;
  return createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
}

export function rsaPublicKey(n: Buffer, exponent: number): KeyObject {
  return createPublicKey({ key: { kty: 'RSA', n: n.toString('base64url'), e: base64url(BigInt(exponent)) }, format: 'jwk' });
}
