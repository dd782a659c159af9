/** Big-endian bytes ↔ bigint, and modular arithmetic the key code needs. */
export function toBigInt(b: Uint8Array): bigint {
  return b.length === 0 ? 0n : BigInt('0x' + Buffer.from(b).toString('hex'));
}

export function toBytes(v: bigint, length: number): Buffer {
  const hex = v.toString(16).padStart(length * 2, '0');
  if (hex.length > length * 2) throw new RangeError('value does not fit');
  return Buffer.from(hex, 'hex');
}

export function modInverse(a: bigint, m: bigint): bigint {
  let [oldR, r] = [((a % m) + m) % m, m];
  let [oldS, s] = [1n, 0n];
  while (r !== 0n) {
    const q = oldR / r;
    [oldR, r] = [r, oldR - q * r];
    [oldS, s] = [s, oldS - q * s];
  }
  if (oldR !== 1n) throw new RangeError('not invertible');
  return ((oldS % m) + m) % m;
}

export function base64url(v: bigint | Uint8Array, length?: number): string {
  const bytes = typeof v === 'bigint' ? toBytes(v, length ?? Math.ceil(v.toString(16).length / 2)) : Buffer.from(v);
  return bytes.toString('base64url');
}
