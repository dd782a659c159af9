import { createCipheriv, createDecipheriv } from 'node:crypto';
import { Reader, Writer } from '../../wire/buffer.ts';
import { constantTimeEqual, digestSize, hmac } from '../../crypto/hash.ts';
import { kdfa } from '../../crypto/kdf.ts';
import { ALG } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import { sensitiveArea, type Sensitive } from '../types/public.ts';
import type { SymDef } from '../types/public-parms.ts';
import type { TpmObject } from './model.ts';
import { backendOf } from '../hardware-keys.ts';

/** The seed a storage parent wraps its children under: its own, or a chip-resident parent's from its outer blob. */
function seedOf(parent: TpmObject): Buffer {
  if (parent.hardware) return backendOf(parent.hardware).storageSeed(parent.hardware.outer, parent.public);
  return parent.sensitive!.seedValue;
}

/** The storage key's symmetric definition (its parameters' `symmetric`). */
function parentSym(parent: TpmObject): SymDef {
  const p = parent.public.parameters;
  if (p.type === ALG.RSA || p.type === ALG.ECC) return p.symmetric;
  if (p.type === ALG.SYMCIPHER) return p.sym;
  throw new TpmError(RC.TYPE);
}

function aesCfb(keyBits: number, key: Buffer, data: Buffer, direction: 'encrypt' | 'decrypt'): Buffer {
  const iv = Buffer.alloc(16);
  const c = direction === 'encrypt' ? createCipheriv(`aes-${keyBits}-cfb`, key, iv) : createDecipheriv(`aes-${keyBits}-cfb`, key, iv);
  return Buffer.concat([c.update(data), c.final()]);
}

/**
 * Wraps a child's sensitive area under its storage parent (Part 1, 22–23): AES-CFB with a key
 * from KDFa(seedValue, "STORAGE", child Name), then an outer HMAC over the ciphertext and Name
 * with a key from KDFa(seedValue, "INTEGRITY"). Returns the TPM2B_PRIVATE buffer.
 */
export function wrapSensitive(parent: TpmObject, childName: Buffer, sensitive: Sensitive): Buffer {
  const sym = parentSym(parent);
  const seed = seedOf(parent);
  const alg = parent.public.nameAlg;
  const w = new Writer(256);
  const at = w.reserveU16();
  sensitiveArea.encode(w, sensitive);
  w.patchU16(at, w.length - 2);
  const plain = w.finish();
  const symKey = kdfa(alg, seed, 'STORAGE', childName, Buffer.alloc(0), sym.keyBits);
  const enc = aesCfb(sym.keyBits, symKey, plain, 'encrypt');
  const hmacKey = kdfa(alg, seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), digestSize(alg) * 8);
  const integrity = hmac(alg, hmacKey, enc, childName);
  const out = Buffer.alloc(2 + integrity.length + enc.length);
  out.writeUInt16BE(integrity.length, 0);
  integrity.copy(out, 2);
  enc.copy(out, 2 + integrity.length);
  return out;
}

/** Checks and unwraps a TPM2B_PRIVATE buffer: TPM_RC_INTEGRITY if anything was changed. */
export function unwrapSensitive(parent: TpmObject, childName: Buffer, priv: Buffer): Sensitive {
  const sym = parentSym(parent);
  const seed = seedOf(parent);
  const alg = parent.public.nameAlg;
  if (priv.length < 2) throw new TpmError(RC.INSUFFICIENT);
  const n = priv.readUInt16BE(0);
  if (n !== digestSize(alg) || priv.length < 2 + n) throw new TpmError(RC.INTEGRITY);
  const integrity = priv.subarray(2, 2 + n);
  const enc = priv.subarray(2 + n);
  const hmacKey = kdfa(alg, seed, 'INTEGRITY', Buffer.alloc(0), Buffer.alloc(0), digestSize(alg) * 8);
  if (!constantTimeEqual(hmac(alg, hmacKey, enc, childName), integrity)) throw new TpmError(RC.INTEGRITY);
  const symKey = kdfa(alg, seed, 'STORAGE', childName, Buffer.alloc(0), sym.keyBits);
  const plain = aesCfb(sym.keyBits, symKey, enc, 'decrypt');
  const r = new Reader(plain);
  const size = r.u16();
  if (size !== r.remaining) throw new TpmError(RC.INTEGRITY);
  try {
    const s = sensitiveArea.decode(r);
    if (r.remaining !== 0) throw new TpmError(RC.INTEGRITY);
    return s;
  } catch {
    throw new TpmError(RC.INTEGRITY);
  }
}
