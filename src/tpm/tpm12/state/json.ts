import { Tpm12StateError } from '../rc.ts';

/** JSON with Buffers as {"hex": "..."}: the stored form of TPM 1.2 NV. */
export function toJson(v: unknown): string {
  return JSON.stringify(v, function (this: Record<string, unknown>, k: string, value: unknown) {
    const raw = this[k];
    if (Buffer.isBuffer(raw)) return { hex: raw.toString('hex') };
    return value;
  });
}

export function fromJson(text: string): unknown {
  return JSON.parse(text, (_k, value: unknown) => {
    if (value && typeof value === 'object' && !Array.isArray(value)) {
      const keys = Object.keys(value);
      const hex = (value as { hex?: unknown }).hex;
      if (keys.length === 1 && typeof hex === 'string') {
        if (!/^([0-9a-f]{2})*$/.test(hex)) throw new Tpm12StateError('TPM 1.2 state holds a malformed byte string');
        return Buffer.from(hex, 'hex');
      }
    }
    return value;
  });
}

/** A shape a stored value must have; checked field by field so a corrupted file is named precisely. */
export type Shape = 'buffer' | 'int' | 'bool' | { buffer: number } | { array: Shape } | { nullable: Shape } | { [field: string]: Shape };

export function check(v: unknown, shape: Shape, path: string): void {
  const bad = (what: string) => {
    throw new Tpm12StateError(`TPM 1.2 state is corrupted: ${path} ${what}`);
  };
  if (shape === 'buffer') {
    if (!Buffer.isBuffer(v)) bad('is not a byte string');
    return;
  }
  if (shape === 'int') {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) bad('is not a 32-bit unsigned integer');
    return;
  }
  if (shape === 'bool') {
    if (typeof v !== 'boolean') bad('is not a boolean');
    return;
  }
  if ('buffer' in shape && typeof shape.buffer === 'number') {
    if (!Buffer.isBuffer(v) || v.length !== shape.buffer) bad(`is not ${shape.buffer} bytes`);
    return;
  }
  if ('array' in shape && typeof shape.array !== 'number') {
    if (!Array.isArray(v)) bad('is not a list');
    (v as unknown[]).forEach((x, i) => check(x, shape.array as Shape, `${path}[${i}]`));
    return;
  }
  if ('nullable' in shape) {
    if (v !== null) check(v, shape.nullable as Shape, path);
    return;
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) bad('is not an object');
  for (const [k, s] of Object.entries(shape)) check((v as Record<string, unknown>)[k], s as Shape, `${path}.${k}`);
}
