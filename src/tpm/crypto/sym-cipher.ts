import { createCipheriv, createDecipheriv } from 'node:crypto';

/** Block cipher modes of TPM2_EncryptDecrypt, protection wrappers and parameter encryption. */
export type CipherMode = 'cfb' | 'cbc' | 'ctr' | 'ofb' | 'ecb';

export const AES_BLOCK = 16;

/** AES in one mode over whole data, with OpenSSL; `iv` is ignored for ECB. No padding is added. */
export function aes(mode: CipherMode, key: Uint8Array, iv: Uint8Array, data: Uint8Array, direction: 'encrypt' | 'decrypt'): Buffer {
  if (data.length === 0) return Buffer.alloc(0);
  const name = `aes-${key.length * 8}-${mode}`;
  const ivArg = mode === 'ecb' ? null : iv;
  const c = direction === 'encrypt' ? createCipheriv(name, key, ivArg) : createDecipheriv(name, key, ivArg);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(data), c.final()]);
}

/** AES-CFB with an all-zero IV: the symmetric layer of storage, credential and duplication wrappers. */
export function aesCfbZeroIv(key: Uint8Array, data: Uint8Array, direction: 'encrypt' | 'decrypt'): Buffer {
  return aes('cfb', key, Buffer.alloc(AES_BLOCK), data, direction);
}

/**
 * AES in a mode, returning the chaining value the next call continues from (Part 3
 * EncryptDecrypt ivOut, as the reference CryptSymmetricEncrypt/Decrypt leave it): CBC the last
 * ciphertext block; CFB the last ciphertext block, a final partial block zero-filled; OFB the last
 * keystream block; CTR the counter advanced by the number of blocks used; ECB the input IV.
 * CBC and ECB need whole blocks (the caller checks).
 */
export function aesWithIv(mode: CipherMode, key: Uint8Array, iv: Uint8Array, data: Uint8Array, direction: 'encrypt' | 'decrypt'): { out: Buffer; ivOut: Buffer } {
  const out = aes(mode, key, iv, data, direction);
  const n = data.length;
  if (n === 0 || mode === 'ecb') return { out, ivOut: Buffer.from(iv) };
  const blocks = Math.ceil(n / AES_BLOCK);
  switch (mode) {
    case 'cbc': {
      const cipher = direction === 'encrypt' ? out : Buffer.from(data);
      return { out, ivOut: Buffer.from(cipher.subarray(n - AES_BLOCK)) };
    }
    case 'cfb': {
      const cipher = direction === 'encrypt' ? out : Buffer.from(data);
      const tail = n % AES_BLOCK || AES_BLOCK;
      const ivOut = Buffer.alloc(AES_BLOCK);
      cipher.subarray(n - tail).copy(ivOut);
      return { out, ivOut };
    }
    case 'ofb': {
      // The keystream of `blocks` blocks; its last block is the next IV.
      const stream = aes('ofb', key, iv, Buffer.alloc(blocks * AES_BLOCK), 'encrypt');
      return { out, ivOut: Buffer.from(stream.subarray(stream.length - AES_BLOCK)) };
    }
    case 'ctr': {
      let counter = BigInt('0x' + Buffer.from(iv).toString('hex'));
      counter = (counter + BigInt(blocks)) & ((1n << 128n) - 1n);
      return { out, ivOut: Buffer.from(counter.toString(16).padStart(32, '0'), 'hex') };
    }
  }
}
