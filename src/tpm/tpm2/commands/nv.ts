/**
 * NV storage (TPM 2.0 Part 3, clause 31): defining and deleting NV indices, reading and writing
 * them by type (ordinary, counter, bit field, extend), locks, and the TPM Reset / TPM Restart
 * effects of the STCLEAR and ORDERLY attributes.
 *
 * Authorization: the dispatcher checks the password, HMAC or policy against authHandle (and
 * auth/authorize.ts whether an index's authValue or policy may serve the command at all:
 * AUTHWRITE/POLICYWRITE, AUTHREAD/POLICYREAD, a PolicyCommandCode policy for the ADMIN role);
 * these handlers check that the attributes of the index let the chosen authHandle act (owner →
 * OWNERxxx, platform → PPxxx, another index never), else TPM_RC_NV_AUTHORIZATION.
 *
 * PIN indices (TPM_NT_PIN_PASS, TPM_NT_PIN_FAIL) are defined and written here like ordinary
 * 8-byte indices; their pinCount/pinLimit accounting is in auth/pin-index.ts.
 */
import { u16, u64 } from '../../wire/codec.ts';
import { asBuffer } from '../../wire/buffer.ts';
import { digest, digestSize } from '../../crypto/hash.ts';
import { CC, RH } from '../constants.ts';
import { command } from '../command.ts';
import { RC, TpmError } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { trimAuth } from '../auth/auth-value.ts';
import { authBuf } from '../types/basic.ts';
import { rhPlatform, rhProvision } from '../types/handles.ts';
import { nameBuf } from '../types/creation.ts';
import {
  MAX_NV_BUFFER_SIZE,
  MAX_NV_INDEX_SIZE,
  NT,
  NV_ATTR,
  maxNvBuffer,
  nvIndexHandle,
  nvName,
  nvPublic2b,
  nvType,
  rhNvAuth,
  type NvPublic,
} from '../types/nv.ts';
import type { NvIndex } from '../state/nv-indices.ts';

/** MAX_ORDERLY_COUNT (TPM_PT_ORDERLY_COUNT): the low bits of an orderly counter that may be lost. */
export const MAX_ORDERLY_COUNT = 0xffn;

const A = NV_ATTR;
const has = (attributes: number, bit: number) => (attributes & bit) !== 0;
const set = (attributes: number, bit: number) => (attributes | bit) >>> 0;
const clear = (attributes: number, bit: number) => (attributes & ~bit) >>> 0;
const U64_MASK = (1n << 64n) - 1n;

/** The TPMS_NV_PUBLIC of an index, with its current attributes. */
export function nvPublicOf(ix: NvIndex): NvPublic {
  return { nvIndex: ix.handle, nameAlg: ix.nameAlg, attributes: ix.attributes >>> 0, authPolicy: ix.authPolicy, dataSize: ix.dataSize };
}

/**
 * Whether an NV index is visible (Part 3 NvIndexIsAccessible): an owner-created index disappears
 * while shEnable is CLEAR, a platform-created one while phEnableNV is CLEAR. TPM_RC_SUCCESS,
 * or TPM_RC_HANDLE for the caller to number. The engine's checkHandle may call this for HT_NV_INDEX.
 */
export function nvIndexAccessible(tpm: Tpm2Engine, handle: number): number {
  const ix = tpm.nv.nvIndices.get(handle);
  if (!ix) return RC.HANDLE;
  if (has(ix.attributes, A.PLATFORMCREATE)) return tpm.enables.phNV ? RC.SUCCESS : RC.HANDLE;
  return tpm.enables.sh ? RC.SUCCESS : RC.HANDLE;
}

/** The index behind handle number `n`, or TPM_RC_HANDLE numbered for it. */
function indexAt(tpm: Tpm2Engine, handle: number, n: number): NvIndex {
  const ix = tpm.nv.nvIndices.get(handle);
  if (!ix || nvIndexAccessible(tpm, handle) !== RC.SUCCESS) throw TpmError.handle(RC.HANDLE, n);
  return ix;
}

