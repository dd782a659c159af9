import { HR } from '../constants.ts';
import type { Public } from '../types/public.ts';
import { RC, TpmError } from '../rc.ts';

/** Anything that occupies a transient object slot (keys, hash and HMAC sequences). */
export interface TransientObject {
  readonly kind: string;
  /** The authValue that authorizes USER role use of the object. */
  readonly auth: Buffer;
  /** The public area, for keys and sealed data objects (sequences have none). */
  readonly public?: Public;
  /** The policy that authorizes the object in a policy session (empty: none). */
  readonly authPolicy?: Buffer;
  /** Outside dictionary-attack protection: a wrong authValue is TPM_RC_BAD_AUTH and is not counted. */
  readonly noDA?: boolean;
  /** The object's Name (nameAlg || H(public)); objects without one are named by their handle. */
  readonly name?: Buffer;
}

/**
 * The transient object slots. A chip has a handful; when they are full, loading one more is
 * TPM_RC_OBJECT_MEMORY, and a resource manager must swap.
 */
export class ObjectSlots {
  private readonly slots: (TransientObject | undefined)[];

  constructor(readonly capacity: number) {
    this.slots = new Array(capacity).fill(undefined);
  }

  add(obj: TransientObject): number {
    const i = this.slots.indexOf(undefined);
    if (i < 0) throw new TpmError(RC.OBJECT_MEMORY);
    this.slots[i] = obj;
    return (HR.TRANSIENT | i) >>> 0;
  }

  get(handle: number): TransientObject | undefined {
    const i = handle - HR.TRANSIENT;
    return i >= 0 && i < this.capacity ? this.slots[i] : undefined;
  }

  remove(handle: number): void {
    const i = handle - HR.TRANSIENT;
    if (i >= 0 && i < this.capacity) this.slots[i] = undefined;
  }

  clear(): void {
    this.slots.fill(undefined);
  }

  handles(): number[] {
    const out: number[] = [];
    this.slots.forEach((o, i) => o && out.push((HR.TRANSIENT | i) >>> 0));
    return out;
  }

  get used(): number {
    return this.slots.filter((o) => o !== undefined).length;
  }
}
