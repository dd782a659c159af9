/**
 * Command audit and session audit (TPM 2.0 Part 1, "Command Audit" and "Session Audit"; Part 3,
 * 18.5, 18.6 and 21.2; the reference implementation's CommandAudit.c and, in SessionProcess.c,
 * CommandAudit and UpdateAuditSessionStatus).
 *
 * Command audit: the TPM keeps a list of audited command codes, an audit hash algorithm and a
 * counter in NV, and an audit digest that survives TPM Restart and TPM Resume but is cleared by
 * TPM Reset. After every successful audited command,
 *
 *     auditDigest := H_auditAlg(auditDigest || cpHash || rpHash)
 *
 * with cpHash = H_auditAlg(commandCode || names || parameters) over the parameters as the
 * command carried them and rpHash = H_auditAlg(TPM_RC_SUCCESS || commandCode || parameters)
 * over the response parameters as sent. The first extension after the digest was cleared
 * starts from zeros and increments the counter. TPM2_SetCommandCodeAuditStatus is always
 * audited; TPM2_Shutdown never is. Changing the algorithm clears the digest, and that command
 * itself is not recorded.
 *
 * The dispatcher drives it through two calls (see `beginCommandAudit` / `endCommandAudit`).
 *
 * Session audit: a session used with TPMA_SESSION.audit keeps its own digest, extended with
 * H_sessionAlg(cpHash) and H_sessionAlg(rpHash) of each command it audits; the session code
 * drives it through `updateSessionAudit`.
 */
import { digest, digestSize, startHash } from '../crypto/hash.ts';
import { ALG, CC, SESSION_ATTR } from './constants.ts';
import type { Tpm2Engine } from './engine.ts';
import type { Session, SessionAudit } from './auth/sessions.ts';
import { RC, TpmError } from './rc.ts';
import { u32be } from '../wire/buffer.ts';

/** CONTEXT_INTEGRITY_HASH_ALG: the audit algorithm of a new TPM. */
export const DEFAULT_AUDIT_ALG = ALG.SHA256;

/**
 * One TPM's command-audit state. `hashAlg`, `counter` and `commands` belong in NV; `digest`
 * belongs with the state TPM2_Shutdown(STATE) saves. An empty digest means none is running.
 */
export class CommandAuditLog {
  hashAlg: number = DEFAULT_AUDIT_ALG;
  counter = 0n;
  readonly commands = new Set<number>([CC.SetCommandCodeAuditStatus]);
  digest: Buffer = EMPTY;
  /** The algorithm changed in this command: the digest is cleared and this command is not recorded. */
  algorithmChanged = false;
  /** The resetCount the digest belongs to: a TPM Reset clears it. */
  private epoch = -1;

  /** The running digest, cleared if a TPM Reset happened since it was extended. */
  current(resetCount: number): Buffer {
    if (this.epoch !== resetCount) {
      this.digest = EMPTY;
      this.epoch = resetCount;
    }
    return this.digest;
  }

  clearDigest(resetCount: number): void {
    this.digest = EMPTY;
    this.epoch = resetCount;
  }

  /** What TPM2_Shutdown(STATE) saves with the rest of the TPM Restart state. */
  savedDigest(): { digest: string; resetCount: number } {
    return { digest: this.digest.toString('hex'), resetCount: this.epoch };
  }

  /** TPM Restart / TPM Resume: the digest comes back (and is dropped by `current` after a TPM Reset). */
  restoreDigest(saved: { digest: string; resetCount: number }): void {
    this.digest = Buffer.from(saved.digest, 'hex');
    this.epoch = saved.resetCount;
  }

  /** The NV part, for the engine's NV state (format version 1). */
  toJSON(): { v: 1; hashAlg: number; counter: string; commands: number[] } {
    return { v: 1, hashAlg: this.hashAlg, counter: this.counter.toString(), commands: [...this.commands].sort((a, b) => a - b) };
  }

  static fromJSON(j: unknown): CommandAuditLog {
    const log = new CommandAuditLog();
    const o = j as { v?: unknown; hashAlg?: unknown; counter?: unknown; commands?: unknown };
    if (!o || o.v !== 1 || typeof o.hashAlg !== 'number' || digestSize(o.hashAlg) === 0) throw new Error('damaged command audit state');
    if (typeof o.counter !== 'string' || !/^\d{1,20}$/.test(o.counter) || !Array.isArray(o.commands)) throw new Error('damaged command audit state');
    log.hashAlg = o.hashAlg;
    log.counter = BigInt(o.counter);
    for (const cc of o.commands) {
      if (typeof cc !== 'number' || !Number.isInteger(cc)) throw new Error('damaged command audit state');
      log.commands.add(cc);
    }
    return log;
  }
}

