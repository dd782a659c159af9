import { hasPrivate, type TpmObject } from '../objects/model.ts';
import { constantTimeEqual, digest, digestSize, hmac } from '../../crypto/hash.ts';
import { trimAuth } from './auth-value.ts';
import { ALG, CC, HT, RH, SESSION_ATTR } from '../constants.ts';
import type { AuthRole } from '../command.ts';
import { RC, TpmError, atSession } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import type { TransientObject } from '../state/objects.ts';
import { OBJECT_ATTR } from '../types/public.ts';
import { cryptParameter } from './param-crypt.ts';
import { pinAccepted, pinRefused } from './pin-index.ts';
import { checkSessionAudit, endExclusiveAudit, updateSessionAudit } from '../audit.ts';
import { PASSWORD_RESPONSE, type AuthCommand, type AuthResponse } from './session-area.ts';
import { SESSION_TYPE, newPolicyState, resetPolicy, type PolicyState, type Session } from './sessions.ts';
import { u32be } from '../../wire/buffer.ts';

/** One session of a command, resolved: the loaded session (none for a password) and its role. */
interface Slot {
  readonly cmd: AuthCommand;
  readonly session?: Session;
  /** The handle this session authorizes, if it is an authorization session. */
  readonly authHandle?: number;
  /** The position of that handle among the command's handles. */
  readonly authIndex?: number;
  /**
   * Whether the entity's authValue keys this session's HMACs, decided when the command is
   * checked and kept for the response (the entity's auth may change in between).
   */
  includeAuth?: boolean;
  /**
   * The entity's authValue as the command found it, when the command flushes the entity
   * (SequenceComplete, EventSequenceComplete): the response HMAC and response encryption still
   * use it.
   */
  authOfFlushed?: Buffer;
}

/** The sessions of one command, checked for structure before any parameter is decoded. */
export interface SessionPlan {
  readonly slots: Slot[];
  readonly decrypt?: number;
  readonly encrypt?: number;
  /** The session with the audit attribute, if any. */
  readonly audit?: number;
  /** Its cpHash in its own hash, taken before the handler runs (Names may change). */
  auditCpHash?: Buffer;
}

const EMPTY: Buffer = Buffer.alloc(0);

/** TPMA_NV bits the authorization rules read. */
const NV_AUTHWRITE = 1 << 2;
const NV_POLICYWRITE = 1 << 3;
const NV_AUTHREAD = 1 << 18;
const NV_POLICYREAD = 1 << 19;
const NV_WRITTEN = 1 << 29;
const NT_PIN_FAIL = 0x8;
const NT_PIN_PASS = 0x9;

/**
 * Commands that write an NV index (the reference IsWriteOperation): an index authorizing for
 * itself needs AUTHWRITE (authValue) or POLICYWRITE (policy) for them, AUTHREAD/POLICYREAD otherwise.
 */
const NV_WRITE_COMMANDS: ReadonlySet<number> = new Set([CC.NV_Write, CC.NV_Increment, CC.NV_SetBits, CC.NV_Extend, CC.NV_WriteLock]);

/** Templates are checked against PolicyTemplate for these commands only. */
const TEMPLATE_COMMANDS: ReadonlySet<number> = new Set([CC.Create, CC.CreatePrimary, CC.CreateLoaded]);

/** A policy session on which no policy command has run yet: no conditions. */
const NO_CONDITIONS: Readonly<PolicyState> = Object.freeze(newPolicyState(0n));

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
  let audit: number | undefined;
  for (let i = 0; i < sessions.length; i++) {
    const cmd = sessions[i]!;
    const n = i + 1;
    const authIndex = authHandles[i];
    const authHandle = authIndex === undefined ? undefined : handles[authIndex];
    if (cmd.handle === RH.RS_PW) {
      if (authHandle === undefined) throw new TpmError(atSession(RC.HANDLE, n));
      if (cmd.nonce.length !== 0) throw new TpmError(atSession(RC.NONCE, n));
      if (cmd.attributes & ~SESSION_ATTR.continueSession) throw new TpmError(atSession(RC.ATTRIBUTES, n));
      slots.push({ cmd, authHandle, authIndex });
      continue;
    }
    const session = tpm.sessions.get(cmd.handle);
    if (!session) throw new TpmError(RC.REFERENCE_S0 + i);
    // The same session twice in one command.
    for (let j = 0; j < i; j++) if (sessions[j]!.handle === cmd.handle) throw new TpmError(atSession(RC.HANDLE, n));
    const a = cmd.attributes;
    if (a & (SESSION_ATTR.audit | SESSION_ATTR.auditExclusive | SESSION_ATTR.auditReset)) {
      // At most one session audits a command.
      if (a & SESSION_ATTR.audit && audit !== undefined) throw new TpmError(atSession(RC.ATTRIBUTES, n));
      checkSessionAudit(tpm, session, a, n);
      if (a & SESSION_ATTR.audit) audit = i;
    }
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
    if (authHandle === undefined && !(a & (SESSION_ATTR.decrypt | SESSION_ATTR.encrypt | SESSION_ATTR.audit))) {
      throw new TpmError(atSession(RC.ATTRIBUTES, n));
    }
    // A trial session only computes digests: it authorizes nothing and protects nothing.
    if (session.type === SESSION_TYPE.TRIAL) throw new TpmError(atSession(RC.ATTRIBUTES, n));
    slots.push({ cmd, session, authHandle, authIndex });
  }
  return { slots, decrypt, encrypt, audit };
}

