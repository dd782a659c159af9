/**
 * Enhanced authorization (TPM 2.0 Part 3, clause 23; Part 1, 19.7): the policy commands. Each
 * extends a policy session's policyDigest exactly as Part 3 gives it, so that a trial session
 * computes the digest tpm2-tools and tpm2-tss compute, and (in a real session) first checks
 * its assertion and records the conditions the authorization check in auth/authorize.ts
 * enforces when the session is used.
 */
import { encode, u16, u32, yesNo } from '../../wire/codec.ts';
import { constantTimeEqual, digest, digestSize, isHashAlg } from '../../crypto/hash.ts';
import { ALG, CC, HT, RH, ST } from '../constants.ts';
import { checkNvRead } from './nv.ts';
import { command } from '../command.ts';
import { RC, TpmError } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import type { TransientObject } from '../state/objects.ts';
import { SESSION_TYPE, policyState, resetPolicy, type PolicyState, type Session } from '../auth/sessions.ts';
import { EXPIRES_ON_RESET, authTicket, authTicketDigest, checkVerifiedTicket, nullAuthTicket } from '../auth/tickets.ts';
import { verifyDigest } from '../objects/sign.ts';
import type { TpmObject } from '../objects/model.ts';
import { digestBuf, nonceBuf } from '../types/basic.ts';
import { dhObject } from '../types/handles.ts';
import { nameBuf } from '../types/creation.ts';
import { nvIndexHandle, rhNvAuth } from '../types/nv.ts';
import { pcrSelectionList } from '../types/pcr.ts';
import { timeInfo } from '../types/time.ts';
import { EO, dhEntity, eo, i32, localityAttr, orDigestList, shPolicy, timeoutBuf, tkAuth, tkVerified } from '../types/policy.ts';
import { signature } from '../types/signature.ts';
import { currentTimeInfo } from './clock.ts';
import { u32be } from '../../wire/buffer.ts';

const EMPTY: Buffer = Buffer.alloc(0);

/** TPMA_NV bits PolicySecret reads. */
const NV_PLATFORMCREATE = 1 << 30;
const NT_PIN_PASS = 0x9;

function u8b(v: number): Buffer {
  return Buffer.from([v & 0xff]);
}

function u16b(v: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(v & 0xffff);
  return b;
}

/** The policy session behind a handle the dispatcher has already found loaded. */
function sessionAt(tpm: Tpm2Engine, handle: number): Session {
  return tpm.sessions.get(handle)!;
}

function stateOf(tpm: Tpm2Engine, s: Session): PolicyState {
  return policyState(s, tpm.clock.time);
}

function isTrial(s: Session): boolean {
  return s.type === SESSION_TYPE.TRIAL;
}

/** policyDigest := H(policyDigest || commandCode || parts…). */
function extend(s: Session, cc: number, ...parts: Uint8Array[]): void {
  s.policyDigest = digest(s.authHash, s.policyDigest, u32be(cc), ...parts);
}

/**
 * PolicyUpdate (Part 3, 23.2.3) as PolicySigned, PolicySecret, PolicyTicket and PolicyAuthorize
 * use it: H(H(policyDigest || cc || name) || policyRef), then the cpHash and timeout they bring.
 */
function policyUpdate(s: Session, st: PolicyState, cc: number, name: Buffer, policyRef: Buffer, cpHash: Buffer, timeout: bigint): void {
  extend(s, cc, name);
  s.policyDigest = digest(s.authHash, s.policyDigest, policyRef);
  if (cpHash.length !== 0) {
    st.cpHash = Buffer.from(cpHash);
    st.cpHashKind = 'cpHash';
  }
  if (timeout !== 0n && (st.timeout === 0n || st.timeout > timeout)) st.timeout = timeout;
}

/**
 * When an authorization given to PolicySigned / PolicySecret expires, in TPM Time
 * milliseconds: relative to the session start when it names the session's nonceTPM, else an
 * absolute Time in seconds. 0n: no expiration.
 */
function authTimeout(tpm: Tpm2Engine, st: PolicyState, expiration: number, nonce: Buffer): bigint {
  if (expiration === 0) return 0n;
  const seconds = BigInt(Math.abs(expiration));
  if (nonce.length === 0) return seconds * 1000n + (tpm.clock.time % 1000n);
  return st.startTime + seconds * 1000n;
}

