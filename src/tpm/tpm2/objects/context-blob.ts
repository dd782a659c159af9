import { createCipheriv, createDecipheriv } from 'node:crypto';
import { constantTimeEqual, hmac } from '../../crypto/hash.ts';
import { kdfa } from '../../crypto/kdf.ts';
import { ALG } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';

const HASH = ALG.SHA256;
const KEY_BITS = 256;

function header(sequence: bigint, savedHandle: number, hierarchy: number, epoch: number): Buffer {
  const b = Buffer.alloc(8 + 4 + 4 + 4);
  b.writeBigUInt64BE(sequence, 0);
  b.writeUInt32BE(savedHandle >>> 0, 8);
  b.writeUInt32BE(hierarchy >>> 0, 12);
  b.writeUInt32BE(epoch >>> 0, 16);
  return b;
}

function keys(proof: Buffer, hdr: Buffer): { key: Buffer; iv: Buffer } {
  const m = kdfa(HASH, proof, 'CONTEXT', hdr, Buffer.alloc(0), KEY_BITS + 128);
  return { key: m.subarray(0, KEY_BITS / 8), iv: m.subarray(KEY_BITS / 8) };
}

/**
 * Seals a saved context: AES-256-CFB under a key derived from the hierarchy proof and the
 * context's sequence number, handle and epoch, then an HMAC over all of it. A blob from another
 * TPM, another hierarchy proof, another epoch (sessions: TPM Reset) or with any bit changed fails.
 */
export function sealContext(proof: Buffer, sequence: bigint, savedHandle: number, hierarchy: number, epoch: number, plain: Buffer): Buffer {
  const hdr = header(sequence, savedHandle, hierarchy, epoch);
  const { key, iv } = keys(proof, hdr);
  const c = createCipheriv('aes-256-cfb', key, iv);
  const enc = Buffer.concat([c.update(plain), c.final()]);
  const mac = hmac(HASH, proof, hdr, enc);
  return Buffer.concat([Buffer.from([0, mac.length]), mac, enc]);
}

export function openContext(proof: Buffer, sequence: bigint, savedHandle: number, hierarchy: number, epoch: number, blob: Buffer): Buffer {
  if (blob.length < 2) throw new TpmError(RC.SIZE);
  const n = blob.readUInt16BE(0);
  if (n !== 32 || blob.length < 2 + n) throw new TpmError(RC.INTEGRITY);
  const mac = blob.subarray(2, 2 + n);
  const enc = blob.subarray(2 + n);
  const hdr = header(sequence, savedHandle, hierarchy, epoch);
  if (!constantTimeEqual(hmac(HASH, proof, hdr, enc), mac)) throw new TpmError(RC.INTEGRITY);
  const { key, iv } = keys(proof, hdr);
  const d = createDecipheriv('aes-256-cfb', key, iv);
  return Buffer.concat([d.update(enc), d.final()]);
}
