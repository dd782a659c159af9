/**
 * AES-256-GCM with associated data, for data at rest whose header must stay readable but must
 * not be alterable. The tag is appended to the ciphertext so a sealed value is one buffer.
 */
import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';

export const AES_256_GCM_KEY_BYTES = 32;
export const AES_GCM_IV_BYTES = 12;
export const AES_GCM_TAG_BYTES = 16;

/** Encrypts `plaintext` and authenticates it together with `aad`; returns ciphertext || tag. */
export function aesGcmSeal(key: Uint8Array, iv: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  checkSizes(key, iv);
  const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: AES_GCM_TAG_BYTES });
  cipher.setAAD(aad);
  return Buffer.concat([cipher.update(plaintext), cipher.final(), cipher.getAuthTag()]);
}

/**
 * The plaintext of ciphertext || tag, or undefined when the tag does not verify (altered,
 * truncated, other key, other associated data): callers decide what that means.
 */
export function aesGcmOpen(key: Uint8Array, iv: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer | undefined {
  checkSizes(key, iv);
  if (sealed.length < AES_GCM_TAG_BYTES) return undefined;
  const body = sealed.subarray(0, sealed.length - AES_GCM_TAG_BYTES);
  const tag = sealed.subarray(sealed.length - AES_GCM_TAG_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: AES_GCM_TAG_BYTES });
  decipher.setAAD(aad);
  decipher.setAuthTag(tag);
  try {
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch {
    return undefined;
  }
}

function checkSizes(key: Uint8Array, iv: Uint8Array): void {
  if (key.length !== AES_256_GCM_KEY_BYTES) throw new RangeError(`an AES-256-GCM key is ${AES_256_GCM_KEY_BYTES} bytes, not ${key.length}`);
  if (iv.length !== AES_GCM_IV_BYTES) throw new RangeError(`an AES-GCM IV is ${AES_GCM_IV_BYTES} bytes here, not ${iv.length}`);
}

/**
 * A key and IV for exactly one message: HMAC-SHA256(secret, label || 0 || context) keyed per
 * message by a fresh `context`, split into a 256-bit key and, from a second block, a 96-bit IV.
 * Each key encrypts one message, so GCM's IV-reuse hazard cannot arise even with a fixed label.
 * (One HMAC block per output is an HKDF-Expand with the secret as PRK; node's hkdfSync costs
 * several times more per call, which matters at one call per saved NVM.)
 */
export function oneTimeAeadKey(secret: Uint8Array, label: string, context: Uint8Array): { key: Buffer; iv: Buffer } {
  const info = Buffer.concat([Buffer.from(label, 'latin1'), Buffer.from([0]), context]);
  const key = createHmac('sha256', secret).update(info).update(Buffer.from([1])).digest();
  const iv = createHmac('sha256', secret).update(key).update(info).update(Buffer.from([2])).digest().subarray(0, AES_GCM_IV_BYTES);
  return { key, iv };
}