const EMPTY = Buffer.alloc(0);

/** The engine's command-audit log (kept with its NV state). */
export function auditLog(tpm: Tpm2Engine): CommandAuditLog {
  return tpm.audit;
}

/** The audited command codes in ascending order (GetCapability(TPM_CAP_AUDIT_COMMANDS)). */
export function auditedCommands(tpm: Tpm2Engine): number[] {
  return [...auditLog(tpm).commands].sort((a, b) => a - b);
}

/** TPM_PT_AUDIT_COUNTER_0 / _1: the high and low 32 bits of the audit counter. */
export function auditCounterProperties(tpm: Tpm2Engine): [number, number] {
  const c = auditLog(tpm).counter;
  return [Number(c >> 32n) >>> 0, Number(c & 0xffffffffn) >>> 0];
}

/**
 * CommandAuditGetDigest: H_auditAlg of the audited command codes, each as a big-endian u32, in
 * ascending order.
 */
export function commandListDigest(tpm: Tpm2Engine): Buffer {
  const log = auditLog(tpm);
  const codes = auditedCommands(tpm);
  const b = Buffer.allocUnsafe(4 * codes.length);
  codes.forEach((cc, i) => b.writeUInt32BE(cc >>> 0, 4 * i));
  return digest(log.hashAlg, b);
}

/**
 * TPM2_SetCommandCodeAuditStatus: sets or clears commands (unimplemented ones are ignored;
 * Shutdown cannot be audited, SetCommandCodeAuditStatus cannot stop being), or changes the
 * algorithm — not both in one command (TPM_RC_VALUE, parameter 1). Returns whether NV changed.
 */
export function setAuditStatus(tpm: Tpm2Engine, auditAlg: number, setList: readonly number[], clearList: readonly number[]): boolean {
  const log = auditLog(tpm);
  if (auditAlg !== ALG.NULL && auditAlg !== log.hashAlg) {
    if (setList.length !== 0 || clearList.length !== 0) throw TpmError.parameter(RC.VALUE, 1);
    log.hashAlg = auditAlg;
    log.clearDigest(tpm.nv.resetCount);
    log.algorithmChanged = true;
    return true;
  }
  let changed = false;
  for (const cc of setList) {
    if (!tpm.commands.has(cc) || cc === CC.Shutdown || log.commands.has(cc)) continue;
    log.commands.add(cc);
    changed = true;
  }
  for (const cc of clearList) {
    if (!tpm.commands.has(cc) || cc === CC.SetCommandCodeAuditStatus || !log.commands.has(cc)) continue;
    log.commands.delete(cc);
    changed = true;
  }
  return changed;
}

/** cpHash = H_alg(commandCode || name of each handle || parameters as received). */
export function cpHashOf(tpm: Tpm2Engine, alg: number, cc: number, handles: readonly number[], cpBuffer: Uint8Array): Buffer {
  const h = startHash(alg);
  h.update(u32be(cc));
  for (const handle of handles) h.update(tpm.nameOf(handle));
  h.update(cpBuffer);
  return h.digest();
}

/** rpHash = H_alg(TPM_RC_SUCCESS || commandCode || response parameters as sent). */
export function rpHashOf(alg: number, cc: number, rpBuffer: Uint8Array): Buffer {
  const h = startHash(alg);
  h.update(u32be(RC.SUCCESS));
  h.update(u32be(cc));
  h.update(rpBuffer);
  return h.digest();
}

/** A command being audited: its cpHash, taken before the handler can change any Name. */
export interface PendingAudit {
  readonly cc: number;
  readonly cpHash: Buffer;
}

/**
 * Dispatcher hook, part 1: after the authorizations are checked and before the handler runs.
 * Returns undefined (at the cost of one set lookup) when the command is not audited.
 */
export function beginCommandAudit(tpm: Tpm2Engine, cc: number, handles: readonly number[], cpBuffer: Uint8Array): PendingAudit | undefined {
  const log = auditLog(tpm);
  if (!log.commands.has(cc)) return undefined;
  return { cc, cpHash: cpHashOf(tpm, log.hashAlg, cc, handles, cpBuffer) };
}

