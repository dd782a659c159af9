import { constantTimeEqual, digest, digestSize, hmac } from '../../crypto/hash.ts';
import { kdfa } from '../../crypto/kdf.ts';
import { aesCfbZeroIv } from '../../crypto/sym-cipher.ts';
import { Reader, Writer } from '../../wire/buffer.ts';
import { ALG } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import { digestBuf } from '../types/basic.ts';
import { sensitiveArea, type Public, type Sensitive } from '../types/public.ts';
import type { SymDef } from '../types/public-parms.ts';

/**
 * The wrappers of Part 1, 23 (protected storage) and 24 (credential protection), for blobs whose
 * seed comes from secret sharing rather than a loaded parent's seedValue:
 *
 * - outer wrapper: the data AES-CFB-encrypted (zero IV) under KDFa(hash, seed, "STORAGE", Name,
 *   -, keyBits), preceded by the TPM2B_DIGEST HMAC(KDFa(hash, seed, "INTEGRITY", -, -, digest
 *   bits), encrypted data || Name); `hash` is the protector's nameAlg and the cipher its symmetric;
 * - inner wrapper (duplication): TPM2B_DIGEST H_nameAlg(data || Name) || data, AES-CFB-encrypted
 *   (zero IV) under a caller's or the TPM's key.
 *
 * Unwrapping errors are unnumbered: TPM_RC_INSUFFICIENT or TPM_RC_SIZE for a blob that does not
 * parse, TPM_RC_INTEGRITY for one that was changed or wrapped for another Name or seed.
 */
export interface Protector {
  /** Hash of the outer wrapper: the protector's nameAlg. */
  readonly hashAlg: number;
  /** The protector's symmetric definition (a restricted decryption key's `symmetric`). */
  readonly sym: SymDef;
}

/** The outer-wrapper parameters a key's public area gives; undefined if it has no symmetric cipher. */
export function protectorOf(pub: Public): Protector | undefined {
  const p = pub.parameters;
  const sym = p.type === ALG.RSA || p.type === ALG.ECC ? p.symmetric : p.type === ALG.SYMCIPHER ? p.sym : undefined;
  if (!sym || sym.algorithm !== ALG.AES || digestSize(pub.nameAlg) === 0) return undefined;
  return { hashAlg: pub.nameAlg, sym };
}

const EMPTY = Buffer.alloc(0);

function tpm2b(data: Uint8Array): Buffer {
  const out = Buffer.alloc(2 + data.length);
  out.writeUInt16BE(data.length);
  Buffer.from(data).copy(out, 2);
  return out;
}

function outerKeys(p: Protector, seed: Buffer, name: Buffer): { symKey: Buffer; hmacKey: Buffer } {
  return {
    symKey: kdfa(p.hashAlg, seed, 'STORAGE', name, EMPTY, p.sym.keyBits),
    hmacKey: kdfa(p.hashAlg, seed, 'INTEGRITY', EMPTY, EMPTY, digestSize(p.hashAlg) * 8),
  };
}

/** ProduceOuterWrap: integrity TPM2B_DIGEST || AES-CFB(data). */
export function produceOuterWrap(p: Protector, seed: Buffer, name: Buffer, data: Buffer): Buffer {
  const { symKey, hmacKey } = outerKeys(p, seed, name);
  const enc = aesCfbZeroIv(symKey, data, 'encrypt');
  return Buffer.concat([tpm2b(hmac(p.hashAlg, hmacKey, enc, name)), enc]);
}

/** UnwrapOuter: checks the integrity HMAC, then decrypts what follows it. */
export function unwrapOuter(p: Protector, seed: Buffer, name: Buffer, blob: Buffer): Buffer {
  const r = new Reader(blob);
  const integrity = digestBuf.decode(r);
  const enc = r.bytes(r.remaining);
  const { symKey, hmacKey } = outerKeys(p, seed, name);
  if (!constantTimeEqual(integrity, hmac(p.hashAlg, hmacKey, enc, name))) throw new TpmError(RC.INTEGRITY);
  return aesCfbZeroIv(symKey, enc, 'decrypt');
}

/** SecretToCredential: the TPM2B_ID_OBJECT contents protecting `credential` for the object `name`. */
export function secretToCredential(p: Protector, seed: Buffer, name: Buffer, credential: Buffer): Buffer {
  return produceOuterWrap(p, seed, name, tpm2b(credential));
}

/** CredentialToSecret: the credential (a TPM2B_DIGEST's data) back out of a TPM2B_ID_OBJECT. */
export function credentialToSecret(p: Protector, seed: Buffer, name: Buffer, blob: Buffer): Buffer {
  const r = new Reader(unwrapOuter(p, seed, name, blob));
  const credential = digestBuf.decode(r);
  if (r.remaining !== 0) throw new TpmError(RC.SIZE);
  return credential;
}

/** TPM2B_SENSITIVE as a duplication blob carries it: the authValue padded to the nameAlg digest size. */
function marshalSensitive(s: Sensitive, nameAlg: number): Buffer {
  const size = digestSize(nameAlg);
  const authValue = s.authValue.length < size ? Buffer.concat([s.authValue, Buffer.alloc(size - s.authValue.length)]) : s.authValue;
  const w = new Writer(256);
  const at = w.reserveU16();
  sensitiveArea.encode(w, { ...s, authValue });
  w.patchU16(at, w.length - 2);
  return w.finish();
}

/** The inner wrapper's symmetric definition and key. */
export interface InnerWrap {
  readonly sym: SymDef;
  readonly key: Buffer;
}

/**
 * SensitiveToDuplicate: TPM2B_SENSITIVE, under an inner wrapper if `inner` is given (integrity
 * by the object's nameAlg), then an outer wrapper if `outer` is given. The result is the
 * TPM2B_PRIVATE contents of a duplication blob.
 */
export function sensitiveToDuplicate(
  sensitive: Sensitive,
  name: Buffer,
  nameAlg: number,
  outer: { protector: Protector; seed: Buffer } | undefined,
  inner: InnerWrap | undefined,
): Buffer {
  let data = marshalSensitive(sensitive, nameAlg);
  if (inner) {
    data = aesCfbZeroIv(inner.key, Buffer.concat([tpm2b(digest(nameAlg, data, name)), data]), 'encrypt');
  }
  if (outer) data = produceOuterWrap(outer.protector, outer.seed, name, data);
  return data;
}

/**
 * DuplicateToSensitive: removes the outer wrapper (if `outer`), then the inner one (if `inner`),
 * and unmarshals the TPM2B_SENSITIVE, which must fill what is left exactly (TPM_RC_SIZE).
 */
export function duplicateToSensitive(
  blob: Buffer,
  name: Buffer,
  nameAlg: number,
  outer: { protector: Protector; seed: Buffer } | undefined,
  inner: InnerWrap | undefined,
): Sensitive {
  let data = blob;
  if (outer) data = unwrapOuter(outer.protector, outer.seed, name, data);
  if (inner) {
    const r = new Reader(aesCfbZeroIv(inner.key, data, 'decrypt'));
    const integrity = digestBuf.decode(r);
    data = Buffer.from(r.bytes(r.remaining));
    if (!constantTimeEqual(integrity, digest(nameAlg, data, name))) throw new TpmError(RC.INTEGRITY);
  }
  const r = new Reader(data);
  const size = r.u16();
  if (size !== r.remaining) throw new TpmError(RC.SIZE);
  const s = sensitiveArea.decode(r);
  if (r.remaining !== 0) throw new TpmError(RC.SIZE);
  return s;
}
