/**
 * Signing and verification with loaded objects (TPM 2.0 Part 1, clause 11.4; the reference
 * implementation's CryptSelectSignScheme / CryptSign / CryptValidateSignature): the primitives
 * behind Sign, VerifySignature and every attestation command.
 *
 * Two signing paths, chosen by what the caller has:
 * - `signMessage` signs data the TPM built itself (a TPMS_ATTEST): node:crypto hashes and signs
 *   in one native call, or, for an ECDSA key that has signed before, a nonce its pool computed
 *   in idle time leaves a few multiplications (`ecdsa-nonces.ts`) — what makes Quote fast.
 * - `signDigest` signs a digest the caller supplies (TPM2_Sign). node:crypto cannot sign a
 *   prehashed digest with ECDSA or RSA-PSS, so RSASSA is a private-key operation over the
 *   DigestInfo, RSA-PSS one over an EMSA-PSS block built here, and ECDSA takes k·G from
 *   node:crypto's ECDH (OpenSSL) and does the scalar arithmetic with bigints, blinded.
 *
 * Keys and per-scheme options are cached per object, so a hot signer allocates nothing but its
 * output. Nothing here numbers a response code; callers do.
 */
import { constants, createECDH, privateEncrypt, publicDecrypt, sign as nodeSign, type ECDH, type KeyObject } from 'node:crypto';
import { constantTimeEqual, digest as hashOf, digestSize, hashAlg as hashInfo, hmac } from '../../crypto/hash.ts';
import { curve as curveOf, type Curve } from '../../crypto/ecc.ts';
import { modInverse, toBigInt } from '../../crypto/bigint.ts';
import { EcdsaNoncePool } from '../../crypto/ecdsa-nonces.ts';
import { backendOf } from '../hardware-keys.ts';
import { mgf1 } from '../../crypto/rsa-encrypt.ts';
import { ALG } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import { OBJECT_ATTR } from '../types/public.ts';
import type { SigScheme, Signature } from '../types/signature.ts';
import { hasPrivate, keysOf, type TpmObject } from './model.ts';

/** A signing key (Part 3 IsSigningObject): the sign attribute on anything but a symmetric cipher. */
export function isSigningKey(o: TpmObject): boolean {
  return (o.public.objectAttributes & OBJECT_ATTR.sign) !== 0 && o.public.type !== ALG.SYMCIPHER;
}

/** The scheme an object's public area names (TPM_ALG_NULL: the caller must choose). */
export function objectScheme(o: TpmObject): SigScheme {
  const p = o.public.parameters;
  return p.type === ALG.SYMCIPHER ? NULL_SCHEME : p.scheme;
}

const NULL_SCHEME: SigScheme = { scheme: ALG.NULL, hashAlg: ALG.NULL };

/**
 * CryptSelectSignScheme: the scheme to sign with, or undefined when the input cannot be used
 * (TPM_RC_SCHEME for the caller to number). With no key (TPM_RH_NULL) the scheme is NULL. A key
 * without a scheme takes the input, which must not be NULL; a key with one takes NULL (meaning
 * the key's) or exactly the key's scheme and hash. Whether the scheme suits the key's type is
 * checked when signing.
 */
export function selectSignScheme(o: TpmObject | undefined, input: SigScheme): SigScheme | undefined {
  if (!o) return NULL_SCHEME;
  if (o.public.type === ALG.SYMCIPHER) return undefined;
  const own = objectScheme(o);
  if (own.scheme === ALG.NULL) return input.scheme === ALG.NULL ? undefined : input;
  if (input.scheme === ALG.NULL) return own;
  return own.scheme === input.scheme && own.hashAlg === input.hashAlg ? input : undefined;
}

// ---------------------------------------------------------------------------------------------
// Per-object caches

/** What one object needs to sign quickly: node:crypto options per scheme, ECDSA state. */
interface Signer {
  /** sign() options by (scheme << 16 | hash). */
  readonly options: Map<number, KeyObject | { key: KeyObject; padding?: number; saltLength?: number; dsaEncoding?: 'ieee-p1363' }>;
  ecdsa?: EcdsaKey;
}

interface EcdsaKey {
  readonly curve: Curve;
  readonly d: bigint;
  readonly ecdh: ECDH;
  readonly nonces: EcdsaNoncePool;
}

const signers = new WeakMap<TpmObject, Signer>();

