import { bytesField, countField, damaged, hex, objectField } from './json.ts';

/**
 * One NV index: its public area (TPMS_NV_PUBLIC fields, with the TPMA_NV state bits such as
 * WRITTEN and WRITELOCKED kept in `attributes` as the specification does), authValue and data.
 * `data` is always `dataSize` bytes; bytes never written read as zero.
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

/** How many NV indices one TPM holds (TPM_RC_NV_SPACE beyond). */
export const MAX_NV_INDICES = 64;
/** Total bytes of index data one TPM holds (TPM_RC_NV_SPACE beyond). */
export const NV_INDEX_SPACE = 64 * 1024;

/** TPM_NT_COUNTER in bits 7:4 of TPMA_NV. */
const isCounter = (attributes: number) => ((attributes >>> 4) & 0xf) === 0x1;

/** The JSON key of the max-counter value, beside the handle-keyed indices. */
const MAX_COUNTER_KEY = 'maxCounter';

/** The NV indices of one TPM, kept in its NV state. */
export class NvIndexTable {
  private readonly indices = new Map<number, NvIndex>();
  /**
   * The largest value any deleted counter index held: a counter first incremented starts above
   * it, so deleting and redefining a counter can never roll it back.
   */
  maxCounter = 0n;

  get(handle: number): NvIndex | undefined {
    return this.indices.get(handle);
  }

  set(index: NvIndex): void {
    this.indices.set(index.handle, index);
  }

  /** Deletes an index; a counter's value is remembered in maxCounter. */
  remove(handle: number): boolean {
    const ix = this.indices.get(handle);
    if (!ix) return false;
    if (isCounter(ix.attributes) && ix.data.length === 8) {
      const v = ix.data.readBigUInt64BE(0);
      if (v > this.maxCounter) this.maxCounter = v;
    }
    return this.indices.delete(handle);
  }

  handles(): number[] {
    return [...this.indices.keys()].sort((a, b) => a - b);
  }

  values(): IterableIterator<NvIndex> {
    return this.indices.values();
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

  /** How many counter indices are defined (TPM_PT_NV_COUNTERS). */
  get counters(): number {
    let n = 0;
    for (const ix of this.indices.values()) if (isCounter(ix.attributes)) n++;
    return n;
  }

  /** Whether one more index of `dataSize` bytes fits. */
  hasSpaceFor(dataSize: number): boolean {
    return this.indices.size < MAX_NV_INDICES && this.bytesUsed + dataSize <= NV_INDEX_SPACE;
  }

  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = Object.fromEntries(
      [...this.indices.values()].map((ix) => [
        ix.handle.toString(16),
        { nameAlg: ix.nameAlg, attributes: ix.attributes >>> 0, authPolicy: hex(ix.authPolicy), dataSize: ix.dataSize, auth: hex(ix.auth), data: hex(ix.data) },
      ]),
    );
    if (this.maxCounter !== 0n) out[MAX_COUNTER_KEY] = this.maxCounter.toString();
    return out;
  }

  static fromJSON(v: unknown): NvIndexTable {
    const t = new NvIndexTable();
    for (const [k, raw] of Object.entries(objectField(v ?? {}, 'nvIndices'))) {
      if (k === MAX_COUNTER_KEY) {
        if (typeof raw !== 'string' || !/^\d{1,20}$/.test(raw) || BigInt(raw) >= 1n << 64n) throw damaged('NV max counter');
        t.maxCounter = BigInt(raw);
        continue;
      }
      if (!/^1[0-9a-f]{6}$/.test(k)) throw damaged('NV index handle');
      const j = objectField(raw, 'NV index');
      const ix: NvIndex = {
        handle: parseInt(k, 16),
        nameAlg: countField(j.nameAlg, 'NV index'),
        attributes: countField(j.attributes, 'NV index'),
        authPolicy: bytesField(j.authPolicy, 'NV index'),
        dataSize: countField(j.dataSize, 'NV index'),
        auth: bytesField(j.auth, 'NV index'),
        data: bytesField(j.data, 'NV index'),
      };
      if (ix.data.length !== ix.dataSize) throw damaged('NV index data size');
      t.set(ix);
    }
    return t;
  }
}
