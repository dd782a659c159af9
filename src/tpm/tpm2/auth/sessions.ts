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
  /** Policy sessions: what the policy commands so far have asserted (made on first use). */
  policy?: PolicyState;
  /** Once the session has audited a command (audit.ts). */
  audit?: SessionAudit;
}

/** The audit state of one session (the reference's isAudit and u2.auditDigest). */
export interface SessionAudit {
  digest: Buffer;
}

/**
 * The conditions a policy session has accumulated besides its digest (Part 1, 19.7; the
 * reference implementation's SESSION fields). They are checked when the session authorizes.
 */
export interface PolicyState {
  /** TPM_CC the session may authorize (PolicyCommandCode, PolicyDuplicationSelect); 0: any. */
  commandCode: number;
  /** TPMA_LOCALITY the command must come from (PolicyLocality); 0: any. */
  commandLocality: number;
  /** cpHash, nameHash or templateHash (they share one slot, as in the specification); empty: none. */
  cpHash: Buffer;
  cpHashKind: 'none' | 'cpHash' | 'nameHash' | 'template';
  /** pcrUpdateCounter when PolicyPCR was satisfied; undefined: no PolicyPCR. */
  pcrCounter: number | undefined;
  /** TPM Time (ms) when the session started or last rolled its nonce in an authorization. */
  startTime: bigint;
  /** TPM Time (ms) after which the policy no longer authorizes (PolicySigned/Secret/Ticket); 0n: none. */
  timeout: bigint;
  /** PolicyAuthValue: the HMAC key includes the entity's authValue. */
  isAuthValueNeeded: boolean;
  /** PolicyPassword: the HMAC field carries the authValue in the clear. */
  isPasswordNeeded: boolean;
  /** PolicyPhysicalPresence. */
  isPPRequired: boolean;
  /** PolicyNvWritten: the authorized NV index must have TPMA_NV_WRITTEN equal to nvWrittenState. */
  checkNvWritten: boolean;
  nvWrittenState: boolean;
}

export function newPolicyState(startTime: bigint): PolicyState {
  return {
    commandCode: 0,
    commandLocality: 0,
    cpHash: EMPTY,
    cpHashKind: 'none',
    pcrCounter: undefined,
    startTime,
    timeout: 0n,
    isAuthValueNeeded: false,
    isPasswordNeeded: false,
    isPPRequired: false,
    checkNvWritten: false,
    nvWrittenState: false,
  };
}

/** The policy state of a policy session, made on first use with the given start time. */
export function policyState(s: Session, now: bigint): PolicyState {
  return (s.policy ??= newPolicyState(now));
}

/**
 * PolicyRestart, and what every authorization with continueSession does to a policy session:
 * the digest returns to zeros and every condition is dropped; the nonces and start time stay.
 */
export function resetPolicy(s: Session): void {
  s.policyDigest.fill(0);
  if (s.policy) s.policy = newPolicyState(s.policy.startTime);
}

const EMPTY = Buffer.alloc(0);

/**
 * Sessions a TPM tracks at once, loaded or saved (TPM_PT_ACTIVE_SESSIONS_MAX): a saved session
 * keeps its handle reserved, so starting one beyond this is TPM_RC_SESSION_HANDLES until one is
 * flushed.
 */
export const MAX_ACTIVE_SESSIONS = 64;

export function activeSessions(tpm: { sessions: SessionSlots; savedSessions: ReadonlyMap<number, unknown> }): number {
  return tpm.sessions.used + tpm.savedSessions.size;
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

  /** The number the last session handle was made from; a TPM that comes back continues after it. */
  get lastNumber(): number {
    return this.counter;
  }

  /** Continues handle numbering after `n` (a restored TPM's saved sessions keep theirs). */
  continueAfter(n: number): void {
    if (n > this.counter) this.counter = n & 0xffffff;
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