function signerOf(o: TpmObject): Signer {
  let s = signers.get(o);
  if (!s) signers.set(o, (s = { options: new Map() }));
  return s;
}

const ECDH_CURVE: Record<number, string> = { 32: 'prime256v1', 48: 'secp384r1' };

function hashName(alg: number): string {
  const h = hashInfo(alg);
  if (!h) throw new TpmError(RC.SCHEME);
  return h.name;
}

function privateKeyOf(o: TpmObject): KeyObject {
  const k = keysOf(o).privateKey;
  if (!k) throw new TpmError(RC.KEY);
  return k;
}

/** Salt length for RSA-PSS (reference PssEncode): the digest size, or less if the modulus is small. */
function pssSaltLength(modulusBytes: number, hLen: number): number {
  return Math.min(hLen, modulusBytes - hLen - 2);
}

function signOptions(o: TpmObject, scheme: SigScheme) {
  const s = signerOf(o);
  const id = (scheme.scheme << 16) | scheme.hashAlg;
  let opts = s.options.get(id);
  if (opts) return opts;
  const key = privateKeyOf(o);
  switch (scheme.scheme) {
    case ALG.RSASSA:
      opts = key;
      break;
    case ALG.RSAPSS:
      opts = { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: pssSaltLength(modulusOf(o).length, digestSize(scheme.hashAlg)) };
      break;
    default:
      opts = { key, dsaEncoding: 'ieee-p1363' };
  }
  s.options.set(id, opts);
  return opts;
}

function modulusOf(o: TpmObject): Buffer {
  const u = o.public.unique;
  return 'rsa' in u ? u.rsa : EMPTY;
}

const EMPTY = Buffer.alloc(0);

// ---------------------------------------------------------------------------------------------
// Signing

/**
 * The scheme must suit the key (CryptSign's switch): RSASSA/RSAPSS for RSA, ECDSA for ECC, HMAC
 * for a keyed hash. Otherwise TPM_RC_SCHEME, unnumbered as the reference returns it.
 */
function checkSchemeFits(o: TpmObject, scheme: SigScheme): void {
  const t = o.public.type;
  const s = scheme.scheme;
  const fits = t === ALG.RSA ? s === ALG.RSASSA || s === ALG.RSAPSS : t === ALG.ECC ? s === ALG.ECDSA : t === ALG.KEYEDHASH ? s === ALG.HMAC : false;
  if (!fits) throw new TpmError(RC.SCHEME);
  if (!hasPrivate(o)) throw new TpmError(RC.KEY);
}

/**
 * Signs TPM-built data (SignAttestInfo): the signature over H_scheme(message). A NULL scheme
 * (a TPM_RH_NULL signer) gives the NULL signature.
 */
export function signMessage(o: TpmObject | undefined, scheme: SigScheme, message: Buffer): Signature {
  if (!o || scheme.scheme === ALG.NULL) return NULL_SIG;
  checkSchemeFits(o, scheme);
  const hash = scheme.hashAlg;
  if (o.hardware) return hardwareSign(o, scheme, hashOf(hash, message));
  switch (scheme.scheme) {
    case ALG.RSASSA:
    case ALG.RSAPSS:
      return { sigAlg: scheme.scheme, hash, sig: nodeSign(hashName(hash), message, signOptions(o, scheme)) };
    case ALG.ECDSA: {
      const ahead = signWithPrecomputedNonce(o, hash, message);
      if (ahead) return ahead;
      const rs = nodeSign(hashName(hash), message, signOptions(o, scheme));
      const half = rs.length >>> 1;
      return { sigAlg: ALG.ECDSA, hash, r: rs.subarray(0, half), s: rs.subarray(half) };
    }
    default:
      return { sigAlg: ALG.HMAC, hash, digest: keyedHashHmac(o, hash, hashOf(hash, message)) };
  }
}

const NULL_SIG: Signature = { sigAlg: ALG.NULL };

function hardwareSign(o: TpmObject, scheme: SigScheme, digest: Buffer): Signature {
  return backendOf(o.hardware!).sign(o.hardware!.outer, o.public, scheme, digest);
}

/** The TPM's RNG (TpmRandom), for PSS salts and ECDSA nonces. */
export interface RandomSource {
  bytes(n: number): Buffer;
}

