import { createCipheriv, createDecipheriv } from 'node:crypto';
import { kdfa } from '../../crypto/kdf.ts';
import { ALG } from '../constants.ts';
import type { SymDef } from '../types/public-parms.ts';

/**
 * Session-based parameter encryption (Part 1, 21): the data of the first TPM2B parameter is
 * XOR-masked or AES-CFB-encrypted with keys derived from the session key, the authorized
 * entity's authValue and the two nonces, newest first.
 */
export function cryptParameter(
  sym: SymDef,
  hashAlg: number,
  sessionValue: Buffer,
  nonceNewer: Buffer,
  nonceOlder: Buffer,
  data: Buffer,
  direction: 'encrypt' | 'decrypt',
): Buffer {
  if (data.length === 0) return data;
  if (sym.algorithm === ALG.XOR) {
    const mask = kdfa(hashAlg, sessionValue, 'XOR', nonceNewer, nonceOlder, data.length * 8);
    const out = Buffer.allocUnsafe(data.length);
    for (let i = 0; i < data.length; i++) out[i] = data[i]! ^ mask[i]!;
    return out;
  }
  const keyBytes = sym.keyBits / 8;
  const material = kdfa(hashAlg, sessionValue, 'CFB', nonceNewer, nonceOlder, sym.keyBits + 128);
  const cipher = `aes-${sym.keyBits}-cfb`;
  const key = material.subarray(0, keyBytes);
  const iv = material.subarray(keyBytes, keyBytes + 16);
  const c = direction === 'encrypt' ? createCipheriv(cipher, key, iv) : createDecipheriv(cipher, key, iv);
  return Buffer.concat([c.update(data), c.final()]);
}
