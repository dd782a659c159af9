import { bytesField, countField, damaged, hex, objectField } from './json.ts';

/**
 * One NV index: its public area (TPMS_NV_PUBLIC fields, with the TPMA_NV state bits such as
 * WRITTEN and WRITELOCKED kept in `attributes` as the specification does), authValue and data.
 */
export interface NvIndex {
  handle: number;
  nameAlg: number;
  attributes: number;
  authPolicy: Buffer;
  dataSize: number;
  auth: Buffer;
  data: Buffer;
}

/** The NV indices of one TPM, kept in its NV state. */
export class NvIndexTable {
  private readonly indices = new Map<number, NvIndex>();

  get(handle: number): NvIndex | undefined {
    return this.indices.get(handle);
  }

  set(index: NvIndex): void {
    this.indices.set(index.handle, index);
  }

  remove(handle: number): boolean {
    return this.indices.delete(handle);
  }

  handles(): number[] {
    return [...this.indices.keys()].sort((a, b) => a - b);
  }

  get size(): number {
    return this.indices.size;
  }

  /** Total bytes of index data, for the NV space limit. */
  get bytesUsed(): number {
    let n = 0;
    for (const ix of this.indices.values()) n += ix.dataSize;
    return n;
  }

  toJSON(): Record<string, unknown> {
    return Object.fromEntries(
      [...this.indices.values()].map((ix) => [
        ix.handle.toString(16),
        { nameAlg: ix.nameAlg, attributes: ix.attributes, authPolicy: hex(ix.authPolicy), dataSize: ix.dataSize, auth: hex(ix.auth), data: hex(ix.data) },
      ]),
    );
  }

  static fromJSON(v: unknown): NvIndexTable {
    const t = new NvIndexTable();
    for (const [k, raw] of Object.entries(objectField(v ?? {}, 'nvIndices'))) {
      if (!/^1[0-9a-f]{6}$/.test(k)) throw damaged('NV index handle');
      const j = objectField(raw, 'NV index');
      t.set({
        handle: parseInt(k, 16),
        nameAlg: countField(j.nameAlg, 'NV index'),
        attributes: countField(j.attributes, 'NV index'),
        authPolicy: bytesField(j.authPolicy, 'NV index'),
        dataSize: countField(j.dataSize, 'NV index'),
        auth: bytesField(j.auth, 'NV index'),
        data: bytesField(j.data, 'NV index'),
      });
    }
    return t;
  }
}