/**
 * Part 3 NvWriteAccessChecks: TPM_RC_NV_LOCKED if write-locked, TPM_RC_NV_AUTHORIZATION if
 * authHandle may not write this index, else TPM_RC_SUCCESS.
 */
function writeAccess(authHandle: number, ix: NvIndex): number {
  const a = ix.attributes;
  if (has(a, A.WRITELOCKED)) return RC.NV_LOCKED;
  if (authHandle === RH.OWNER) return has(a, A.OWNERWRITE) ? RC.SUCCESS : RC.NV_AUTHORIZATION;
  if (authHandle === RH.PLATFORM) return has(a, A.PPWRITE) ? RC.SUCCESS : RC.NV_AUTHORIZATION;
  if (authHandle !== ix.handle) return RC.NV_AUTHORIZATION;
  // The index authorizes for itself: by authValue with AUTHWRITE or by policy with POLICYWRITE
  // (which of the two the session used is the session code's to check).
  return has(a, A.AUTHWRITE | A.POLICYWRITE) ? RC.SUCCESS : RC.NV_AUTHORIZATION;
}

/**
 * Part 3 NvReadAccessChecks: TPM_RC_NV_LOCKED, TPM_RC_NV_AUTHORIZATION, then
 * TPM_RC_NV_UNINITIALIZED for an index never written.
 */
export function readAccess(authHandle: number, ix: NvIndex): number {
  const a = ix.attributes;
  if (has(a, A.READLOCKED)) return RC.NV_LOCKED;
  if (authHandle === RH.OWNER) {
    if (!has(a, A.OWNERREAD)) return RC.NV_AUTHORIZATION;
  } else if (authHandle === RH.PLATFORM) {
    if (!has(a, A.PPREAD)) return RC.NV_AUTHORIZATION;
  } else if (authHandle !== ix.handle || !has(a, A.AUTHREAD | A.POLICYREAD)) {
    return RC.NV_AUTHORIZATION;
  }
  if (!has(a, A.WRITTEN)) return RC.NV_UNINITIALIZED;
  return RC.SUCCESS;
}

function check(rc: number): void {
  if (rc !== RC.SUCCESS) throw new TpmError(rc);
}

/** NvReadAccessChecks for commands that read an index on the side (NV_Certify, PolicyNV). */
export function checkNvRead(authHandle: number, ix: NvIndex): void {
  check(readAccess(authHandle, ix));
}

/** Writes bytes into an index and sets TPMA_NV_WRITTEN; the dispatcher persists the change. */
function writeData(tpm: Tpm2Engine, ix: NvIndex, offset: number, data: Uint8Array): void {
  asBuffer(data).copy(ix.data, offset);
  ix.attributes = set(ix.attributes, A.WRITTEN);
  tpm.markNvDirty();
}

function writeU64(tpm: Tpm2Engine, ix: NvIndex, v: bigint): void {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v & U64_MASK);
  writeData(tpm, ix, 0, b);
}

/** The common start of the five write commands: the index and its write-access checks. */
function writable(tpm: Tpm2Engine, handles: readonly number[]): NvIndex {
  const ix = indexAt(tpm, handles[1]!, 2);
  check(writeAccess(handles[0]!, ix));
  return ix;
}

const SUPPORTED_TYPES: ReadonlySet<number> = new Set([NT.ORDINARY, NT.COUNTER, NT.BITS, NT.EXTEND, NT.PIN_FAIL, NT.PIN_PASS]);
/** Types NV_Write writes; the others change only through their own commands. */
const WRITABLE_TYPES: ReadonlySet<number> = new Set([NT.ORDINARY, NT.PIN_FAIL, NT.PIN_PASS]);