/** DER DigestInfo prefixes (RFC 8017, 9.2 note 1). */
const DIGEST_INFO: Record<number, Buffer> = {
  [ALG.SHA1]: Buffer.from('3021300906052b0e03021a05000414', 'hex'),
  [ALG.SHA256]: Buffer.from('3031300d060960864801650304020105000420', 'hex'),
  [ALG.SHA384]: Buffer.from('3041300d060960864801650304020205000430', 'hex'),
  [ALG.SHA512]: Buffer.from('3051300d060960864801650304020305000440', 'hex'),
};

/**
 * Signs a caller's digest (TPM2_Sign). TPM_RC_SCHEME if the scheme does not suit the key,
 * TPM_RC_VALUE if the digest is not the size of the scheme's hash (an RSA DigestInfo would lie
 * about it), TPM_RC_SIZE if the modulus is too small for the encoding. `random` supplies the
 * PSS salt and the ECDSA nonce and blinding factor.
 */
export function signDigest(o: TpmObject, scheme: SigScheme, digest: Buffer, random: RandomSource): Signature {
  checkSchemeFits(o, scheme);
  const hash = scheme.hashAlg;
  const hLen = digestSize(hash);
  if (o.hardware) {
    if (digest.length !== hLen) throw new TpmError(RC.VALUE);
    return hardwareSign(o, scheme, digest);
  }
  switch (scheme.scheme) {
    case ALG.RSASSA: {
      if (digest.length !== hLen) throw new TpmError(RC.VALUE);
      const t = Buffer.concat([DIGEST_INFO[hash]!, digest]);
      if (modulusOf(o).length < t.length + 11) throw new TpmError(RC.SIZE);
      return { sigAlg: ALG.RSASSA, hash, sig: privateEncrypt({ key: privateKeyOf(o), padding: constants.RSA_PKCS1_PADDING }, t) };
    }
    case ALG.RSAPSS: {
      if (digest.length !== hLen) throw new TpmError(RC.VALUE);
      const n = modulusOf(o);
      const em = pssEncode(n, hash, digest, random);
      return { sigAlg: ALG.RSAPSS, hash, sig: privateEncrypt({ key: privateKeyOf(o), padding: constants.RSA_NO_PADDING }, em) };
    }
    case ALG.ECDSA: {
      const { r, s } = ecdsaSignDigest(ecdsaKeyOf(o), digest, random);
      return { sigAlg: ALG.ECDSA, hash, r, s };
    }
    default:
      return { sigAlg: ALG.HMAC, hash, digest: keyedHashHmac(o, hash, digest) };
  }
}

function bitLength(n: Buffer): number {
  let i = 0;
  while (i < n.length && n[i] === 0) i++;
  if (i === n.length) return 0;
  return (n.length - i) * 8 - (Math.clz32(n[i]!) - 24);
}

/** EMSA-PSS-ENCODE (RFC 8017, 9.1.1), as a modulus-sized block for a raw private-key operation. */
function pssEncode(n: Buffer, hash: number, mHash: Buffer, random: RandomSource): Buffer {
  const hLen = digestSize(hash);
  const modBits = bitLength(n);
  const emBits = modBits - 1;
  const emLen = Math.ceil(emBits / 8);
  const sLen = pssSaltLength(emLen, hLen);
  if (sLen < 0) throw new TpmError(RC.SIZE);
  const salt = random.bytes(sLen);
  const h = hashOf(hash, Buffer.alloc(8), mHash, salt);
  const dbLen = emLen - hLen - 1;
  const db = Buffer.alloc(dbLen);
  db[dbLen - sLen - 1] = 0x01;
  salt.copy(db, dbLen - sLen);
  const mask = mgf1(hash, h, dbLen);
  for (let i = 0; i < dbLen; i++) db[i] = db[i]! ^ mask[i]!;
  const topBits = 8 * emLen - emBits;
  if (topBits) db[0] = db[0]! & (0xff >>> topBits);
  const out = Buffer.alloc(n.length);
  const at = n.length - emLen;
  db.copy(out, at);
  h.copy(out, at + dbLen);
  out[n.length - 1] = 0xbc;
  return out;
}

function ecdsaKeyOf(o: TpmObject): EcdsaKey {
  const s = signerOf(o);
  if (s.ecdsa) return s.ecdsa;
  const p = o.public.parameters;
  if (p.type !== ALG.ECC || !o.sensitive) throw new TpmError(RC.KEY);
  const c = curveOf(p.curveID);
  const curveName = ECDH_CURVE[c.bytes]!;
  s.ecdsa = { curve: c, d: toBigInt(o.sensitive.sensitive), ecdh: createECDH(curveName), nonces: new EcdsaNoncePool(c, createECDH(curveName)) };
  return s.ecdsa;
}

