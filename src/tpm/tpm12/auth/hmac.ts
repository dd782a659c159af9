import { hmac } from '../../crypto/hash.ts';
import { SHA1, sha1 } from '../state/key-object.ts';

/**
 * The TPM 1.2 authorization HMACs (part 1, section 13): both sides compute them, so the engine
 * and the client share these functions.
 */

/** inParamDigest: SHA-1 of the ordinal and the parameters after the handles. */
export function commandDigest(ordinal: number, params: Uint8Array): Buffer {
  const o = Buffer.alloc(4);
  o.writeUInt32BE(ordinal >>> 0);
  return sha1(o, params);
}

/** outParamDigest: SHA-1 of the return code, the ordinal and the output parameters after any handle. */
export function responseDigest(rc: number, ordinal: number, params: Uint8Array): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32BE(rc >>> 0, 0);
  h.writeUInt32BE(ordinal >>> 0, 4);
  return sha1(h, params);
}

/** HMAC-SHA1(key, paramDigest || nonceEven || nonceOdd || continueAuthSession). */
export function authHmac(key: Uint8Array, paramDigest: Uint8Array, nonceEven: Uint8Array, nonceOdd: Uint8Array, continueSession: boolean): Buffer {
  return hmac(SHA1, key, paramDigest, nonceEven, nonceOdd, Buffer.from([continueSession ? 1 : 0]));
}

/** The OSAP shared secret: HMAC-SHA1(entity auth, nonceEvenOSAP || nonceOddOSAP). */
export function osapSharedSecret(entityAuth: Uint8Array, nonceEvenOSAP: Uint8Array, nonceOddOSAP: Uint8Array): Buffer {
  return hmac(SHA1, entityAuth, nonceEvenOSAP, nonceOddOSAP);
}

/**
 * ADIP with XOR: an encrypted auth value is XORed with SHA-1(sharedSecret || nonce), the nonce
 * being the session's nonceEven for the first value and the command's nonceOdd for a second.
 */
export function adipXor(sharedSecret: Uint8Array, nonce: Uint8Array, value: Uint8Array): Buffer {
  const pad = sha1(sharedSecret, nonce);
  const out = Buffer.alloc(20);
  for (let i = 0; i < 20; i++) out[i] = value[i]! ^ pad[i]!;
  return out;
}
