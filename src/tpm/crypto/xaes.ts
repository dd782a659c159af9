/**
 * XAES-256-GCM (C2SP, https://c2sp.org/XAES-256-GCM): AES-256-GCM under a subkey derived from
 * the key and the first half of a 192-bit nonce by the NIST SP 800-108r1 counter KDF with
 * AES-256-CMAC, the second half being the GCM nonce. Random nonces are then safe for about 2⁸⁰
 * messages under one key, where plain AES-GCM allows 2³² — and a PSS seals one message per saved
 * command.
 *
 * The derivation costs two AES blocks on a cipher object made once per key, where a per-message
 * HMAC key derivation costs two HMAC objects; at one seal per state-changing command that is most
 * of the sealing time.
 */
import { createCipheriv, createDecipheriv, type Cipher } from 'node:crypto';
import { AES_GCM_TAG_BYTES, AES_256_GCM_KEY_BYTES } from './aead.ts';

export const XAES_NONCE_BYTES = 24;
const BLOCK = 16;

export class Xaes256Gcm {
  /** AES-256 in ECB mode without padding: the block function, keyed once. */
  private readonly block: Cipher;
  /** The CMAC subkey K1 (SP 800-38B 6.1). */
  private readonly k1: Buffer;

  constructor(key: Uint8Array) {
    if (key.length !== AES_256_GCM_KEY_BYTES) throw new RangeError(`an XAES-256-GCM key is ${AES_256_GCM_KEY_BYTES} bytes, not ${key.length}`);
    this.block = createCipheriv('aes-256-ecb', key, null);
    this.block.setAutoPadding(false);
    const l = this.block.update(Buffer.alloc(BLOCK));
    this.k1 = Buffer.allocUnsafe(BLOCK);
    for (let i = 0; i < BLOCK; i++) this.k1[i] = ((l[i]! << 1) | (i + 1 < BLOCK ? l[i + 1]! >>> 7 : 0)) & 0xff;
    if (l[0]! & 0x80) this.k1[BLOCK - 1]! ^= 0x87;
  }

  /** The AES-256-GCM key and nonce for `nonce` (the specification's Kₓ and Nₓ). */
  subkey(nonce: Uint8Array): { key: Buffer; iv: Uint8Array } {
    if (nonce.length !== XAES_NONCE_BYTES) throw new RangeError(`an XAES-256-GCM nonce is ${XAES_NONCE_BYTES} bytes, not ${nonce.length}`);
    // M1 || M2 = 0x00 i 'X' 0x00 || N[:12] for counters 1 and 2, each XORed with K1.
    const m = Buffer.allocUnsafe(2 * BLOCK);
    for (let half = 0; half < 2; half++) {
      const at = half * BLOCK;
      m[at] = 0;
      m[at + 1] = half + 1;
      m[at + 2] = 0x58;
      m[at + 3] = 0;
      m.set(nonce.subarray(0, 12), at + 4);
      for (let i = 0; i < BLOCK; i++) m[at + i]! ^= this.k1[i]!;
    }
    return { key: this.block.update(m), iv: nonce.subarray(12) };
  }

  /**
   * `prefix || ciphertext || tag` in one buffer: the prefix (a header, say) is copied in front,
   * so a caller storing both needs no second copy. The prefix is not authenticated unless it is
   * also in `aad`.
   */
  seal(nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array, prefix: Uint8Array = EMPTY): Buffer {
    const { key, iv } = this.subkey(nonce);
    const cipher = createCipheriv('aes-256-gcm', key, iv, { authTagLength: AES_GCM_TAG_BYTES });
    key.fill(0);
    cipher.setAAD(aad);
    const out = Buffer.allocUnsafe(prefix.length + plaintext.length + AES_GCM_TAG_BYTES);
    out.set(prefix, 0);
    let at = prefix.length;
    at += cipher.update(plaintext).copy(out, at);
    at += cipher.final().copy(out, at);
    cipher.getAuthTag().copy(out, at);
    return out;
  }

  /** The plaintext of ciphertext || tag, or undefined when the tag does not verify. */
  open(nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer | undefined {
    if (sealed.length < AES_GCM_TAG_BYTES) return undefined;
    const { key, iv } = this.subkey(nonce);
    const decipher = createDecipheriv('aes-256-gcm', key, iv, { authTagLength: AES_GCM_TAG_BYTES });
    key.fill(0);
    decipher.setAAD(aad);
    decipher.setAuthTag(sealed.subarray(sealed.length - AES_GCM_TAG_BYTES));
    try {
      return Buffer.concat([decipher.update(sealed.subarray(0, sealed.length - AES_GCM_TAG_BYTES)), decipher.final()]);
    } catch {
      return undefined;
    }
  }
}

const EMPTY = new Uint8Array(0);
