import { RC, Tpm12Error } from '../rc.ts';
import type { KeyObject12 } from './key-object.ts';

/** The TPM's key slots: a small, fixed number, as on a chip. Handles come from a counter. */
export class KeySlots {
  private readonly keys = new Map<number, KeyObject12>();
  private next = 1;

  constructor(readonly capacity: number) {}

  get free(): number {
    return this.capacity - this.keys.size;
  }

  get handles(): number[] {
    return [...this.keys.keys()];
  }

  add(k: KeyObject12): number {
    if (this.keys.size >= this.capacity) throw new Tpm12Error(RC.NOSPACE);
    let h: number;
    do {
      h = (0x01000000 | (this.next++ & 0xffffff)) >>> 0;
    } while (this.keys.has(h));
    this.keys.set(h, k);
    return h;
  }

  get(handle: number): KeyObject12 | undefined {
    return this.keys.get(handle);
  }

  delete(handle: number): boolean {
    return this.keys.delete(handle);
  }

  clear(): void {
    this.keys.clear();
  }
}