/** sessionKey || authValue when the slot includes the entity's authValue, else sessionKey alone. */
function hmacKey(tpm: Tpm2Engine, slot: Slot): Buffer {
  const s = slot.session!;
  return slot.includeAuth && slot.authHandle !== undefined ? Buffer.concat([s.sessionKey, entityAuth(tpm, slot)]) : s.sessionKey;
}

/**
 * Whether an HMAC session is bound to the entity it authorizes (Part 1, 19.6.11): bound to it
 * at StartAuthSession, and the entity still has the Name and the authValue it had then.
 */
function isBoundTo(tpm: Tpm2Engine, s: Session, h: number): boolean {
  const b = s.bind;
  return b !== undefined && b.handle === h && constantTimeEqual(b.name, tpm.nameOf(h)) && constantTimeEqual(b.auth, tpm.authValue(h));
}

/** The key for parameter encryption: sessionKey plus the authValue of the entity it authorizes. */
function cryptKey(tpm: Tpm2Engine, slot: Slot): Buffer {
  const s = slot.session!;
  return slot.authHandle === undefined ? s.sessionKey : Buffer.concat([s.sessionKey, entityAuth(tpm, slot)]);
}

function entityAuth(tpm: Tpm2Engine, slot: Slot): Buffer {
  return slot.authOfFlushed ?? tpm.authValue(slot.authHandle!);
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

// ---------------------------------------------------------------------------------------------
// Entity rules (Part 1, 19.2 and 19.7; the reference IsPolicySessionRequired,
// IsAuthValueAvailable and IsAuthPolicyAvailable)

/** The role the command asks of its handle at `index`. */
function roleOf(tpm: Tpm2Engine, cc: number, index: number | undefined): AuthRole {
  if (index === undefined) return 'none';
  return tpm.commands.get(cc)?.def.handles[index]?.auth ?? 'user';
}

function isObjectHandle(h: number): boolean {
  const ht = h >>> 24;
  return ht === HT.TRANSIENT || ht === HT.PERSISTENT;
}

/** An object loaded with its public area only (LoadExternal without a sensitive area). */
function isPublicOnly(obj: TransientObject): boolean {
  return obj.public !== undefined && 'sensitive' in obj && !hasPrivate(obj as TpmObject);
}

/**
 * A policy session is the only way to authorize: the DUP role always; the ADMIN role unless the
 * entity is an object with adminWithPolicy CLEAR.
 */
function policyRequired(tpm: Tpm2Engine, h: number, role: AuthRole): boolean {
  if (role === 'dup') return true;
  if (role !== 'admin') return false;
  if (!isObjectHandle(h)) return true;
  const pub = tpm.objectAt(h)?.public;
  return pub !== undefined && (pub.objectAttributes & OBJECT_ATTR.adminWithPolicy) !== 0;
}

/** Whether the entity's authValue may authorize it in this role (a password or HMAC session). */
function authValueAvailable(tpm: Tpm2Engine, h: number, role: AuthRole, cc: number): boolean {
  switch (h >>> 24) {
    case HT.PCR:
      return true;
    case HT.PERMANENT:
      return h === RH.OWNER || h === RH.ENDORSEMENT || h === RH.PLATFORM || h === RH.LOCKOUT || h === RH.NULL;
    case HT.TRANSIENT:
    case HT.PERSISTENT: {
      const obj = tpm.objectAt(h);
      if (!obj) return false;
      // Sequences have no public area and are always used with their authValue.
      if (!obj.public) return true;
      if (isPublicOnly(obj)) return false;
      const a = obj.public.objectAttributes;
      return (a & OBJECT_ATTR.userWithAuth) !== 0 || (role === 'admin' && (a & OBJECT_ATTR.adminWithPolicy) === 0);
    }
    case HT.NV_INDEX: {
      const ix = tpm.nv.nvIndices.get(h);
      if (!ix) return false;
      const a = ix.attributes;
      if (NV_WRITE_COMMANDS.has(cc)) return (a & NV_AUTHWRITE) !== 0;
      const nt = (a >>> 4) & 0xf;
      if (nt === NT_PIN_FAIL || nt === NT_PIN_PASS) {
        // A PIN index's authValue serves while pinCount < pinLimit (its data: two UINT32s).
        if (!(a & NV_WRITTEN) || ix.data.length < 8) return false;
        return ix.data.readUInt32BE(0) < ix.data.readUInt32BE(4);
      }
      return (a & NV_AUTHREAD) !== 0;
    }
    default:
      return false;
  }
}

/** Whether the entity's authPolicy may authorize it in this role (a policy session). */
function authPolicyAvailable(tpm: Tpm2Engine, h: number, role: AuthRole, cc: number): boolean {
  switch (h >>> 24) {
    case HT.PERMANENT:
      return (h === RH.OWNER || h === RH.ENDORSEMENT || h === RH.PLATFORM || h === RH.LOCKOUT) && tpm.authPolicy(h).length !== 0;
    case HT.TRANSIENT:
    case HT.PERSISTENT: {
      const obj = tpm.objectAt(h);
      // Never for a sequence or a public-only object.
      return obj?.public !== undefined && !isPublicOnly(obj);
    }
    case HT.NV_INDEX: {
      const ix = tpm.nv.nvIndices.get(h);
      if (!ix || ix.authPolicy.length === 0) return false;
      if (policyRequired(tpm, h, role)) return true;
      return (ix.attributes & (NV_WRITE_COMMANDS.has(cc) ? NV_POLICYWRITE : NV_POLICYREAD)) !== 0;
    }
    default:
      // PCR policies (PCR_SetAuthPolicy) are not implemented.
      return false;
  }
}

/** The hash that made the entity's authPolicy: the hierarchy policy's, or the nameAlg. */
function authPolicyAlg(tpm: Tpm2Engine, h: number): number {
  switch (h >>> 24) {
    case HT.PERMANENT: {
      const p = tpm.nv.hierarchy.policies;
      if (h === RH.OWNER) return p.owner.alg;
      if (h === RH.ENDORSEMENT) return p.endorsement.alg;
      if (h === RH.LOCKOUT) return p.lockout.alg;
      if (h === RH.PLATFORM) return tpm.platformPolicy.alg;
      return ALG.NULL;
    }
    case HT.NV_INDEX:
      return tpm.nv.nvIndices.get(h)?.nameAlg ?? ALG.NULL;
    case HT.TRANSIENT:
    case HT.PERSISTENT:
      return tpm.objectAt(h)?.public?.nameAlg ?? ALG.NULL;
    default:
      return ALG.NULL;
  }
}

// ---------------------------------------------------------------------------------------------
// Command digests

/** cpHash per hash algorithm, computed at most once per command and only when a session needs it. */
class CpHashes {
  private readonly byAlg = new Map<number, Buffer>();
  constructor(
    private readonly tpm: Tpm2Engine,
    private readonly cc: number,
    private readonly handles: readonly number[],
    private readonly params: Buffer,
  ) {}

  /** cpHash = H(commandCode || Name(handle)… || parameters). */
  get(alg: number): Buffer {
    let h = this.byAlg.get(alg);
    if (!h) this.byAlg.set(alg, (h = digest(alg, u32be(this.cc), ...this.handles.map((x) => this.tpm.nameOf(x)), this.params)));
    return h;
  }

  /** nameHash = H(Name(handle)…). */
  nameHash(alg: number): Buffer {
    return digest(alg, ...this.handles.map((x) => this.tpm.nameOf(x)));
  }

  /** H(data of the second parameter), the template of Create, CreatePrimary and CreateLoaded. */
  templateHash(alg: number): Buffer | undefined {
    if (!TEMPLATE_COMMANDS.has(this.cc)) return undefined;
    const p = this.params;
    if (p.length < 2) return undefined;
    const at = 2 + p.readUInt16BE(0);
    if (p.length < at + 2) return undefined;
    const size = p.readUInt16BE(at);
    if (p.length < at + 2 + size) return undefined;
    return digest(alg, p.subarray(at + 2, at + 2 + size));
  }
}

// ---------------------------------------------------------------------------------------------
// Checks

/** An authorization failure: counted against DA protection when `counted`, and numbered. */
function authFailure(tpm: Tpm2Engine, h: number, counted: boolean, n: number): never {
  if (counted) tpm.lockout.recordFailure(h, true);
  throw new TpmError(atSession(counted ? RC.AUTH_FAIL : RC.BAD_AUTH, n));
}

/** A password (TPM_RS_PW) against the entity's authValue. */
function checkPassword(tpm: Tpm2Engine, slot: Slot, h: number, cc: number, n: number): void {
  const daProtected = tpm.isDaProtected(h);
  tpm.lockout.checkAvailable(h, daProtected);
  const role = roleOf(tpm, cc, slot.authIndex);
  if (role !== 'user' && policyRequired(tpm, h, role)) throw new TpmError(RC.AUTH_TYPE);
  if (!authValueAvailable(tpm, h, role, cc)) throw new TpmError(RC.AUTH_UNAVAILABLE);
  // Both sides lose trailing zeros: a password padded with NULs is the same password.
  if (!constantTimeEqual(tpm.authValue(h), trimAuth(slot.cmd.hmac))) wrongAuthValue(tpm, h, daProtected, n);
  pinAccepted(tpm, h);
}

/** A wrong authValue: a PIN Fail index counts it itself; anything else as authFailure does. */
function wrongAuthValue(tpm: Tpm2Engine, h: number, daProtected: boolean, n: number): never {
  if (pinRefused(tpm, h)) throw new TpmError(atSession(RC.AUTH_FAIL, n));
  authFailure(tpm, h, daProtected, n);
}

/**
 * The command HMAC of a session: HMAC(key, cpHash || nonceCaller || nonceTPM [|| nonceTPM of
 * the decrypt and encrypt sessions, for the first session] || sessionAttributes). With an empty
 * key an empty HMAC is accepted too (Part 1, 19.6.13: nothing secret to prove).
 */
function sessionHmacMatches(plan: SessionPlan, i: number, s: Session, key: Buffer, cp: CpHashes): boolean {
  const cmd = plan.slots[i]!.cmd;
  if (key.length === 0 && cmd.hmac.length === 0) return true;
  const extra: Buffer[] = [];
  if (i === 0 && plan.slots[0]!.authHandle !== undefined) {
    if (plan.decrypt !== undefined && plan.decrypt !== 0) extra.push(plan.slots[plan.decrypt]!.session!.nonceTPM);
    if (plan.encrypt !== undefined && plan.encrypt !== 0 && plan.encrypt !== plan.decrypt) extra.push(plan.slots[plan.encrypt]!.session!.nonceTPM);
  }
  const expected = hmac(s.authHash, key, cp.get(s.authHash), cmd.nonce, s.nonceTPM, ...extra, Buffer.from([cmd.attributes]));
  return constantTimeEqual(expected, cmd.hmac);
}

/** An HMAC session authorizing an entity. */
function checkHmacSession(tpm: Tpm2Engine, plan: SessionPlan, i: number, s: Session, h: number, cc: number, cp: CpHashes): void {
  const n = i + 1;
  const slot = plan.slots[i]!;
  const daProtected = tpm.isDaProtected(h);
  tpm.lockout.checkAvailable(h, daProtected);
  const role = roleOf(tpm, cc, slot.authIndex);
  if (role !== 'user' && policyRequired(tpm, h, role)) throw new TpmError(RC.AUTH_TYPE);
  if (!authValueAvailable(tpm, h, role, cc)) throw new TpmError(RC.AUTH_UNAVAILABLE);
  slot.includeAuth = !isBoundTo(tpm, s, h);
  if (!sessionHmacMatches(plan, i, s, hmacKey(tpm, slot), cp)) wrongAuthValue(tpm, h, daProtected, n);
  pinAccepted(tpm, h);
}

/** Whether the command comes from a locality the session allows (TPMA_LOCALITY or an extended locality). */
function localityAllowed(allowed: number, locality: number | undefined): boolean {
  if (locality === undefined) return false;
  if (locality < 5) return allowed < 32 && (allowed & (1 << locality)) !== 0;
  if (locality > 31) return allowed === locality;
  return false;
}

/**
 * A policy session authorizing an entity (Part 1, 19.7.?; the reference CheckPolicyAuthSession):
 * its digest must equal the entity's authPolicy, made with the session's hash, and every condition
 * the policy commands recorded must hold for this command. Then PolicyPassword's password or
 * PolicyAuthValue's HMAC is checked, else the session HMAC with the session key alone.
 */
function checkPolicySession(
  tpm: Tpm2Engine,
  plan: SessionPlan,
  i: number,
  s: Session,
  h: number,
  cc: number,
  cp: CpHashes,
  locality: number | undefined,
): void {
  const n = i + 1;
  const slot = plan.slots[i]!;
  const st = s.policy ?? NO_CONDITIONS;
  const includeAuth = st.isAuthValueNeeded || st.isPasswordNeeded;
  const daProtected = tpm.isDaProtected(h);
  if (includeAuth) tpm.lockout.checkAvailable(h, daProtected);
  const role = roleOf(tpm, cc, slot.authIndex);
  if (!authPolicyAvailable(tpm, h, role, cc)) throw new TpmError(RC.AUTH_UNAVAILABLE);

  // PolicySecret authorized by a policy that needs no secret would let policies chain for free.
  if (cc === CC.PolicySecret && !includeAuth) throw new TpmError(atSession(RC.MODE, n));
  if (st.pcrCounter !== undefined && st.pcrCounter !== tpm.pcrs.updateCounter) throw new TpmError(RC.PCR_CHANGED);
  const policy = tpm.authPolicy(h);
  if (policy.length === 0 || !constantTimeEqual(policy, s.policyDigest) || authPolicyAlg(tpm, h) !== s.authHash) {
    throw new TpmError(atSession(RC.POLICY_FAIL, n));
  }
  if (st.timeout !== 0n && st.timeout < tpm.clock.time) throw new TpmError(atSession(RC.EXPIRED, n));
  if (st.commandCode !== 0) {
    if (st.commandCode !== cc) throw new TpmError(atSession(RC.POLICY_CC, n));
  } else if (role === 'admin' || role === 'dup') {
    // ADMIN and DUP role policies must name the command they allow.
    throw new TpmError(atSession(RC.POLICY_FAIL, n));
  }
  if (st.commandLocality !== 0 && !localityAllowed(st.commandLocality, locality)) throw new TpmError(RC.LOCALITY);
  if (st.isPPRequired && !tpm.physicalPresence) throw new TpmError(atSession(RC.PP, n));
  if (st.cpHash.length !== 0) {
    let ok: boolean;
    if (st.cpHashKind === 'cpHash') ok = constantTimeEqual(st.cpHash, cp.get(s.authHash));
    else if (st.cpHashKind === 'template') {
      const t = cp.templateHash(s.authHash);
      ok = t !== undefined && constantTimeEqual(st.cpHash, t);
    } else ok = constantTimeEqual(st.cpHash, cp.nameHash(s.authHash));
    if (!ok) throw new TpmError(atSession(RC.POLICY_FAIL, n));
  }
  if (st.checkNvWritten) {
    const ix = h >>> 24 === HT.NV_INDEX ? tpm.nv.nvIndices.get(h) : undefined;
    if (!ix || ((ix.attributes & NV_WRITTEN) !== 0) !== st.nvWrittenState) throw new TpmError(atSession(RC.POLICY_FAIL, n));
  }

  if (st.isPasswordNeeded) {
    if (!constantTimeEqual(tpm.authValue(h), trimAuth(slot.cmd.hmac))) authFailure(tpm, h, daProtected, n);
    return;
  }
  slot.includeAuth = st.isAuthValueNeeded;
  if (!sessionHmacMatches(plan, i, s, hmacKey(tpm, slot), cp)) authFailure(tpm, h, st.isAuthValueNeeded && daProtected, n);
}

/**
 * Checks every authorization: a password against the entity's authValue, an HMAC session's
 * HMAC over cpHash and the nonces, a policy session's digest and conditions against the entity's
 * policy; and the HMAC of sessions that only encrypt. `locality` is the locality the command
 * came from; without it, a policy limited by PolicyLocality does not authorize.
 */
export function checkAuthorizations(tpm: Tpm2Engine, plan: SessionPlan, cc: number, handles: readonly number[], cpBuffer: Buffer, locality?: number): void {
  let cp: CpHashes | undefined;
  const slots = plan.slots;
  for (let i = 0; i < slots.length; i++) {
    const slot = slots[i]!;
    const s = slot.session;
    const h = slot.authHandle;
    if (!s) {
      checkPassword(tpm, slot, h!, cc, i + 1);
      continue;
    }
    cp ??= new CpHashes(tpm, cc, handles, cpBuffer);
    // TPMA_CC.flushed: the command flushes the transient objects it names.
    if (h !== undefined && h >>> 24 === HT.TRANSIENT && tpm.commands.get(cc)?.def.flushed) slot.authOfFlushed = tpm.authValue(h);
    if (h === undefined) {
      // A session that only encrypts or decrypts proves knowledge of its session key.
      if (!sessionHmacMatches(plan, i, s, s.sessionKey, cp)) throw new TpmError(atSession(RC.AUTH_FAIL, i + 1));
    } else if (s.type === SESSION_TYPE.HMAC) {
      checkHmacSession(tpm, plan, i, s, h, cc, cp);
    } else {
      checkPolicySession(tpm, plan, i, s, h, cc, cp, locality);
    }
  }
}

/**
 * After a successful command: rolls every session's nonces, encrypts the first response
 * parameter if asked, computes the response HMACs, restarts the policy of every policy session
 * that continues, and flushes sessions not continued.
 */
export function finishSessions(tpm: Tpm2Engine, plan: SessionPlan, cc: number, rpBuffer: Buffer): AuthResponse[] {
  for (const slot of plan.slots) {
    const s = slot.session;
    if (!s) continue;
    s.nonceCaller = slot.cmd.nonce.length ? Buffer.from(slot.cmd.nonce) : EMPTY;
    s.nonceTPM = tpm.random.bytes(digestSize(s.authHash));
  }
  if (plan.encrypt !== undefined) {
    const slot = plan.slots[plan.encrypt]!;
    const s = slot.session!;
    const size = rpBuffer.readUInt16BE(0);
    cryptParameter(s.symmetric, s.authHash, cryptKey(tpm, slot), s.nonceTPM, s.nonceCaller, rpBuffer.subarray(2, 2 + size), 'encrypt').copy(rpBuffer, 2);
  }
  // The audit digest takes the response as sent, and its exclusivity shows in the response attributes.
  let auditBits = 0;
  if (plan.audit !== undefined) {
    const slot = plan.slots[plan.audit]!;
    auditBits = SESSION_ATTR.audit | updateSessionAudit(tpm, { session: slot.session!, attributes: slot.cmd.attributes }, cc, plan.auditCpHash!, rpBuffer);
  } else {
    endExclusiveAudit(tpm);
  }
  let rpHashes: Map<number, Buffer> | undefined;
  const out: AuthResponse[] = [];
  for (const slot of plan.slots) {
    const s = slot.session;
    if (!s) {
      out.push(PASSWORD_RESPONSE);
      continue;
    }
    let attributes = slot.cmd.attributes & (SESSION_ATTR.continueSession | SESSION_ATTR.decrypt | SESSION_ATTR.encrypt);
    if (slot === plan.slots[plan.audit ?? -1]) attributes |= auditBits;
    const isPolicy = s.type !== SESSION_TYPE.HMAC;
    let mac: Buffer = EMPTY;
    if (!(isPolicy && slot.authHandle !== undefined && s.policy?.isPasswordNeeded)) {
      const key = hmacKey(tpm, slot);
      if (key.length !== 0 || slot.cmd.hmac.length !== 0) {
        rpHashes ??= new Map();
        let rp = rpHashes.get(s.authHash);
        if (!rp) rpHashes.set(s.authHash, (rp = digest(s.authHash, u32be(RC.SUCCESS), u32be(cc), rpBuffer)));
        mac = hmac(s.authHash, key, rp, s.nonceTPM, s.nonceCaller, Buffer.from([attributes]));
      }
    }
    out.push({ nonce: s.nonceTPM, attributes, hmac: mac });
    if (!(slot.cmd.attributes & SESSION_ATTR.continueSession)) {
      tpm.sessions.remove(s.handle);
    } else if (isPolicy) {
      // The nonce rolled: the policy starts over, and its time with it.
      resetPolicy(s);
      if (s.policy) s.policy.startTime = tpm.clock.time;
    }
  }
  return out;
}