/** TPM2_NV_DefineSpace's checks, in the order Part 3 makes them. */
function checkDefinition(tpm: Tpm2Engine, authHandle: number, auth: Buffer, pub: NvPublic): void {
  const a = pub.attributes;
  const nameSize = digestSize(pub.nameAlg);
  const publicInfoError = (rc: number) => TpmError.parameter(rc, 2);
  if (pub.authPolicy.length !== 0 && pub.authPolicy.length !== nameSize) throw publicInfoError(RC.SIZE);
  if (trimAuth(auth).length > nameSize) throw TpmError.parameter(RC.SIZE, 1);
  if (authHandle === RH.PLATFORM && !tpm.enables.phNV) throw TpmError.handle(RC.HIERARCHY, 1);
  const type = nvType(a);
  if (!SUPPORTED_TYPES.has(type)) throw publicInfoError(RC.ATTRIBUTES);
  if (type === NT.ORDINARY) {
    if (pub.dataSize > MAX_NV_INDEX_SIZE) throw publicInfoError(RC.SIZE);
  } else if (type === NT.EXTEND) {
    if (pub.dataSize !== nameSize) throw publicInfoError(RC.SIZE);
  } else if (pub.dataSize !== 8) {
    throw publicInfoError(RC.SIZE);
  }
  // A counter may never go back to unwritten.
  if (type === NT.COUNTER && has(a, A.CLEAR_STCLEAR)) throw publicInfoError(RC.ATTRIBUTES);
  if (type === NT.PIN_FAIL || type === NT.PIN_PASS) {
    // A PIN Fail index is its own lockout; the PIN may never rewrite its own counters, and a PIN
    // index must stay writable by whoever resets them.
    if (type === NT.PIN_FAIL && !has(a, A.NO_DA)) throw publicInfoError(RC.ATTRIBUTES);
    if (has(a, A.AUTHWRITE) || has(a, A.GLOBALLOCK) || has(a, A.WRITEDEFINE)) throw publicInfoError(RC.ATTRIBUTES);
  }
  // State bits are the TPM's to set.
  if (has(a, A.WRITTEN | A.WRITELOCKED | A.READLOCKED)) throw publicInfoError(RC.ATTRIBUTES);
  // There must be a way to read and a way to write it.
  if (!has(a, A.OWNERREAD | A.PPREAD | A.AUTHREAD | A.POLICYREAD)) throw publicInfoError(RC.ATTRIBUTES);
  if (!has(a, A.OWNERWRITE | A.PPWRITE | A.AUTHWRITE | A.POLICYWRITE)) throw publicInfoError(RC.ATTRIBUTES);
  if (has(a, A.CLEAR_STCLEAR) && has(a, A.WRITEDEFINE)) throw publicInfoError(RC.ATTRIBUTES);
  // Whoever creates an index must be able to delete it.
  if (has(a, A.PLATFORMCREATE) !== (authHandle === RH.PLATFORM)) throw TpmError.handle(RC.ATTRIBUTES, 1);
  if (has(a, A.POLICY_DELETE) && authHandle !== RH.PLATFORM) throw publicInfoError(RC.ATTRIBUTES);
  if (pub.dataSize > MAX_NV_BUFFER_SIZE && has(a, A.WRITEALL)) throw publicInfoError(RC.SIZE);
  if (tpm.nv.nvIndices.get(pub.nvIndex)) throw new TpmError(RC.NV_DEFINED);
  if (!tpm.nv.nvIndices.hasSpaceFor(pub.dataSize)) throw new TpmError(RC.NV_SPACE);
}

