/**
 * Validated reading of the engine's JSON state: every field is checked, and anything that is
 * not what was written is a StateFileError naming the field, never a TypeError deep inside.
 */
export class NvStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NvStateError';
  }
}

export function damaged(what: string): NvStateError {
  return new NvStateError(`the TPM state file is damaged (${what}); restore it from a backup or move it away to start a fresh TPM`);
}

export const hex = (b: Buffer): string => b.toString('hex');

export function bytesField(v: unknown, what: string): Buffer {
  if (typeof v !== 'string' || !/^([0-9a-f]{2})*$/.test(v)) throw damaged(what);
  return Buffer.from(v, 'hex');
}

export function countField(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) throw damaged(what);
  return v;
}

export function boolField(v: unknown, what: string): boolean {
  if (typeof v !== 'boolean') throw damaged(what);
  return v;
}

export function objectField(v: unknown, what: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw damaged(what);
  return v as Record<string, unknown>;
}
