import { HR, HT } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import type { SymDef } from '../types/public-parms.ts';

export const SESSION_TYPE = { HMAC: 0x00, POLICY: 0x01, TRIAL: 0x03 } as const;

/** A loaded authorization session (TPM 2.0 Part 1, 19.6). */
export interface Session {
  readonly handle: number;
  readonly type: number;
  readonly authHash: number;
  readonly sessionKey: Buffer;
  /** Parameter encryption for this session: TPM_ALG_NULL, AES (CFB) or XOR. */
  readonly symmetric: SymDef;
  /** The entity the session is bound to, or undefined; with the authValue it had at binding. */
  readonly bind?: { handle: number; name: Buffer; auth: Buffer };
  nonceTPM: Buffer;
  nonceCaller: Buffer;
  /** Policy sessions: the running policyDigest. */
  policyDigest: Buffer;
}

/**
 * The session slots. Like object slots, they are few on a chip (TPM_PT_HR_LOADED_MIN);
 * StartAuthSession beyond them is TPM_RC_SESSION_MEMORY.
 */
export class SessionSlots {
  private readonly slots: (Session | undefined)[];
  /** Handle numbers are never reused while the TPM runs, so a saved session keeps its handle. */
  private counter = 0;

  constructor(readonly capacity: number) {
    this.slots = new Array(capacity).fill(undefined);
  }

  /** Checks that a slot is free and returns a fresh handle for a session of this type. */
  nextHandle(type: number): number {
    if (this.slots.indexOf(undefined) < 0) throw new TpmError(RC.SESSION_MEMORY);
    this.counter = (this.counter + 1) & 0xffffff;
    return ((type === SESSION_TYPE.HMAC ? HR.HMAC_SESSION : HR.POLICY_SESSION) | this.counter) >>> 0;
  }

  add(session: Session): void {
    const i = this.slots.indexOf(undefined);
    if (i < 0) throw new TpmError(RC.SESSION_MEMORY);
    this.slots[i] = session;
  }

  /** Brings a saved session back into a slot (ContextLoad). */
  restore(session: Session): void {
    this.add(session);
  }

  get(handle: number): Session | undefined {
    const ht = handle >>> 24;
    if (ht !== HT.HMAC_SESSION && ht !== HT.POLICY_SESSION) return undefined;
    for (const s of this.slots) if (s && s.handle === handle) return s;
    return undefined;
  }

  remove(handle: number): boolean {
    const i = this.slots.findIndex((s) => s?.handle === handle);
    if (i < 0) return false;
    this.slots[i] = undefined;
    return true;
  }

  clear(): void {
    this.slots.fill(undefined);
  }

  handles(): number[] {
    return this.slots.filter((s): s is Session => s !== undefined).map((s) => s.handle);
  }

  get used(): number {
    return this.handles().length;
  }
}