/**
 * Dispatcher hook, part 2: after a successful command's response parameters are final
 * (encrypted, if a session asked), with those bytes. Marks NV dirty when the counter moves.
 */
export function endCommandAudit(tpm: Tpm2Engine, pending: PendingAudit | undefined, rpBuffer: Uint8Array): void {
  const log = auditLog(tpm);
  if (log.algorithmChanged) {
    log.algorithmChanged = false;
    return;
  }
  if (!pending) return;
  recordCommandAudit(tpm, pending.cpHash, rpHashOf(log.hashAlg, pending.cc, rpBuffer));
}

/** auditDigest := H(auditDigest || cpHash || rpHash), starting from zeros (and counting) if cleared. */
export function recordCommandAudit(tpm: Tpm2Engine, cpHash: Buffer, rpHash: Buffer): void {
  const log = auditLog(tpm);
  let d = log.current(tpm.nv.resetCount);
  if (d.length === 0) {
    d = Buffer.alloc(digestSize(log.hashAlg));
    log.counter = BigInt.asUintN(64, log.counter + 1n);
    tpm.markNvDirty();
  }
  log.digest = digest(log.hashAlg, d, cpHash, rpHash);
}

// ---------------------------------------------------------------------------------------------
// Session audit

/** Per engine: the handle of the exclusive audit session, if any (g_exclusiveAuditSession). */
const exclusive = new WeakMap<Tpm2Engine, number>();

/** The audit state of a session, undefined if it has never been used for audit. */
export function sessionAuditOf(session: Session): SessionAudit | undefined {
  return session.audit;
}

/** A command ran without the exclusive audit session auditing it: the session is exclusive no more. */
export function endExclusiveAudit(tpm: Tpm2Engine): void {
  exclusive.delete(tpm);
}

/** Whether `handle` is the exclusive audit session. */
export function isExclusiveAuditSession(tpm: Tpm2Engine, handle: number): boolean {
  return exclusive.get(tpm) === handle;
}

/**
 * Checks a session's audit attributes before the command runs (for the session code, with the
 * session's position `n`): auditExclusive needs the session to be the exclusive audit session
 * (TPM_RC_EXCLUSIVE); auditExclusive and auditReset need audit (TPM_RC_ATTRIBUTES + session n).
 */
export function checkSessionAudit(tpm: Tpm2Engine, session: Session, attributes: number, n: number): void {
  const audit = (attributes & SESSION_ATTR.audit) !== 0;
  if (!audit && attributes & (SESSION_ATTR.auditExclusive | SESSION_ATTR.auditReset)) throw TpmError.session(RC.ATTRIBUTES, n);
  if (attributes & SESSION_ATTR.auditExclusive && exclusive.get(tpm) !== session.handle) throw new TpmError(RC.EXCLUSIVE);
}

/**
 * UpdateAuditSessionStatus, after a successful command: for the (at most one) session with the
 * audit attribute, starts its digest if it is new or auditReset is set (it becomes the exclusive
 * audit session), extends it with H(cpHash || rpHash) in the session's hash, and returns the
 * auditExclusive bit the response must carry for it. `cpHash` is the command's cpHash in the
 * session's hash (taken before the handler ran, as for the session HMAC). When no session audits
 * a command that allows sessions, call with `audited` undefined: the exclusive audit session
 * loses its exclusivity.
 */
export function updateSessionAudit(
  tpm: Tpm2Engine,
  audited: { session: Session; attributes: number } | undefined,
  cc: number,
  cpHash: Buffer,
  rpBuffer: Uint8Array,
): number {
  if (!audited) {
    exclusive.delete(tpm);
    return 0;
  }
  const { session, attributes } = audited;
  let state = session.audit;
  if (!state || attributes & SESSION_ATTR.auditReset) {
    state = session.audit = { digest: Buffer.alloc(digestSize(session.authHash)) };
    exclusive.set(tpm, session.handle);
  } else if (exclusive.get(tpm) !== session.handle) {
    exclusive.delete(tpm);
  }
  const alg = session.authHash;
  state.digest = digest(alg, state.digest, cpHash, rpHashOf(alg, cc, rpBuffer));
  return exclusive.get(tpm) === session.handle ? SESSION_ATTR.auditExclusive : 0;
}