/**
 * ECDSA over H(message) with a nonce the key's pool computed ahead, or undefined when none is
 * ready (a key's first signatures, or a key signing faster than its pool refills).
 */
function signWithPrecomputedNonce(o: TpmObject, hash: number, message: Buffer): Signature | undefined {
  const key = ecdsaKeyOf(o);
  const nonce = key.nonces.take();
  if (!nonce) return undefined;
  const c = key.curve;
  const digest = hashOf(hash, message);
  const s = key.nonces.sign(nonce, toBigInt(digest.length > c.bytes ? digest.subarray(0, c.bytes) : digest), key.d);
  if (s === 0n) return undefined;
  return { sigAlg: ALG.ECDSA, hash, r: padded(nonce.r, c.bytes), s: padded(s, c.bytes) };
}

function padded(v: bigint, bytes: number): Buffer {
  return Buffer.from(v.toString(16).padStart(bytes * 2, '0'), 'hex');
}

/**
 * ECDSA over a given digest (FIPS 186-4 6.4; the leftmost bits of the digest when it is longer
 * than the order). k·G comes from OpenSSL; s = k⁻¹(e + r·d) is computed as (k·b)⁻¹·b(e + r·d)
 * with a random b, so the inversion never sees k itself.
 */
function ecdsaSignDigest(key: EcdsaKey, digest: Buffer, random: RandomSource): { r: Buffer; s: Buffer } {
  const { curve: c, d, ecdh } = key;
  const n = c.order;
  const e = toBigInt(digest.length > c.bytes ? digest.subarray(0, c.bytes) : digest);
  for (;;) {
    const k = (toBigInt(random.bytes(c.bytes + 8)) % (n - 1n)) + 1n;
    const b = (toBigInt(random.bytes(c.bytes + 8)) % (n - 1n)) + 1n;
    ecdh.setPrivateKey(padded(k, c.bytes));
    const R = ecdh.getPublicKey();
    const r = toBigInt(R.subarray(1, 1 + c.bytes)) % n;
    if (r === 0n) continue;
    const s = (modInverse((k * b) % n, n) * ((b * ((e + r * d) % n)) % n)) % n;
    if (s === 0n) continue;
    return { r: padded(r, c.bytes), s: padded(s, c.bytes) };
  }
}

// ---------------------------------------------------------------------------------------------
// Verification

/**
 * CryptValidateSignature: TPM_RC_SUCCESS, TPM_RC_SCHEME (a signature this key cannot check),
 * TPM_RC_SIGNATURE (not genuine) or TPM_RC_HANDLE (an HMAC key loaded without its secret).
 * The caller has checked that the key is a signing key.
 */
/** The HMAC of `data` under a keyed-hash key, computed where its bits are: the engine, or the chip behind a hardware-backed object. */
export function keyedHashHmac(o: TpmObject, alg: number, data: Buffer): Buffer {
  return o.hardware ? backendOf(o.hardware).hmac(o.hardware.outer, o.public, alg, data) : hmac(alg, o.sensitive!.sensitive, data);
}

export function verifyDigest(o: TpmObject, digest: Buffer, sig: Signature): number {
  if (sig.sigAlg === ALG.NULL) return RC.SIGNATURE;
  switch (o.public.type) {
    case ALG.RSA:
      if (sig.sigAlg !== ALG.RSASSA && sig.sigAlg !== ALG.RSAPSS) return RC.SCHEME;
      return verifyRsa(o, digest, sig.sigAlg, sig.hash, sig.sig);
    case ALG.ECC:
      if (sig.sigAlg !== ALG.ECDSA) return RC.SCHEME;
      return verifyEcdsa(o, digest, sig.r, sig.s);
    case ALG.KEYEDHASH: {
      if (sig.sigAlg !== ALG.HMAC) return RC.SCHEME;
      if (!o.sensitive && !o.hardware) return RC.HANDLE;
      const own = objectScheme(o);
      // A key with a scheme verifies only signatures of that scheme and hash.
      if (own.scheme !== ALG.NULL && (own.scheme !== ALG.HMAC || own.hashAlg !== sig.hash)) return RC.SIGNATURE;
      return constantTimeEqual(keyedHashHmac(o, sig.hash, digest), sig.digest) ? RC.SUCCESS : RC.SIGNATURE;
    }
    default:
      return RC.SCHEME;
  }
}