/** The checks PolicySigned, PolicySecret and PolicyTicket share (nonceTPM, expiration, cpHashA). */
function parameterChecks(
  tpm: Tpm2Engine,
  s: Session,
  st: PolicyState,
  timeout: bigint,
  cpHashA: Buffer,
  nonce: Buffer | undefined,
  blame: { nonce: number; cpHash: number; expiration: number },
): void {
  if (nonce !== undefined && nonce.length !== 0 && !constantTimeEqual(nonce, s.nonceTPM)) throw TpmError.parameter(RC.NONCE, blame.nonce);
  if (timeout !== 0n && timeout < tpm.clock.time) throw TpmError.parameter(RC.EXPIRED, blame.expiration);
  if (cpHashA.length !== 0) {
    if (cpHashA.length !== digestSize(s.authHash)) throw TpmError.parameter(RC.SIZE, blame.cpHash);
    if (st.cpHash.length !== 0 && !constantTimeEqual(cpHashA, st.cpHash)) throw new TpmError(RC.CPHASH);
  }
}

/** The hierarchy an entity belongs to, whose proof keys its tickets (the reference EntityGetHierarchy). */
function hierarchyOf(tpm: Tpm2Engine, h: number): number {
  switch (h >>> 24) {
    case HT.PERMANENT:
      return h === RH.PLATFORM || h === RH.ENDORSEMENT || h === RH.NULL ? h : RH.OWNER;
    case HT.NV_INDEX:
      return (tpm.nv.nvIndices.get(h)?.attributes ?? 0) & NV_PLATFORMCREATE ? RH.PLATFORM : RH.OWNER;
    case HT.TRANSIENT:
    case HT.PERSISTENT:
      return (tpm.objectAt(h) as (TransientObject & { hierarchy?: number }) | undefined)?.hierarchy ?? RH.NULL;
    default:
      return RH.OWNER;
  }
}

function timeoutBytes(timeout: bigint, expiresOnReset: boolean): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(expiresOnReset ? timeout | EXPIRES_ON_RESET : timeout);
  return b;
}

/** TPM_EO comparisons of two equal-length big-endian operands (A: the TPM's data, B: the caller's). */
function compareUnsigned(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b);
}

function compareSigned(a: Buffer, b: Buffer): number {
  if (a.length === 0) return 0;
  const na = (a[0]! & 0x80) !== 0;
  const nb = (b[0]! & 0x80) !== 0;
  if (na !== nb) return na ? -1 : 1;
  return Buffer.compare(a, b);
}

function conditionHolds(operation: number, a: Buffer, b: Buffer): boolean {
  switch (operation) {
    case EO.EQ:
      return compareUnsigned(a, b) === 0;
    case EO.NEQ:
      return compareUnsigned(a, b) !== 0;
    case EO.SIGNED_GT:
      return compareSigned(a, b) > 0;
    case EO.UNSIGNED_GT:
      return compareUnsigned(a, b) > 0;
    case EO.SIGNED_LT:
      return compareSigned(a, b) < 0;
    case EO.UNSIGNED_LT:
      return compareUnsigned(a, b) < 0;
    case EO.SIGNED_GE:
      return compareSigned(a, b) >= 0;
    case EO.UNSIGNED_GE:
      return compareUnsigned(a, b) >= 0;
    case EO.SIGNED_LE:
      return compareSigned(a, b) <= 0;
    case EO.UNSIGNED_LE:
      return compareUnsigned(a, b) <= 0;
    case EO.BITSET:
      for (let i = 0; i < a.length; i++) if ((a[i]! & b[i]!) !== b[i]) return false;
      return true;
    case EO.BITCLEAR:
      for (let i = 0; i < a.length; i++) if ((a[i]! & b[i]!) !== 0) return false;
      return true;
    default:
      return false;
  }
}

const policySessionHandle = { name: 'policySession', type: shPolicy, auth: 'none' } as const;
/** PolicyNV and PolicyAuthorizeNV: who reads the index, the index, the session. */
const nvPolicyHandles = [
  { name: 'authHandle', type: rhNvAuth, auth: 'user' },
  { name: 'nvIndex', type: nvIndexHandle, auth: 'none' },
  policySessionHandle,
] as const;

