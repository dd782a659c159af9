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

  constructor(readonly capacity: number) {
    this.slots = new Array(capacity).fill(undefined);
  }

  /** Reserves a slot and returns the handle a session of this type would get there. */
  nextHandle(type: number): number {
    const i = this.slots.indexOf(undefined);
    if (i < 0) throw new TpmError(RC.SESSION_MEMORY);
    return ((type === SESSION_TYPE.HMAC ? HR.HMAC_SESSION : HR.POLICY_SESSION) | i) >>> 0;
  }

  add(session: Session): void {
    this.slots[session.handle & 0xffffff] = session;
  }

  get(handle: number): Session | undefined {
    const ht = handle >>> 24;
    if (ht !== HT.HMAC_SESSION && ht !== HT.POLICY_SESSION) return undefined;
    const s = this.slots[handle & 0xffffff];
    return s && s.handle === handle ? s : undefined;
  }

  remove(handle: number): boolean {
    const s = this.get(handle);
    if (!s) return false;
    this.slots[handle & 0xffffff] = undefined;
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