/**
 * TPM Reset and TPM Restart (Startup(CLEAR)) effects on every index: READLOCKED clears;
 * WRITTEN clears for non-counters with CLEAR_STCLEAR, and for ORDERLY non-counters at TPM Reset;
 * WRITELOCKED clears unless the index is written and has WRITEDEFINE (so WRITE_STCLEAR and
 * NV_GlobalWriteLock locks end here); after a startup not preceded by an orderly Shutdown, an
 * ORDERLY counter has its low bits set (MAX_ORDERLY_COUNT), so it never repeats a value.
 *
 * Call from Tpm2Engine.startup for Startup(CLEAR), while tpm.nv.shutdown still says how the TPM
 * last shut down ('state': TPM Restart; 'clear': orderly TPM Reset; 'none': non-orderly TPM Reset),
 * or pass that explicitly. Nothing happens at Startup(STATE) (TPM Resume).
 */
export function nvOnStartupClear(tpm: Tpm2Engine, previousShutdown: 'none' | 'clear' | 'state' = tpm.nv.shutdown): void {
  const reset = previousShutdown !== 'state';
  let changed = false;
  for (const ix of tpm.nv.nvIndices.values()) {
    const before = ix.attributes >>> 0;
    let a = clear(before, A.READLOCKED);
    const counter = nvType(a) === NT.COUNTER;
    if (!counter && (has(a, A.CLEAR_STCLEAR) || (has(a, A.ORDERLY) && reset)) && has(a, A.WRITTEN)) {
      a = clear(a, A.WRITTEN);
      ix.data.fill(0);
      changed = true;
    }
    if (!has(a, A.WRITTEN) || !has(a, A.WRITEDEFINE)) a = clear(a, A.WRITELOCKED);
    if (counter && has(a, A.ORDERLY) && has(a, A.WRITTEN) && previousShutdown === 'none') {
      const v = ix.data.readBigUInt64BE(0);
      const bumped = v | MAX_ORDERLY_COUNT;
      if (bumped !== v) {
        ix.data.writeBigUInt64BE(bumped);
        changed = true;
      }
    }
    if (a !== before) {
      ix.attributes = a;
      changed = true;
    }
  }
  if (changed) tpm.markNvDirty();
}

const authAndIndex = [
  { name: 'authHandle', type: rhNvAuth, auth: 'user' as const },
  { name: 'nvIndex', type: nvIndexHandle, auth: 'none' as const },
];

