import { constantTimeEqual, digest, digestSize, hmac } from '../../crypto/hash.ts';
import { trimAuth } from './auth-value.ts';
import { ALG, RH, SESSION_ATTR } from '../constants.ts';
import { RC, TpmError, atSession } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { cryptParameter } from './param-crypt.ts';
import { PASSWORD_RESPONSE, type AuthCommand, type AuthResponse } from './session-area.ts';
import { SESSION_TYPE, type Session } from './sessions.ts';

/** One session of a command, resolved: the loaded session (none for a password) and its role. */
interface Slot {
  readonly cmd: AuthCommand;
  readonly session?: Session;
  /** The handle this session authorizes, if it is an authorization session. */
  readonly authHandle?: number;
}

/** The sessions of one command, checked for structure before any parameter is decoded. */
export interface SessionPlan {
  readonly slots: Slot[];
  readonly decrypt?: number;
  readonly encrypt?: number;
}

const u32 = (v: number) => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(v >>> 0);
  return b;
};

/**
 * Resolves each session handle, pairs authorization sessions with the handles they authorize,
 * and finds the (at most one) decrypt and encrypt session.
 */
export function planSessions(
  tpm: Tpm2Engine,
  sessions: AuthCommand[],
  authHandles: readonly number[],
  handles: readonly number[],
  firstParamSized: boolean,
  firstResponseSized: boolean,
): SessionPlan {
  const slots: Slot[] = [];
  let decrypt: number | undefined;
  let encrypt: number | undefined;
  for (let i = 0; i < sessions.length; i++) {
    const cmd = sessions[i]!;
    const n = i + 1;
    const authIndex = authHandles[i];
    const authHandle = authIndex === undefined ? undefined : handles[authIndex];
    if (cmd.handle === RH.RS_PW) {
      if (authHandle === undefined) throw new TpmError(atSession(RC.HANDLE, n));
      if (cmd.nonce.length !== 0) throw new TpmError(atSession(RC.NONCE, n));
      if (cmd.attributes & ~SESSION_ATTR.continueSession) throw new TpmError(atSession(RC.ATTRIBUTES, n));
      slots.push({ cmd, authHandle });
      continue;
    }
    const session = tpm.sessions.get(cmd.handle);
    if (!session) throw new TpmError(RC.REFERENCE_S0 + i);
    const a = cmd.attributes;
    // Audit sessions need the audit digest machinery, which this engine does not have yet.
    if (a & (SESSION_ATTR.audit | SESSION_ATTR.auditExclusive | SESSION_ATTR.auditReset)) throw new TpmError(atSession(RC.ATTRIBUTES, n));
    if (a & SESSION_ATTR.decrypt) {
      if (decrypt !== undefined || !firstParamSized) throw new TpmError(atSession(RC.ATTRIBUTES, n));
      if (session.symmetric.algorithm === ALG.NULL) throw new TpmError(atSession(RC.SYMMETRIC, n));
      decrypt = i;
    }
    if (a & SESSION_ATTR.encrypt) {
      if (encrypt !== undefined || !firstResponseSized) throw new TpmError(atSession(RC.ATTRIBUTES, n));
      if (session.symmetric.algorithm === ALG.NULL) throw new TpmError(atSession(RC.SYMMETRIC, n));
      encrypt = i;
    }
    if (authHandle === undefined && !(a & (SESSION_ATTR.decrypt | SESSION_ATTR.encrypt))) {
      throw new TpmError(atSession(RC.ATTRIBUTES, n));
    }
    slots.push({ cmd, session, authHandle });
  }
  return { slots, decrypt, encrypt };
}

/** sessionKey || authValue, leaving out the authValue where a bound session authorizes its own entity. */
function hmacKey(tpm: Tpm2Engine, s: Session, authHandle: number | undefined): Buffer {
  if (authHandle === undefined) return s.sessionKey;
  if (s.bind && s.bind.handle === authHandle && s.type === SESSION_TYPE.HMAC) return s.sessionKey;
  return Buffer.concat([s.sessionKey, tpm.authValue(authHandle)]);
}

/** The key for parameter encryption: sessionKey plus the authValue of the entity it authorizes. */
function cryptKey(tpm: Tpm2Engine, slot: Slot): Buffer {
  const s = slot.session!;
  return slot.authHandle === undefined ? s.sessionKey : Buffer.concat([s.sessionKey, tpm.authValue(slot.authHandle)]);
}

/** Decrypts the first parameter in place of a copy of the parameter area. */
export function decryptParameters(tpm: Tpm2Engine, plan: SessionPlan, params: Buffer): Buffer {
  const slot = plan.slots[plan.decrypt!]!;
  const s = slot.session!;
  if (params.length < 2) throw new TpmError(RC.INSUFFICIENT);
  const size = params.readUInt16BE(0);
  if (params.length < 2 + size) throw new TpmError(RC.INSUFFICIENT);
  const plain = cryptParameter(s.symmetric, s.authHash, cryptKey(tpm, slot), slot.cmd.nonce, s.nonceTPM, params.subarray(2, 2 + size), 'decrypt');
  const out = Buffer.from(params);
  plain.copy(out, 2);
  return out;
}