function verifyRsa(o: TpmObject, digest: Buffer, sigAlg: number, hash: number, s: Buffer): number {
  const n = modulusOf(o);
  if (s.length !== n.length || digest.length !== digestSize(hash)) return RC.SIGNATURE;
  let em: Buffer;
  try {
    em = publicDecrypt({ key: keysOf(o).publicKey, padding: constants.RSA_NO_PADDING }, s);
  } catch {
    return RC.SIGNATURE;
  }
  const ok = sigAlg === ALG.RSASSA ? pkcs1Matches(em, hash, digest) : pssMatches(em, bitLength(n), hash, digest);
  return ok ? RC.SUCCESS : RC.SIGNATURE;
}

/** EMSA-PKCS1-v1_5: 00 01 FF…FF 00 || DigestInfo || digest. */
function pkcs1Matches(em: Buffer, hash: number, digest: Buffer): boolean {
  const t = Buffer.concat([DIGEST_INFO[hash]!, digest]);
  if (em.length < t.length + 11) return false;
  const expected = Buffer.alloc(em.length, 0xff);
  expected[0] = 0;
  expected[1] = 1;
  expected[em.length - t.length - 1] = 0;
  t.copy(expected, em.length - t.length);
  return constantTimeEqual(expected, em);
}

/** EMSA-PSS-VERIFY (RFC 8017, 9.1.2), any salt length, as the TPM accepts. */
function pssMatches(block: Buffer, modBits: number, hash: number, mHash: Buffer): boolean {
  const hLen = digestSize(hash);
  const emBits = modBits - 1;
  const emLen = Math.ceil(emBits / 8);
  if (block.length < emLen) return false;
  for (let i = 0; i < block.length - emLen; i++) if (block[i] !== 0) return false;
  const em = block.subarray(block.length - emLen);
  if (emLen < hLen + 2 || em[emLen - 1] !== 0xbc) return false;
  const maskedDB = em.subarray(0, emLen - hLen - 1);
  const h = em.subarray(emLen - hLen - 1, emLen - 1);
  const topBits = 8 * emLen - emBits;
  const topMask = topBits === 0 ? 0 : (0xff << (8 - topBits)) & 0xff;
  if (maskedDB[0]! & topMask) return false;
  const db = mgf1(hash, h, maskedDB.length);
  for (let i = 0; i < db.length; i++) db[i] = db[i]! ^ maskedDB[i]!;
  db[0] = db[0]! & ~topMask;
  let i = 0;
  while (i < db.length && db[i] === 0) i++;
  if (i === db.length || db[i] !== 0x01) return false;
  return constantTimeEqual(h, hashOf(hash, Buffer.alloc(8), mHash, db.subarray(i + 1)));
}

/** A big-endian integer as exactly n bytes (leading zeros added or dropped), or undefined. */
function fixedWidth(v: Buffer, n: number): Buffer | undefined {
  let i = 0;
  while (i < v.length - n && v[i] === 0) i++;
  const t = v.subarray(i);
  if (t.length > n) return undefined;
  return t.length === n ? t : Buffer.concat([Buffer.alloc(n - t.length), t]);
}

/** ECDSA over a given digest: @noble/curves (node:crypto verifies only messages it hashes itself). */
function verifyEcdsa(o: TpmObject, digest: Buffer, r: Buffer, s: Buffer): number {
  const p = o.public.parameters;
  const u = o.public.unique;
  if (p.type !== ALG.ECC || !('ecc' in u)) return RC.SIGNATURE;
  let c: Curve;
  try {
    c = curveOf(p.curveID);
  } catch {
    return RC.SCHEME;
  }
  const rr = fixedWidth(r, c.bytes);
  const ss = fixedWidth(s, c.bytes);
  const x = fixedWidth(u.ecc.x, c.bytes);
  const y = fixedWidth(u.ecc.y, c.bytes);
  if (!rr || !ss || !x || !y || digest.length === 0) return RC.SIGNATURE;
  try {
    const point = Buffer.concat([FOUR, x, y]);
    return c.noble.verify(Buffer.concat([rr, ss]), digest, point, { prehash: false, lowS: false }) ? RC.SUCCESS : RC.SIGNATURE;
  } catch {
    return RC.SIGNATURE;
  }
}

const FOUR = Buffer.from([4]);
