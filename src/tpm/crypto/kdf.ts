import { digest, hmac } from './hash.ts';

/**
 * KDFa (TPM 2.0 Part 1, SP 800-108 counter mode with HMAC): `bits` of key material bound to a
 * label (used with its terminating zero) and two context values.
 */
export function kdfa(hashAlg: number, key: Uint8Array, label: string, contextU: Uint8Array, contextV: Uint8Array, bits: number): Buffer {
  const bytes = Math.ceil(bits / 8);
  const labelBytes = Buffer.concat([Buffer.from(label, 'latin1'), Buffer.from([0])]);
  const bitsBuf = Buffer.alloc(4);
  bitsBuf.writeUInt32BE(bits);
  const out: Buffer[] = [];
  let have = 0;
  for (let i = 1; have < bytes; i++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(i);
    const block = hmac(hashAlg, key, counter, labelBytes, contextU, contextV, bitsBuf);
    out.push(block);
    have += block.length;
  }
  const result = Buffer.concat(out).subarray(0, bytes);
  // A bit count that is not a whole number of bytes keeps only the low bits of the first byte.
  if (bits % 8) result[0]! &= (1 << (bits % 8)) - 1;
  return result;
}

/**
 * KDFe (TPM 2.0 Part 1, 11.4.10.3; SP 800-56A concatenation KDF): `bits` of key material from a
 * shared value Z, bound to a label (used with its terminating zero) and the two parties' infos,
 * hashing counter || Z || label || partyUInfo || partyVInfo for counter = 1, 2, ….
 */
export function kdfe(hashAlg: number, z: Uint8Array, label: string, partyUInfo: Uint8Array, partyVInfo: Uint8Array, bits: number): Buffer {
  const bytes = Math.ceil(bits / 8);
  const labelBytes = Buffer.concat([Buffer.from(label, 'latin1'), Buffer.from([0])]);
  const out: Buffer[] = [];
  let have = 0;
  for (let i = 1; have < bytes; i++) {
    const counter = Buffer.alloc(4);
    counter.writeUInt32BE(i);
    const block = digest(hashAlg, counter, z, labelBytes, partyUInfo, partyVInfo);
    out.push(block);
    have += block.length;
  }
  const result = Buffer.concat(out).subarray(0, bytes);
  if (bits % 8) result[0]! &= (1 << (bits % 8)) - 1;
  return result;
}