function names(tpm: Tpm2Engine, handles: readonly number[]): Buffer[] {
  return handles.map((h) => tpm.nameOf(h));
}

/**
 * Checks every authorization: a password against the entity's authValue, an HMAC session's
 * HMAC over cpHash and the nonces, a policy session's digest against the entity's policy.
 */
export function checkAuthorizations(tpm: Tpm2Engine, plan: SessionPlan, cc: number, handles: readonly number[], cpBuffer: Buffer): void {
  const cpHashes = new Map<number, Buffer>();
  const cpHash = (alg: number) => {
    let h = cpHashes.get(alg);
    if (!h) cpHashes.set(alg, (h = digest(alg, u32(cc), ...names(tpm, handles), cpBuffer)));
    return h;
  };
  for (let i = 0; i < plan.slots.length; i++) {
    const slot = plan.slots[i]!;
    const n = i + 1;
    const s = slot.session;
    const h = slot.authHandle;
    const daProtected = h !== undefined && tpm.isDaProtected(h);
    if (h !== undefined && (!s || s.type === SESSION_TYPE.HMAC)) tpm.lockout.checkAvailable(h, daProtected);
    const fail = (): never => {
      if (h !== undefined) tpm.lockout.recordFailure(h, daProtected);
      throw new TpmError(atSession(daProtected || h === undefined ? RC.AUTH_FAIL : RC.BAD_AUTH, n));
    };
    if (!s) {
      // Both sides lose trailing zeros: a password padded with NULs is the same password.
      if (!constantTimeEqual(tpm.authValue(h!), trimAuth(slot.cmd.hmac))) fail();
      continue;
    }
    if (s.type !== SESSION_TYPE.HMAC && slot.authHandle !== undefined) {
      // A policy session authorizes only if its digest equals the entity's authPolicy.
      const policy = tpm.authPolicy(slot.authHandle);
      if (s.type === SESSION_TYPE.TRIAL || policy.length === 0 || !constantTimeEqual(policy, s.policyDigest)) {
        throw new TpmError(atSession(RC.POLICY_FAIL, n));
      }
      continue;
    }
    // nonceTPM of separate decrypt/encrypt sessions is bound into the first session's HMAC.
    const extra: Buffer[] = [];
    if (i === 0) {
      if (plan.decrypt !== undefined && plan.decrypt !== 0) extra.push(plan.slots[plan.decrypt]!.session!.nonceTPM);
      if (plan.encrypt !== undefined && plan.encrypt !== 0 && plan.encrypt !== plan.decrypt) extra.push(plan.slots[plan.encrypt]!.session!.nonceTPM);
    }
    const expected = hmac(s.authHash, hmacKey(tpm, s, slot.authHandle), cpHash(s.authHash), slot.cmd.nonce, s.nonceTPM, ...extra, Buffer.from([slot.cmd.attributes]));
    if (!constantTimeEqual(expected, slot.cmd.hmac)) fail();
  }
}

/**
 * After a successful command: rolls every session's nonces, encrypts the first response
 * parameter if asked, computes the response HMACs and flushes sessions not continued.
 */
export function finishSessions(tpm: Tpm2Engine, plan: SessionPlan, cc: number, rpBuffer: Buffer): AuthResponse[] {
  for (const slot of plan.slots) {
    const s = slot.session;
    if (!s) continue;
    s.nonceCaller = slot.cmd.nonce.length ? Buffer.from(slot.cmd.nonce) : Buffer.alloc(0);
    s.nonceTPM = tpm.random.bytes(digestSize(s.authHash));
  }
  if (plan.encrypt !== undefined) {
    const slot = plan.slots[plan.encrypt]!;
    const s = slot.session!;
    const size = rpBuffer.readUInt16BE(0);
    cryptParameter(s.symmetric, s.authHash, cryptKey(tpm, slot), s.nonceTPM, s.nonceCaller, rpBuffer.subarray(2, 2 + size), 'encrypt').copy(rpBuffer, 2);
  }
  const rpHashes = new Map<number, Buffer>();
  const rpHash = (alg: number) => {
    let h = rpHashes.get(alg);
    if (!h) rpHashes.set(alg, (h = digest(alg, u32(RC.SUCCESS), u32(cc), rpBuffer)));
    return h;
  };
  const out: AuthResponse[] = [];
  for (const slot of plan.slots) {
    const s = slot.session;
    if (!s) {
      out.push(PASSWORD_RESPONSE);
      continue;
    }
    const attributes = slot.cmd.attributes & (SESSION_ATTR.continueSession | SESSION_ATTR.decrypt | SESSION_ATTR.encrypt);
    const mac =
      s.type === SESSION_TYPE.HMAC || slot.authHandle === undefined
        ? hmac(s.authHash, hmacKey(tpm, s, slot.authHandle), rpHash(s.authHash), s.nonceTPM, s.nonceCaller, Buffer.from([attributes]))
        : Buffer.alloc(0);
    out.push({ nonce: s.nonceTPM, attributes, hmac: mac });
    if (!(slot.cmd.attributes & SESSION_ATTR.continueSession)) tpm.sessions.remove(s.handle);
  }
  return out;
}