export const nvCommands = [
  command({
    cc: CC.NV_DefineSpace,
    name: 'NV_DefineSpace',
    nv: true,
    handles: [{ name: 'authHandle', type: rhProvision, auth: 'user' }],
    params: { auth: authBuf, publicInfo: nvPublic2b },
    response: {},
    handler: ({ tpm, handles }, { auth, publicInfo }) => {
      checkDefinition(tpm, handles[0]!, auth, publicInfo);
      tpm.nv.nvIndices.set({
        handle: publicInfo.nvIndex,
        nameAlg: publicInfo.nameAlg,
        attributes: publicInfo.attributes >>> 0,
        authPolicy: Buffer.from(publicInfo.authPolicy),
        dataSize: publicInfo.dataSize,
        auth: Buffer.from(trimAuth(auth)),
        data: Buffer.alloc(publicInfo.dataSize),
      });
      tpm.markNvDirty();
      return {};
    },
  }),
  command({
    cc: CC.NV_UndefineSpace,
    name: 'NV_UndefineSpace',
    nv: true,
    handles: [
      { name: 'authHandle', type: rhProvision, auth: 'user' },
      { name: 'nvIndex', type: nvIndexHandle, auth: 'none' },
    ],
    params: {},
    response: {},
    handler: ({ tpm, handles }) => {
      const ix = indexAt(tpm, handles[1]!, 2);
      // An index with POLICY_DELETE goes only through NV_UndefineSpaceSpecial.
      if (has(ix.attributes, A.POLICY_DELETE)) throw TpmError.handle(RC.ATTRIBUTES, 2);
      // The owner may delete only what the owner created; the platform may delete either.
      if (handles[0] === RH.OWNER && has(ix.attributes, A.PLATFORMCREATE)) throw new TpmError(RC.NV_AUTHORIZATION);
      tpm.nv.nvIndices.remove(ix.handle);
      tpm.markNvDirty();
      return {};
    },
  }),
  command({
    cc: CC.NV_UndefineSpaceSpecial,
    name: 'NV_UndefineSpaceSpecial',
    nv: true,
    handles: [
      { name: 'nvIndex', type: nvIndexHandle, auth: 'admin' },
      { name: 'platform', type: rhPlatform, auth: 'user' },
    ],
    params: {},
    response: {},
    handler: ({ tpm, handles }) => {
      const ix = indexAt(tpm, handles[0]!, 1);
      if (!has(ix.attributes, A.POLICY_DELETE)) throw TpmError.handle(RC.ATTRIBUTES, 1);
      tpm.nv.nvIndices.remove(ix.handle);
      tpm.markNvDirty();
      return {};
    },
  }),
  command({
    cc: CC.NV_ReadPublic,
    name: 'NV_ReadPublic',
    handles: [{ name: 'nvIndex', type: nvIndexHandle, auth: 'none' }],
    params: {},
    response: { nvPublic: nvPublic2b, nvName: nameBuf },
    handler: ({ tpm, handles }) => {
      const pub = nvPublicOf(indexAt(tpm, handles[0]!, 1));
      return { nvPublic: pub, nvName: nvName(pub) };
    },
  }),
  command({
    cc: CC.NV_Write,
    name: 'NV_Write',
    nv: true,
    handles: authAndIndex,
    params: { data: maxNvBuffer, offset: u16 },
    response: {},
    handler: ({ tpm, handles }, { data, offset }) => {
      const ix = writable(tpm, handles);
      if (!WRITABLE_TYPES.has(nvType(ix.attributes))) throw new TpmError(RC.ATTRIBUTES);
      if (offset > ix.dataSize) throw TpmError.parameter(RC.VALUE, 2);
      if (data.length > ix.dataSize - offset) throw new TpmError(RC.NV_RANGE);
      if (has(ix.attributes, A.WRITEALL) && data.length < ix.dataSize) throw new TpmError(RC.NV_RANGE);
      writeData(tpm, ix, offset, data);
      return {};
    },
  }),
  command({
    cc: CC.NV_Increment,
    name: 'NV_Increment',
    nv: true,
    handles: authAndIndex,
    params: {},
    response: {},
    handler: ({ tpm, handles }) => {
      const ix = writable(tpm, handles);
      if (nvType(ix.attributes) !== NT.COUNTER) throw TpmError.handle(RC.ATTRIBUTES, 2);
      // A counter's first value exceeds every counter deleted before it.
      const v = has(ix.attributes, A.WRITTEN) ? ix.data.readBigUInt64BE(0) : tpm.nv.nvIndices.maxCounter;
      writeU64(tpm, ix, v + 1n);
      return {};
    },
  }),
  command({
    cc: CC.NV_Extend,
    name: 'NV_Extend',
    nv: true,
    handles: authAndIndex,
    params: { data: maxNvBuffer },
    response: {},
    handler: ({ tpm, handles }, { data }) => {
      const ix = writable(tpm, handles);
      if (nvType(ix.attributes) !== NT.EXTEND) throw TpmError.handle(RC.ATTRIBUTES, 2);
      const old = has(ix.attributes, A.WRITTEN) ? ix.data : Buffer.alloc(ix.dataSize);
      writeData(tpm, ix, 0, digest(ix.nameAlg, old, data));
      return {};
    },
  }),
  command({
    cc: CC.NV_SetBits,
    name: 'NV_SetBits',
    nv: true,
    handles: authAndIndex,
    params: { bits: u64 },
    response: {},
    handler: ({ tpm, handles }, { bits }) => {
      const ix = writable(tpm, handles);
      if (nvType(ix.attributes) !== NT.BITS) throw TpmError.handle(RC.ATTRIBUTES, 2);
      const old = has(ix.attributes, A.WRITTEN) ? ix.data.readBigUInt64BE(0) : 0n;
      writeU64(tpm, ix, old | bits);
      return {};
    },
  }),
  command({
    cc: CC.NV_WriteLock,
    name: 'NV_WriteLock',
    nv: true,
    handles: authAndIndex,
    params: {},
    response: {},
    handler: ({ tpm, handles }) => {
      const ix = indexAt(tpm, handles[1]!, 2);
      const rc = writeAccess(handles[0]!, ix);
      // Locking what is already locked succeeds.
      if (rc === RC.NV_LOCKED) return {};
      check(rc);
      if (!has(ix.attributes, A.WRITEDEFINE | A.WRITE_STCLEAR)) throw TpmError.handle(RC.ATTRIBUTES, 2);
      ix.attributes = set(ix.attributes, A.WRITELOCKED);
      tpm.markNvDirty();
      return {};
    },
  }),
  command({
    cc: CC.NV_GlobalWriteLock,
    name: 'NV_GlobalWriteLock',
    nv: true,
    handles: [{ name: 'authHandle', type: rhProvision, auth: 'user' }],
    params: {},
    response: {},
    handler: ({ tpm }) => {
      // Locks the indices with GLOBALLOCK that exist now; the locks end at the next TPM Reset or Restart.
      for (const ix of tpm.nv.nvIndices.values()) {
        if (has(ix.attributes, A.GLOBALLOCK) && !has(ix.attributes, A.WRITELOCKED)) {
          ix.attributes = set(ix.attributes, A.WRITELOCKED);
          tpm.markNvDirty();
        }
      }
      return {};
    },
  }),
  command({
    cc: CC.NV_Read,
    name: 'NV_Read',
    handles: authAndIndex,
    params: { size: u16, offset: u16 },
    response: { data: maxNvBuffer },
    handler: ({ tpm, handles }, { size, offset }) => {
      const ix = indexAt(tpm, handles[1]!, 2);
      check(readAccess(handles[0]!, ix));
      if (size > MAX_NV_BUFFER_SIZE) throw TpmError.parameter(RC.VALUE, 1);
      if (offset > ix.dataSize) throw TpmError.parameter(RC.VALUE, 2);
      if (size > ix.dataSize - offset) throw new TpmError(RC.NV_RANGE);
      return { data: Buffer.from(ix.data.subarray(offset, offset + size)) };
    },
  }),
  command({
    cc: CC.NV_ReadLock,
    name: 'NV_ReadLock',
    nv: true,
    handles: authAndIndex,
    params: {},
    response: {},
    handler: ({ tpm, handles }) => {
      const ix = indexAt(tpm, handles[1]!, 2);
      const rc = readAccess(handles[0]!, ix);
      if (rc === RC.NV_AUTHORIZATION) throw new TpmError(rc);
      // Already read-locked: nothing to do. An index never written may still be read-locked.
      if (rc === RC.NV_LOCKED) return {};
      if (!has(ix.attributes, A.READ_STCLEAR)) throw TpmError.handle(RC.ATTRIBUTES, 2);
      ix.attributes = set(ix.attributes, A.READLOCKED);
      tpm.markNvDirty();
      return {};
    },
  }),
  command({
    cc: CC.NV_ChangeAuth,
    name: 'NV_ChangeAuth',
    nv: true,
    handles: [{ name: 'nvIndex', type: nvIndexHandle, auth: 'admin' }],
    params: { newAuth: authBuf },
    response: {},
    handler: ({ tpm, handles }, { newAuth }) => {
      const ix = indexAt(tpm, handles[0]!, 1);
      const auth = trimAuth(newAuth);
      if (auth.length > digestSize(ix.nameAlg)) throw TpmError.parameter(RC.SIZE, 1);
      ix.auth = Buffer.from(auth);
      tpm.markNvDirty();
      return {};
    },
  }),
];

