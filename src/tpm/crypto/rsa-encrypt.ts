import { constants, privateDecrypt, publicEncrypt, type KeyObject } from 'node:crypto';
import { digest, digestSize, hashAlg } from './hash.ts';

/**
 * RSA encryption schemes (PKCS #1 v2.2): the OAEP and PKCS #1 v1.5 encodings are done here with
 * an injected random source, so an engine stays deterministic given its entropy; the modular
 * exponentiations go to node:crypto (OpenSSL) without padding. Failures return undefined and the
 * caller picks the response code.
 */

/** MGF1 with the given hash: `length` bytes of mask from `seed`. */
export function mgf1(hashAlgId: number, seed: Uint8Array, length: number): Buffer {
  const out: Buffer[] = [];
  const counter = Buffer.alloc(4);
  for (let i = 0, have = 0; have < length; i++) {
    counter.writeUInt32BE(i);
    const block = digest(hashAlgId, seed, counter);
    out.push(block);
    have += block.length;
  }
  return Buffer.concat(out).subarray(0, length);
}

function xorInto(target: Buffer, mask: Uint8Array): void {
  for (let i = 0; i < target.length; i++) target[i]! ^= mask[i]!;
}

/** EME-OAEP encoding of `message` for a k-byte modulus; undefined if the message is too long. */
export function oaepEncode(hashAlgId: number, label: Uint8Array, message: Uint8Array, k: number, random: (n: number) => Buffer): Buffer | undefined {
  const hLen = digestSize(hashAlgId);
  if (hLen === 0 || message.length > k - 2 * hLen - 2) return undefined;
  const db = Buffer.alloc(k - hLen - 1);
  digest(hashAlgId, label).copy(db, 0);
  db[db.length - message.length - 1] = 0x01;
  Buffer.from(message).copy(db, db.length - message.length);
  const seed = Buffer.from(random(hLen));
  xorInto(db, mgf1(hashAlgId, seed, db.length));
  xorInto(seed, mgf1(hashAlgId, db, hLen));
  return Buffer.concat([Buffer.alloc(1), seed, db]);
}

/** EME-PKCS1-v1_5 encoding (RSAES): 00 02 PS 00 M with PS at least eight non-zero random octets. */
export function pkcs1v15Encode(message: Uint8Array, k: number, random: (n: number) => Buffer): Buffer | undefined {
  if (message.length > k - 11) return undefined;
  const ps = Buffer.alloc(k - message.length - 3);
  let filled = 0;
  while (filled < ps.length) {
    for (const b of random(ps.length - filled)) if (b !== 0 && filled < ps.length) ps[filled++] = b;
  }
  return Buffer.concat([Buffer.from([0, 2]), ps, Buffer.alloc(1), message]);
}

/** Whether the big-endian value is below the modulus (both of the modulus' length). */
export function belowModulus(value: Uint8Array, modulus: Uint8Array): boolean {
  return value.length === modulus.length && Buffer.compare(Buffer.from(value), Buffer.from(modulus)) < 0;
}

/** RSAEP: value^e mod n of a modulus-sized value; undefined if it is not below the modulus. */
export function rsaPublicRaw(key: KeyObject, modulus: Uint8Array, value: Uint8Array): Buffer | undefined {
  if (!belowModulus(value, modulus)) return undefined;
  return publicEncrypt({ key, padding: constants.RSA_NO_PADDING }, value);
}

/** RSADP: value^d mod n of a modulus-sized value below the modulus (the caller checks that). */
export function rsaPrivateRaw(key: KeyObject, value: Uint8Array): Buffer {
  return privateDecrypt({ key, padding: constants.RSA_NO_PADDING }, value);
}

/** RSAES-OAEP decryption; undefined if the encoding does not check out. */
export function oaepDecrypt(key: KeyObject, hashAlgId: number, label: Uint8Array, cipher: Uint8Array): Buffer | undefined {
  const h = hashAlg(hashAlgId);
  if (!h) return undefined;
  try {
    return privateDecrypt({ key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: h.name, oaepLabel: Buffer.from(label) }, cipher);
  } catch {
    return undefined;
  }
}

/**
 * EME-PKCS1-v1_5 decoding of a decrypted block; undefined if it is not 00 02 PS 00 M with at
 * least eight octets of PS. The scan visits every octet whatever it finds.
 */
export function pkcs1v15Decode(em: Uint8Array): Buffer | undefined {
  let bad = em.length < 11 || em[0] !== 0 || em[1] !== 2 ? 1 : 0;
  let sep = 0;
  for (let i = 2; i < em.length; i++) {
    const isZero = em[i] === 0 ? 1 : 0;
    if (isZero && sep === 0) sep = i;
  }
  if (sep < 10) bad = 1;
  return bad ? undefined : Buffer.from(em.subarray(sep + 1));
}
