/**
 * A session's whole state as bytes, for the context blob ContextSave hands out: the TPM keeps only
 * the handle and the sequence number of a saved session (as the reference implementation's
 * contextArray does), so a saved session outlives what the TPM holds in memory — a TPM Resume or
 * Restart, and a vTPM's host process restarting.
 */
import { Reader, Writer } from '../../wire/buffer.ts';
import type { PolicyState, Session } from './sessions.ts';

const FORMAT = 1;
const CP_HASH_KINDS = ['none', 'cpHash', 'nameHash', 'template'] as const;
const FLAG = { authValue: 1, password: 2, pp: 4, checkNvWritten: 8, nvWrittenState: 16 } as const;

/** The TPM's Time and which run of it (a new epoch each time Time restarts from zero). */
export interface TimeBase {
  readonly now: bigint;
  readonly epoch: number;
}

export function encodeSession(s: Session, time: TimeBase): Buffer {
  const w = new Writer(256);
  w.u8(FORMAT).u32(time.epoch).u32(s.handle).u8(s.type).u16(s.authHash);
  w.sized(s.sessionKey);
  w.u16(s.symmetric.algorithm).u16(s.symmetric.keyBits).u16(s.symmetric.mode);
  w.u8(s.bind ? 1 : 0);
  if (s.bind) {
    w.u32(s.bind.handle).sized(s.bind.name).sized(s.bind.auth);
  }
  w.sized(s.nonceTPM).sized(s.nonceCaller).sized(s.policyDigest);
  const p = s.policy;
  w.u8(p ? 1 : 0);
  if (p) {
    w.u32(p.commandCode).u8(p.commandLocality).sized(p.cpHash);
    w.u8(CP_HASH_KINDS.indexOf(p.cpHashKind));
    w.u8(p.pcrCounter === undefined ? 0 : 1).u32(p.pcrCounter ?? 0);
    w.u64(p.startTime).u64(p.timeout === EXPIRED ? EXPIRED_ENCODED : p.timeout);
    w.u8(
      (p.isAuthValueNeeded ? FLAG.authValue : 0) |
        (p.isPasswordNeeded ? FLAG.password : 0) |
        (p.isPPRequired ? FLAG.pp : 0) |
        (p.checkNvWritten ? FLAG.checkNvWritten : 0) |
        (p.nvWrittenState ? FLAG.nvWrittenState : 0),
    );
  }
  w.u8(s.audit ? 1 : 0);
  if (s.audit) w.sized(s.audit.digest);
  return w.copyOut();
}

/**
 * The session `encodeSession` wrote. A session saved in an earlier epoch of Time keeps its
 * policy's conditions, but a timeout it carries can no longer be measured against this Time, so
 * it has expired (as in the reference implementation); its start time becomes now. Throws on
 * bytes it did not write (the caller has already checked the blob's integrity).
 */
export function decodeSession(b: Buffer, time: TimeBase): Session {
  const r = new Reader(b);
  if (r.u8() !== FORMAT) throw new RangeError('unknown session context format');
  const sameEpoch = r.u32() === time.epoch;
  const handle = r.u32();
  const type = r.u8();
  const authHash = r.u16();
  const sessionKey = r.sizedCopy();
  const symmetric = { algorithm: r.u16(), keyBits: r.u16(), mode: r.u16() };
  const bind = r.u8() ? { handle: r.u32(), name: r.sizedCopy(), auth: r.sizedCopy() } : undefined;
  const nonceTPM = r.sizedCopy();
  const nonceCaller = r.sizedCopy();
  const policyDigest = r.sizedCopy();
  let policy: PolicyState | undefined;
  if (r.u8()) {
    const commandCode = r.u32();
    const commandLocality = r.u8();
    const cpHash = r.sizedCopy();
    const cpHashKind = CP_HASH_KINDS[r.u8()];
    if (!cpHashKind) throw new RangeError('unknown cpHash kind');
    const hasPcr = r.u8();
    const pcrCounter = r.u32();
    const savedStart = r.u64();
    const savedTimeout = r.u64();
    const startTime = sameEpoch ? savedStart : time.now;
    const timeout = savedTimeout === EXPIRED_ENCODED || (!sameEpoch && savedTimeout !== 0n) ? EXPIRED : savedTimeout;
    const f = r.u8();
    policy = {
      commandCode,
      commandLocality,
      cpHash,
      cpHashKind,
      pcrCounter: hasPcr ? pcrCounter : undefined,
      startTime,
      timeout,
      isAuthValueNeeded: (f & FLAG.authValue) !== 0,
      isPasswordNeeded: (f & FLAG.password) !== 0,
      isPPRequired: (f & FLAG.pp) !== 0,
      checkNvWritten: (f & FLAG.checkNvWritten) !== 0,
      nvWrittenState: (f & FLAG.nvWrittenState) !== 0,
    };
  }
  const audit = r.u8() ? { digest: r.sizedCopy() } : undefined;
  if (r.remaining !== 0) throw new RangeError('trailing bytes after the session');
  return { handle, type, authHash, sessionKey, symmetric, ...(bind ? { bind } : {}), nonceTPM, nonceCaller, policyDigest, ...(policy ? { policy } : {}), ...(audit ? { audit } : {}) };
}

/** A timeout before any Time (authorize.ts refuses a session whose timeout is below Time). */
export const EXPIRED = -1n;
const EXPIRED_ENCODED = 0xffff_ffff_ffff_ffffn;