export const policyCommands = [
  command({
    cc: CC.PolicyRestart,
    name: 'PolicyRestart',
    handles: [{ name: 'sessionHandle', type: shPolicy, auth: 'none' }],
    params: {},
    response: {},
    handler: ({ tpm, handles }) => {
      resetPolicy(sessionAt(tpm, handles[0]!));
      return {};
    },
  }),
  command({
    cc: CC.PolicyGetDigest,
    name: 'PolicyGetDigest',
    handles: [policySessionHandle],
    params: {},
    response: { policyDigest: digestBuf },
    handler: ({ tpm, handles }) => ({ policyDigest: Buffer.from(sessionAt(tpm, handles[0]!).policyDigest) }),
  }),
  command({
    cc: CC.PolicyPCR,
    name: 'PolicyPCR',
    handles: [policySessionHandle],
    params: { pcrDigest: digestBuf, pcrs: pcrSelectionList },
    response: {},
    handler: ({ tpm, handles }, { pcrDigest, pcrs }) => {
      const s = sessionAt(tpm, handles[0]!);
      const st = stateOf(tpm, s);
      // PCR_SELECT_MAX: no selection wider than the PCRs this TPM has.
      const max = Math.ceil(tpm.pcrCount / 8);
      if (pcrs.some((sel) => sel.select.length > max)) throw TpmError.parameter(RC.VALUE, 2);
      const current = tpm.pcrs.digestOf(s.authHash, pcrs);
      let value = current.digest;
      if (!isTrial(s)) {
        if (st.pcrCounter !== undefined && st.pcrCounter !== tpm.pcrs.updateCounter) throw new TpmError(RC.PCR_CHANGED);
        if (pcrDigest.length !== 0 && !constantTimeEqual(pcrDigest, value)) throw TpmError.parameter(RC.VALUE, 1);
      } else if (pcrDigest.length !== 0) {
        value = pcrDigest;
      }
      extend(s, CC.PolicyPCR, encode(pcrSelectionList, current.selection), value);
      if (!isTrial(s)) st.pcrCounter = tpm.pcrs.updateCounter;
      return {};
    },
  }),
  command({
    cc: CC.PolicyLocality,
    name: 'PolicyLocality',
    handles: [policySessionHandle],
    params: { locality: localityAttr },
    response: {},
    handler: ({ tpm, handles }, { locality }) => {
      const s = sessionAt(tpm, handles[0]!);
      const st = stateOf(tpm, s);
      if (locality === 0) throw TpmError.parameter(RC.RANGE, 1);
      const prev = st.commandLocality;
      // Ordinary (bit field) and extended localities do not mix.
      if (prev !== 0 && prev < 32 !== locality < 32) throw TpmError.parameter(RC.RANGE, 1);
      let next: number;
      if (locality < 32) {
        next = (prev === 0 ? 0x1f : prev) & locality;
        if (next === 0) throw TpmError.parameter(RC.RANGE, 1);
      } else {
        if (prev !== 0 && prev !== locality) throw TpmError.parameter(RC.RANGE, 1);
        next = locality;
      }
      extend(s, CC.PolicyLocality, u8b(locality));
      st.commandLocality = next;
      return {};
    },
  }),
  command({
    cc: CC.PolicyCommandCode,
    name: 'PolicyCommandCode',
    handles: [policySessionHandle],
    params: { code: u32 },
    response: {},
    handler: ({ tpm, handles }, { code }) => {
      const s = sessionAt(tpm, handles[0]!);
      const st = stateOf(tpm, s);
      if (st.commandCode !== 0 && st.commandCode !== code) throw TpmError.parameter(RC.VALUE, 1);
      if (!tpm.commands.has(code)) throw TpmError.parameter(RC.POLICY_CC, 1);
      extend(s, CC.PolicyCommandCode, u32be(code));
      st.commandCode = code;
      return {};
    },
  }),
  command({
    cc: CC.PolicyAuthValue,
    name: 'PolicyAuthValue',
    handles: [policySessionHandle],
    params: {},
    response: {},
    handler: ({ tpm, handles }) => {
      const s = sessionAt(tpm, handles[0]!);
      const st = stateOf(tpm, s);
      extend(s, CC.PolicyAuthValue);
      st.isAuthValueNeeded = true;
      st.isPasswordNeeded = false;
      return {};
    },
  }),
  command({
    cc: CC.PolicyPassword,
    name: 'PolicyPassword',
    handles: [policySessionHandle],
    params: {},
    response: {},
    handler: ({ tpm, handles }) => {
      const s = sessionAt(tpm, handles[0]!);
      const st = stateOf(tpm, s);
      // The same digest as PolicyAuthValue: the policy does not say how the authValue is shown.
      extend(s, CC.PolicyAuthValue);
      st.isPasswordNeeded = true;
      st.isAuthValueNeeded = false;
      return {};
    },
  }),
  command({
    cc: CC.PolicyPhysicalPresence,
    name: 'PolicyPhysicalPresence',
    handles: [policySessionHandle],
    params: {},
    response: {},
    handler: ({ tpm, handles }) => {
      const s = sessionAt(tpm, handles[0]!);
      extend(s, CC.PolicyPhysicalPresence);
      // Checked when the session authorizes: the platform must assert presence at that moment.
      stateOf(tpm, s).isPPRequired = true;
      return {};
    },
  }),
  command({
    cc: CC.PolicyOR,
    name: 'PolicyOR',
    handles: [policySessionHandle],
    params: { pHashList: orDigestList },
    response: {},
    handler: ({ tpm, handles }, { pHashList }) => {
      const s = sessionAt(tpm, handles[0]!);
      if (!isTrial(s) && !pHashList.some((d) => constantTimeEqual(d, s.policyDigest))) throw TpmError.parameter(RC.VALUE, 1);
      s.policyDigest = digest(s.authHash, Buffer.alloc(digestSize(s.authHash)), u32be(CC.PolicyOR), ...pHashList);
      return {};
    },
  }),
  command({
    cc: CC.PolicyCpHash,
    name: 'PolicyCpHash',
    handles: [policySessionHandle],
    params: { cpHashA: digestBuf },
    response: {},
    handler: ({ tpm, handles }, { cpHashA }) => {
      const s = sessionAt(tpm, handles[0]!);
      const st = stateOf(tpm, s);
      if (cpHashA.length !== digestSize(s.authHash)) throw TpmError.parameter(RC.SIZE, 1);
      if (st.cpHash.length !== 0 && (st.cpHashKind !== 'cpHash' || !constantTimeEqual(cpHashA, st.cpHash))) throw new TpmError(RC.CPHASH);
      extend(s, CC.PolicyCpHash, cpHashA);
      st.cpHash = cpHashA;
      st.cpHashKind = 'cpHash';
      return {};
    },
  }),
  command({
    cc: CC.PolicyNameHash,
    name: 'PolicyNameHash',
    handles: [policySessionHandle],
    params: { nameHash: digestBuf },
    response: {},
    handler: ({ tpm, handles }, { nameHash }) => {
      const s = sessionAt(tpm, handles[0]!);
      const st = stateOf(tpm, s);
      if (nameHash.length !== digestSize(s.authHash)) throw TpmError.parameter(RC.SIZE, 1);
      if (st.cpHash.length !== 0) throw new TpmError(RC.CPHASH);
      extend(s, CC.PolicyNameHash, nameHash);
      st.cpHash = nameHash;
      st.cpHashKind = 'nameHash';
      return {};
    },
  }),
  command({
    cc: CC.PolicyTemplate,
    name: 'PolicyTemplate',
    handles: [policySessionHandle],
    params: { templateHash: digestBuf },
    response: {},
    handler: ({ tpm, handles }, { templateHash }) => {
      const s = sessionAt(tpm, handles[0]!);
      const st = stateOf(tpm, s);
      if (st.cpHashKind === 'template') {
        if (!constantTimeEqual(templateHash, st.cpHash)) throw TpmError.parameter(RC.VALUE, 1);
      } else if (st.cpHash.length !== 0) {
        throw new TpmError(RC.CPHASH);
      }
      if (templateHash.length !== digestSize(s.authHash)) throw TpmError.parameter(RC.SIZE, 1);
      extend(s, CC.PolicyTemplate, templateHash);
      st.cpHash = templateHash;
      st.cpHashKind = 'template';
      return {};
    },
  }),
  command({
    cc: CC.PolicyDuplicationSelect,
    name: 'PolicyDuplicationSelect',
    handles: [policySessionHandle],
    params: { objectName: nameBuf, newParentName: nameBuf, includeObject: yesNo },
    response: {},
    handler: ({ tpm, handles }, { objectName, newParentName, includeObject }) => {
      const s = sessionAt(tpm, handles[0]!);
      const st = stateOf(tpm, s);
      if (st.cpHash.length !== 0) throw new TpmError(RC.CPHASH);
      if (st.commandCode !== 0) throw new TpmError(RC.COMMAND_CODE);
      st.cpHash = digest(s.authHash, objectName, newParentName);
      st.cpHashKind = 'nameHash';
      extend(s, CC.PolicyDuplicationSelect, includeObject ? objectName : EMPTY, newParentName, u8b(includeObject ? 1 : 0));
      st.commandCode = CC.Duplicate;
      return {};
    },
  }),
  command({
    cc: CC.PolicyNvWritten,
    name: 'PolicyNvWritten',
    handles: [policySessionHandle],
    params: { writtenSet: yesNo },
    response: {},
    handler: ({ tpm, handles }, { writtenSet }) => {
      const s = sessionAt(tpm, handles[0]!);
      const st = stateOf(tpm, s);
      if (st.checkNvWritten && st.nvWrittenState !== writtenSet) throw TpmError.parameter(RC.VALUE, 1);
      st.checkNvWritten = true;
      st.nvWrittenState = writtenSet;
      extend(s, CC.PolicyNvWritten, u8b(writtenSet ? 1 : 0));
      return {};
    },
  }),
  command({
    cc: CC.PolicyCounterTimer,
    name: 'PolicyCounterTimer',
    handles: [policySessionHandle],
    params: { operandB: digestBuf, offset: u16, operation: eo },
    response: {},
    handler: ({ tpm, handles }, { operandB, offset, operation }) => {
      const info = encode(timeInfo, currentTimeInfo(tpm));
      // The reference to TPMS_TIME_INFO must stay inside it, trial session or not.
      if (offset > info.length) throw TpmError.parameter(RC.VALUE, 2);
      if (offset + operandB.length > info.length) throw new TpmError(RC.RANGE);
      const s = sessionAt(tpm, handles[0]!);
      if (!isTrial(s) && !conditionHolds(operation, info.subarray(offset, offset + operandB.length), operandB)) throw new TpmError(RC.POLICY);
      const args = digest(s.authHash, operandB, u16b(offset), u16b(operation));
      extend(s, CC.PolicyCounterTimer, args);
      return {};
    },
  }),
  command({
    cc: CC.PolicyNV,
    name: 'PolicyNV',
    handles: nvPolicyHandles,
    params: { operandB: digestBuf, offset: u16, operation: eo },
    response: {},
    handler: ({ tpm, handles }, { operandB, offset, operation }) => {
      const [authHandle, nvIndex, policySession] = handles as [number, number, number];
      const s = sessionAt(tpm, policySession);
      if (!isTrial(s)) {
        const ix = tpm.nv.nvIndices.get(nvIndex)!;
        checkNvRead(authHandle, ix);
        if (offset > ix.dataSize) throw TpmError.parameter(RC.VALUE, 2);
        if (ix.dataSize - offset < operandB.length) throw TpmError.parameter(RC.SIZE, 1);
        const data = Buffer.alloc(operandB.length);
        ix.data.copy(data, 0, offset, Math.min(ix.data.length, offset + operandB.length));
        if (!conditionHolds(operation, data, operandB)) throw new TpmError(RC.POLICY);
      }
      const args = digest(s.authHash, operandB, u16b(offset), u16b(operation));
      extend(s, CC.PolicyNV, args, tpm.nameOf(nvIndex));
      return {};
    },
  }),
  command({
    cc: CC.PolicyAuthorizeNV,
    name: 'PolicyAuthorizeNV',
    handles: nvPolicyHandles,
    params: {},
    response: {},
    handler: ({ tpm, handles }) => {
      const [authHandle, nvIndex, policySession] = handles as [number, number, number];
      const s = sessionAt(tpm, policySession);
      if (!isTrial(s)) {
        // The index holds a TPMT_HA: the policy now approved, in the session's hash.
        const ix = tpm.nv.nvIndices.get(nvIndex)!;
        checkNvRead(authHandle, ix);
        const held = ix.data.subarray(0, Math.min(ix.dataSize, 2 + digestSize(s.authHash)));
        if (held.length < 2 || held.readUInt16BE(0) !== s.authHash) throw TpmError.handle(RC.HASH, 2);
        if (held.length !== 2 + s.policyDigest.length || !constantTimeEqual(held.subarray(2), s.policyDigest)) throw new TpmError(RC.VALUE);
      }
      s.policyDigest = Buffer.alloc(digestSize(s.authHash));
      extend(s, CC.PolicyAuthorizeNV, tpm.nameOf(nvIndex));
      return {};
    },
  }),
  command({
    cc: CC.PolicySecret,
    name: 'PolicySecret',
    handles: [{ name: 'authHandle', type: dhEntity, auth: 'user' }, policySessionHandle],
    params: { nonceTPM: nonceBuf, cpHashA: digestBuf, policyRef: nonceBuf, expiration: i32 },
    response: { timeout: timeoutBuf, policyTicket: tkAuth },
    handler: ({ tpm, handles }, { nonceTPM, cpHashA, policyRef, expiration }) => {
      const [authHandle, policySession] = handles as [number, number];
      const s = sessionAt(tpm, policySession);
      const st = stateOf(tpm, s);
      let timeout = 0n;
      if (!isTrial(s)) {
        timeout = authTimeout(tpm, st, expiration, nonceTPM);
        parameterChecks(tpm, s, st, timeout, cpHashA, nonceTPM, { nonce: 1, cpHash: 2, expiration: 4 });
      }
      const name = tpm.nameOf(authHandle);
      policyUpdate(s, st, CC.PolicySecret, name, policyRef, cpHashA, timeout);
      const pinPass = authHandle >>> 24 === HT.NV_INDEX && (((tpm.nv.nvIndices.get(authHandle)?.attributes ?? 0) >>> 4) & 0xf) === NT_PIN_PASS;
      if (expiration < 0 && !isTrial(s) && !pinPass) {
        const expiresOnReset = nonceTPM.length === 0;
        return {
          timeout: timeoutBytes(timeout, expiresOnReset),
          policyTicket: authTicket(tpm, ST.AUTH_SECRET, hierarchyOf(tpm, authHandle), timeout, expiresOnReset, cpHashA, policyRef, name),
        };
      }
      return { timeout: EMPTY, policyTicket: nullAuthTicket(ST.AUTH_SECRET) };
    },
  }),
  command({
    cc: CC.PolicySigned,
    name: 'PolicySigned',
    handles: [{ name: 'authObject', type: dhObject, auth: 'none' }, policySessionHandle],
    params: { nonceTPM: nonceBuf, cpHashA: digestBuf, policyRef: nonceBuf, expiration: i32, auth: signature },
    response: { timeout: timeoutBuf, policyTicket: tkAuth },
    handler: ({ tpm, handles }, { nonceTPM, cpHashA, policyRef, expiration, auth }) => {
      const [authObject, policySession] = handles as [number, number];
      const obj = tpm.objectAt(authObject);
      // Only a key (with a public area) can have signed anything; sequences cannot.
      if (!obj?.public) throw TpmError.handle(RC.HANDLE, 1);
      const s = sessionAt(tpm, policySession);
      const st = stateOf(tpm, s);
      let timeout = 0n;
      if (!isTrial(s)) {
        timeout = authTimeout(tpm, st, expiration, nonceTPM);
        parameterChecks(tpm, s, st, timeout, cpHashA, nonceTPM, { nonce: 1, cpHash: 2, expiration: 4 });
        if (auth.sigAlg === ALG.NULL || !('hash' in auth)) throw TpmError.parameter(RC.SCHEME, 5);
        // aHash := H_sigHash(nonceTPM || expiration || cpHashA || policyRef)
        const aHash = digest(auth.hash, nonceTPM, u32be(expiration), cpHashA, policyRef);
        // CryptValidateSignature, shared with VerifySignature; a key loaded here is a TpmObject.
        const rc = verifyDigest(obj as TpmObject, aHash, auth);
        if (rc !== RC.SUCCESS) throw TpmError.parameter(rc, 5);
      }
      const name = tpm.nameOf(authObject);
      policyUpdate(s, st, CC.PolicySigned, name, policyRef, cpHashA, timeout);
      if (expiration < 0 && !isTrial(s)) {
        const expiresOnReset = nonceTPM.length === 0;
        return {
          timeout: timeoutBytes(timeout, expiresOnReset),
          policyTicket: authTicket(tpm, ST.AUTH_SIGNED, hierarchyOf(tpm, authObject), timeout, expiresOnReset, cpHashA, policyRef, name),
        };
      }
      return { timeout: EMPTY, policyTicket: nullAuthTicket(ST.AUTH_SIGNED) };
    },
  }),
  command({
    cc: CC.PolicyTicket,
    name: 'PolicyTicket',
    handles: [policySessionHandle],
    params: { timeout: timeoutBuf, cpHashA: digestBuf, policyRef: nonceBuf, authName: nameBuf, ticket: tkAuth },
    response: {},
    handler: ({ tpm, handles }, { timeout, cpHashA, policyRef, authName, ticket }) => {
      const s = sessionAt(tpm, handles[0]!);
      // A ticket stands in for an authorization; a trial session has none to replace.
      if (isTrial(s)) throw TpmError.handle(RC.ATTRIBUTES, 1);
      const st = stateOf(tpm, s);
      if (timeout.length !== 8) throw TpmError.parameter(RC.SIZE, 1);
      const raw = timeout.readBigUInt64BE(0);
      const expiresOnReset = (raw & EXPIRES_ON_RESET) !== 0n;
      const authTime = raw & ~EXPIRES_ON_RESET;
      parameterChecks(tpm, s, st, authTime, cpHashA, undefined, { nonce: 0, cpHash: 2, expiration: 1 });
      const expected = authTicketDigest(tpm, ticket.tag, ticket.hierarchy, authTime, expiresOnReset, cpHashA, policyRef, authName);
      if (!constantTimeEqual(ticket.digest, expected)) throw TpmError.parameter(RC.TICKET, 5);
      policyUpdate(s, st, ticket.tag === ST.AUTH_SIGNED ? CC.PolicySigned : CC.PolicySecret, authName, policyRef, cpHashA, authTime);
      return {};
    },
  }),
  command({
    cc: CC.PolicyAuthorize,
    name: 'PolicyAuthorize',
    handles: [policySessionHandle],
    params: { approvedPolicy: digestBuf, policyRef: nonceBuf, keySign: nameBuf, checkTicket: tkVerified },
    response: {},
    handler: ({ tpm, handles }, { approvedPolicy, policyRef, keySign, checkTicket }) => {
      const s = sessionAt(tpm, handles[0]!);
      const st = stateOf(tpm, s);
      // keySign is the Name of the approving key: nameAlg || digest.
      const hashAlg = keySign.length >= 2 ? keySign.readUInt16BE(0) : 0;
      if (!isHashAlg(hashAlg)) throw TpmError.parameter(RC.HASH, 3);
      if (digestSize(hashAlg) !== keySign.length - 2) throw TpmError.parameter(RC.SIZE, 3);
      if (!isTrial(s)) {
        if (!constantTimeEqual(s.policyDigest, approvedPolicy)) throw TpmError.parameter(RC.VALUE, 1);
        // aHash := H_nameAlg(approvedPolicy || policyRef), which the key signed and VerifySignature ticketed.
        const aHash = digest(hashAlg, approvedPolicy, policyRef);
        if (!checkVerifiedTicket(tpm, checkTicket, aHash, keySign)) throw TpmError.parameter(RC.VALUE, 4);
      }
      s.policyDigest = Buffer.alloc(digestSize(s.authHash));
      policyUpdate(s, st, CC.PolicyAuthorize, keySign, policyRef, EMPTY, 0n);
      return {};
    },
  }),
];
