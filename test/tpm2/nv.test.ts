/**
 * NV storage: NV_DefineSpace, NV_UndefineSpace(Special), NV_ReadPublic, NV_Write, NV_Read,
 * NV_Increment, NV_Extend, NV_SetBits, the locks, NV_ChangeAuth, and the TPM Reset / Restart
 * effects of the STCLEAR and ORDERLY attributes, each with the exact response code Part 3 gives.
 * Names, extend digests and HMACs are computed independently with node:crypto.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ALG, CAP, CC, HT, PT, RH, SESSION_ATTR, SU } from '../../src/tpm/tpm2/constants.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { MemoryStateStore } from '../../src/tpm/tpm2/state/store.ts';
import { NV_ATTR, NV_ATTR_RESERVED, nvPublic2b, maxNvBuffer, type NvPublic } from '../../src/tpm/tpm2/types/nv.ts';
import { nvIndexAccessible, nvOnStartupClear } from '../../src/tpm/tpm2/commands/nv.ts';
import { MAX_NV_INDICES } from '../../src/tpm/tpm2/state/nv-indices.ts';
import { sized, u64 } from '../../src/tpm/wire/codec.ts';
import {
  buildCommand,
  enc,
  getCapability,
  params,
  parse,
  responseParams,
  shutdown,
  startup,
  tpm2b,
  u16b,
  u32b,
  type Response,
  type SessionSpec,
} from '../helpers/tpm2-commands.ts';
import { H, HMAC, fails, newEngine, ok, startedEngine } from '../helpers/tpm2-engine.ts';

const RC = {
  SUCCESS: 0x000,
  NV_RANGE: 0x146,
  NV_LOCKED: 0x148,
  NV_AUTHORIZATION: 0x149,
  NV_UNINITIALIZED: 0x14a,
  NV_SPACE: 0x14b,
  NV_DEFINED: 0x14c,
  AUTH_TYPE: 0x124,
  AUTH_UNAVAILABLE: 0x12f,
  ATTRIBUTES: 0x082,
  ATTRIBUTES_H1: 0x182,
  ATTRIBUTES_H2: 0x282,
  ATTRIBUTES_P2: 0x2c2,
  HANDLE_H1: 0x18b,
  HANDLE_H2: 0x28b,
  HIERARCHY_H1: 0x185,
  VALUE_H1: 0x184,
  VALUE_P1: 0x1c4,
  VALUE_P2: 0x2c4,
  HASH_P2: 0x2c3,
  SIZE_P1: 0x1d5,
  SIZE_P2: 0x2d5,
  RESERVED_BITS_P2: 0x2e1,
  AUTH_FAIL_S1: 0x98e,
  BAD_AUTH_S1: 0x9a2,
  POLICY_FAIL_S1: 0x99d,
};

const A = NV_ATTR;
const NT_COUNTER = 0x1 << 4;
const NT_BITS = 0x2 << 4;
const NT_EXTEND = 0x4 << 4;
const NT_PIN_FAIL = 0x8 << 4;
const NT_PIN_PASS = 0x9 << 4;
const OWNER_RW = A.OWNERWRITE | A.OWNERREAD;
const AUTH_RW = A.AUTHWRITE | A.AUTHREAD;
const PP_RW = A.PPWRITE | A.PPREAD;
const IX = 0x01500000;
const u = (a: number) => a >>> 0;

// ---------------------------------------------------------------------------------------------
// Command builders

type Auth = string | SessionSpec;
const pw = (p = ''): SessionSpec => ({ handle: RH.RS_PW, password: p, attributes: SESSION_ATTR.continueSession });
const sess = (a: Auth): SessionSpec => (typeof a === 'string' ? pw(a) : a);

function pub(nvIndex: number, attributes: number, dataSize = 32, opts: { nameAlg?: number; authPolicy?: Buffer } = {}): NvPublic {
  return { nvIndex, nameAlg: opts.nameAlg ?? ALG.SHA256, attributes: u(attributes), authPolicy: opts.authPolicy ?? Buffer.alloc(0), dataSize };
}

const defineSpace = (p: NvPublic | Buffer, indexAuth: string | Buffer = '', authHandle: number = RH.OWNER, auth: Auth = '') =>
  buildCommand({
    cc: CC.NV_DefineSpace,
    handles: [authHandle],
    sessions: [sess(auth)],
    params: params(tpm2b(indexAuth), Buffer.isBuffer(p) ? p : enc(nvPublic2b, p)),
  });
const undefineSpace = (index: number, authHandle: number = RH.OWNER, auth: Auth = '') =>
  buildCommand({ cc: CC.NV_UndefineSpace, handles: [authHandle, index], sessions: [sess(auth)] });
const undefineSpaceSpecial = (index: number, indexAuth: Auth, platformAuth: Auth = '') =>
  buildCommand({ cc: CC.NV_UndefineSpaceSpecial, handles: [index, RH.PLATFORM], sessions: [sess(indexAuth), sess(platformAuth)] });
const readPublic = (index: number) => buildCommand({ cc: CC.NV_ReadPublic, handles: [index] });
const nvWrite = (authHandle: number, index: number, data: Buffer | string, offset = 0, auth: Auth = '') =>
  buildCommand({ cc: CC.NV_Write, handles: [authHandle, index], sessions: [sess(auth)], params: params(tpm2b(data), u16b(offset)) });
const nvRead = (authHandle: number, index: number, size: number, offset = 0, auth: Auth = '') =>
  buildCommand({ cc: CC.NV_Read, handles: [authHandle, index], sessions: [sess(auth)], params: params(u16b(size), u16b(offset)) });
const nvIncrement = (authHandle: number, index: number, auth: Auth = '') =>
  buildCommand({ cc: CC.NV_Increment, handles: [authHandle, index], sessions: [sess(auth)] });
const nvExtend = (authHandle: number, index: number, data: Buffer | string, auth: Auth = '') =>
  buildCommand({ cc: CC.NV_Extend, handles: [authHandle, index], sessions: [sess(auth)], params: tpm2b(data) });
const nvSetBits = (authHandle: number, index: number, bits: bigint, auth: Auth = '') =>
  buildCommand({ cc: CC.NV_SetBits, handles: [authHandle, index], sessions: [sess(auth)], params: enc(u64, bits) });
const nvWriteLock = (authHandle: number, index: number, auth: Auth = '') =>
  buildCommand({ cc: CC.NV_WriteLock, handles: [authHandle, index], sessions: [sess(auth)] });
const nvReadLock = (authHandle: number, index: number, auth: Auth = '') =>
  buildCommand({ cc: CC.NV_ReadLock, handles: [authHandle, index], sessions: [sess(auth)] });
const nvGlobalWriteLock = (authHandle: number = RH.OWNER, auth: Auth = '') =>
  buildCommand({ cc: CC.NV_GlobalWriteLock, handles: [authHandle], sessions: [sess(auth)] });
const nvChangeAuth = (index: number, newAuth: string | Buffer, auth: Auth) =>
  buildCommand({ cc: CC.NV_ChangeAuth, handles: [index], sessions: [sess(auth)], params: tpm2b(newAuth) });

const parseReadPublic = (r: Response) => responseParams(r, { nvPublic: nvPublic2b, nvName: sized(66) });
const parseRead = (r: Response) => responseParams(r, { data: maxNvBuffer }).data;

function define(tpm: Tpm2Engine, p: NvPublic, indexAuth = '', authHandle: number = RH.OWNER): void {
  ok(tpm, defineSpace(p, indexAuth, authHandle));
}

function publicOf(tpm: Tpm2Engine, index: number) {
  return parseReadPublic(ok(tpm, readPublic(index)));
}

function attributesOf(tpm: Tpm2Engine, index: number): number {
  return publicOf(tpm, index).nvPublic.attributes;
}

function readAll(tpm: Tpm2Engine, index: number, size: number, authHandle: number = RH.OWNER, auth: Auth = ''): Buffer {
  return parseRead(ok(tpm, nvRead(authHandle, index, size, 0, auth)));
}

function counterValue(tpm: Tpm2Engine, index: number, authHandle: number = RH.OWNER): bigint {
  return readAll(tpm, index, 8, authHandle).readBigUInt64BE(0);
}

/** The Name of an index computed independently: nameAlg || H(TPMS_NV_PUBLIC). */
function expectedName(p: NvPublic): Buffer {
  const body = Buffer.concat([u32b(p.nvIndex), u16b(p.nameAlg), u32b(p.attributes), tpm2b(p.authPolicy), u16b(p.dataSize)]);
  return Buffer.concat([u16b(p.nameAlg), H(p.nameAlg, body)]);
}

/**
 * Shutdown (unless power is lost), _TPM_Init and Startup, then the NV startup effects. Calling
 * nvOnStartupClear here stands in for the engine's own call (it is idempotent, so the test holds
 * once Tpm2Engine.startup makes the call itself).
 */
function reboot(tpm: Tpm2Engine, how: 'reset' | 'restart' | 'resume' | 'power-loss'): void {
  if (how === 'reset') ok(tpm, shutdown(SU.CLEAR));
  if (how === 'restart' || how === 'resume') ok(tpm, shutdown(SU.STATE));
  tpm.powerOn();
  const previous = tpm.nv.shutdown;
  ok(tpm, startup(how === 'resume' ? SU.STATE : SU.CLEAR));
  if (how !== 'resume') nvOnStartupClear(tpm, previous);
  tpm.commitNvIfDirty();
}

// ---------------------------------------------------------------------------------------------
// Sessions

function startSession(tpm: Tpm2Engine, type: 0 | 1, authHash: number = ALG.SHA256): { handle: number; nonceTPM: Buffer; authHash: number } {
  const r = ok(
    tpm,
    buildCommand({
      cc: CC.StartAuthSession,
      handles: [RH.NULL, RH.NULL],
      params: params(tpm2b(Buffer.alloc(16, 0x11)), tpm2b(''), Buffer.from([type]), u16b(ALG.NULL), u16b(authHash)),
    }),
  );
  const rd = r.reader();
  return { handle: r.handle!, nonceTPM: Buffer.from(rd.bytes(rd.u16())), authHash };
}

/** H(0…0 || TPM_CC_PolicyCommandCode || cc): the policy that allows exactly one command (ADMIN role). */
function commandCodePolicy(cc: number, alg: number = ALG.SHA256): Buffer {
  const size = alg === ALG.SHA1 ? 20 : alg === ALG.SHA384 ? 48 : alg === ALG.SHA512 ? 64 : 32;
  return H(alg, Buffer.alloc(size), u32b(CC.PolicyCommandCode), u32b(cc));
}

/**
 * A policy session that has run TPM2_PolicyCommandCode(cc): what the ADMIN role of an index
 * needs (NV_ChangeAuth, NV_UndefineSpaceSpecial).
 */
function commandCodeSession(tpm: Tpm2Engine, cc: number, alg: number = ALG.SHA256): SessionSpec {
  const s = startSession(tpm, 1, alg);
  ok(tpm, buildCommand({ cc: CC.PolicyCommandCode, handles: [s.handle], params: u32b(cc) }));
  return { handle: s.handle, nonce: Buffer.alloc(16, 0x55), attributes: SESSION_ATTR.continueSession, password: '' };
}

/** A policy session whose policyDigest is still all zeros (no policy commands run). */
function policySession(tpm: Tpm2Engine): SessionSpec {
  const s = startSession(tpm, 1);
  return { handle: s.handle, nonce: Buffer.alloc(16, 0x33), attributes: SESSION_ATTR.continueSession, password: '' };
}
const ZERO_POLICY = Buffer.alloc(32);

/** An unbound, unsalted HMAC session's authorization for one command (Part 1 §19.6). */
function hmacAuth(
  s: { handle: number; nonceTPM: Buffer; authHash: number },
  cc: number,
  names: Buffer[],
  cpParams: Buffer,
  authValue: string,
): SessionSpec {
  const nonceCaller = Buffer.alloc(32, 0x44);
  const attributes = SESSION_ATTR.continueSession;
  const cpHash = H(s.authHash, u32b(cc), ...names, cpParams);
  const mac = HMAC(s.authHash, Buffer.from(authValue), cpHash, nonceCaller, s.nonceTPM, Buffer.from([attributes]));
  return { handle: s.handle, nonce: nonceCaller, attributes, password: mac };
}

// ---------------------------------------------------------------------------------------------

describe('TPM2_NV_DefineSpace and TPM2_NV_ReadPublic', () => {
  test('an owner-defined index reads back its public area, and its Name is nameAlg || H(TPMS_NV_PUBLIC)', () => {
    const tpm = startedEngine();
    const p = pub(IX, OWNER_RW | AUTH_RW, 64, { authPolicy: Buffer.alloc(32, 7) });
    define(tpm, p, 'secret');
    const out = publicOf(tpm, IX);
    assert.deepEqual(out.nvPublic, p);
    assert.deepEqual(out.nvName, expectedName(p));
    assert.deepEqual(tpm.nameOf(IX), expectedName(p));
  });

  test('SHA-1 and SHA-384 name algorithms give names of their own digest size', () => {
    const tpm = startedEngine();
    for (const [i, alg] of [ALG.SHA1, ALG.SHA384].entries()) {
      const p = pub(IX + i, OWNER_RW, 8, { nameAlg: alg });
      define(tpm, p);
      assert.deepEqual(publicOf(tpm, IX + i).nvName, expectedName(p));
    }
  });

  test('defining an index that exists is TPM_RC_NV_DEFINED', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW));
    fails(tpm, defineSpace(pub(IX, OWNER_RW, 8)), RC.NV_DEFINED);
  });

  test('the platform defines PLATFORMCREATE indices; the creator mismatch is TPM_RC_ATTRIBUTES on authHandle', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, PP_RW | A.PLATFORMCREATE), '', RH.PLATFORM);
    fails(tpm, defineSpace(pub(IX + 1, OWNER_RW | A.PLATFORMCREATE)), RC.ATTRIBUTES_H1);
    fails(tpm, defineSpace(pub(IX + 2, PP_RW), '', RH.PLATFORM), RC.ATTRIBUTES_H1);
  });

  test('with phEnableNV CLEAR the platform may not define: TPM_RC_HIERARCHY on authHandle', () => {
    const tpm = startedEngine();
    tpm.enables.phNV = false;
    fails(tpm, defineSpace(pub(IX, PP_RW | A.PLATFORMCREATE), '', RH.PLATFORM), RC.HIERARCHY_H1);
  });

  test('an authPolicy not of the nameAlg digest size is TPM_RC_SIZE on publicInfo', () => {
    const tpm = startedEngine();
    fails(tpm, defineSpace(pub(IX, OWNER_RW, 8, { authPolicy: Buffer.alloc(20) })), RC.SIZE_P2);
  });

  test('an auth longer than the nameAlg digest is TPM_RC_SIZE on auth; trailing zeros do not count', () => {
    const tpm = startedEngine();
    fails(tpm, defineSpace(pub(IX, OWNER_RW, 8, { nameAlg: ALG.SHA1 }), Buffer.alloc(21, 1)), RC.SIZE_P1);
    define(tpm, pub(IX, OWNER_RW | AUTH_RW, 8, { nameAlg: ALG.SHA1 }), '');
    ok(tpm, defineSpace(pub(IX + 1, OWNER_RW | AUTH_RW, 8, { nameAlg: ALG.SHA1 }), Buffer.concat([Buffer.alloc(20, 1), Buffer.alloc(12)])));
    // The stored authValue is the trimmed one: the 20-byte password authorizes.
    ok(tpm, nvWrite(IX + 1, IX + 1, 'x', 0, Buffer.alloc(20, 1).toString('latin1')));
  });

  test('index types Part 2 leaves unassigned are TPM_RC_ATTRIBUTES', () => {
    const tpm = startedEngine();
    for (const nt of [0x3 << 4, 0x5 << 4, 0x6 << 4, 0x7 << 4, 0xf << 4]) {
      fails(tpm, defineSpace(pub(IX, OWNER_RW | nt, 8)), RC.ATTRIBUTES_P2);
    }
  });

  test('dataSize must fit the type: ordinary ≤ 2048, counter and bits 8, extend the nameAlg digest size', () => {
    const tpm = startedEngine();
    fails(tpm, defineSpace(pub(IX, OWNER_RW, 2049)), RC.SIZE_P2);
    fails(tpm, defineSpace(pub(IX, OWNER_RW | NT_COUNTER, 4)), RC.SIZE_P2);
    fails(tpm, defineSpace(pub(IX, OWNER_RW | NT_BITS, 16)), RC.SIZE_P2);
    fails(tpm, defineSpace(pub(IX, OWNER_RW | NT_EXTEND, 20)), RC.SIZE_P2);
    define(tpm, pub(IX, OWNER_RW, 2048));
    define(tpm, pub(IX + 1, OWNER_RW | NT_COUNTER, 8));
    define(tpm, pub(IX + 2, OWNER_RW | NT_BITS, 8));
    define(tpm, pub(IX + 3, OWNER_RW | NT_EXTEND, 48, { nameAlg: ALG.SHA384 }));
    define(tpm, pub(IX + 4, OWNER_RW, 0));
  });

  test('a counter with CLEAR_STCLEAR is TPM_RC_ATTRIBUTES', () => {
    const tpm = startedEngine();
    fails(tpm, defineSpace(pub(IX, OWNER_RW | NT_COUNTER | A.CLEAR_STCLEAR, 8)), RC.ATTRIBUTES_P2);
  });

  test('WRITTEN, WRITELOCKED or READLOCKED in the template is TPM_RC_ATTRIBUTES', () => {
    const tpm = startedEngine();
    for (const bit of [A.WRITTEN, A.WRITELOCKED, A.READLOCKED]) fails(tpm, defineSpace(pub(IX, OWNER_RW | bit)), RC.ATTRIBUTES_P2);
  });

  test('an index with no way to read or no way to write is TPM_RC_ATTRIBUTES', () => {
    const tpm = startedEngine();
    fails(tpm, defineSpace(pub(IX, A.OWNERWRITE | A.AUTHWRITE)), RC.ATTRIBUTES_P2);
    fails(tpm, defineSpace(pub(IX, A.OWNERREAD | A.POLICYREAD)), RC.ATTRIBUTES_P2);
    for (const r of [A.OWNERREAD, A.PPREAD, A.AUTHREAD, A.POLICYREAD].entries()) {
      for (const w of [A.OWNERWRITE, A.PPWRITE, A.AUTHWRITE, A.POLICYWRITE]) {
        const h = IX + 0x100 + r[0] * 4 + Math.log2(w);
        define(tpm, pub(h, r[1] | w, 1));
      }
    }
  });

  test('CLEAR_STCLEAR with WRITEDEFINE is TPM_RC_ATTRIBUTES', () => {
    const tpm = startedEngine();
    fails(tpm, defineSpace(pub(IX, OWNER_RW | A.CLEAR_STCLEAR | A.WRITEDEFINE)), RC.ATTRIBUTES_P2);
  });

  test('POLICY_DELETE only on a platform-created index: otherwise TPM_RC_ATTRIBUTES on publicInfo', () => {
    const tpm = startedEngine();
    fails(tpm, defineSpace(pub(IX, OWNER_RW | A.POLICY_DELETE, 8, { authPolicy: ZERO_POLICY })), RC.ATTRIBUTES_P2);
    define(tpm, pub(IX, PP_RW | A.PLATFORMCREATE | A.POLICY_DELETE, 8, { authPolicy: ZERO_POLICY }), '', RH.PLATFORM);
  });

  test('WRITEALL on an index larger than MAX_NV_BUFFER_SIZE is TPM_RC_SIZE', () => {
    const tpm = startedEngine();
    fails(tpm, defineSpace(pub(IX, OWNER_RW | A.WRITEALL, 1025)), RC.SIZE_P2);
    define(tpm, pub(IX, OWNER_RW | A.WRITEALL, 1024));
  });

  test('reserved TPMA_NV bits are TPM_RC_RESERVED_BITS, a non-NV handle TPM_RC_VALUE, an unknown nameAlg TPM_RC_HASH', () => {
    const tpm = startedEngine();
    for (const bit of [1 << 8, 1 << 9, 1 << 20, 1 << 24]) {
      assert.ok(bit & NV_ATTR_RESERVED);
      fails(tpm, defineSpace(pub(IX, OWNER_RW | bit)), RC.RESERVED_BITS_P2);
    }
    fails(tpm, defineSpace(pub(0x81000001, OWNER_RW)), RC.VALUE_P2);
    fails(tpm, defineSpace(pub(IX, OWNER_RW, 8, { nameAlg: ALG.SM3_256 })), RC.HASH_P2);
  });

  test('an empty TPM2B_NV_PUBLIC is TPM_RC_SIZE', () => {
    const tpm = startedEngine();
    fails(tpm, defineSpace(u16b(0)), RC.SIZE_P2);
  });

  test(`more than ${MAX_NV_INDICES} indices, or more than 64 KiB of index data, is TPM_RC_NV_SPACE`, () => {
    const tpm = startedEngine();
    for (let i = 0; i < MAX_NV_INDICES; i++) define(tpm, pub(IX + i, OWNER_RW, 1));
    fails(tpm, defineSpace(pub(IX + MAX_NV_INDICES, OWNER_RW, 1)), RC.NV_SPACE);
    const big = startedEngine();
    for (let i = 0; i < 32; i++) define(big, pub(IX + i, OWNER_RW, 2048));
    fails(big, defineSpace(pub(IX + 32, OWNER_RW, 1)), RC.NV_SPACE);
    ok(big, undefineSpace(IX));
    define(big, pub(IX + 32, OWNER_RW, 2048));
  });

  test('a wrong owner password is TPM_RC_BAD_AUTH (owner auth is not DA-protected)', () => {
    const tpm = startedEngine();
    fails(tpm, defineSpace(pub(IX, OWNER_RW), '', RH.OWNER, 'wrong'), RC.BAD_AUTH_S1);
  });

  test('NV_ReadPublic of an undefined index is TPM_RC_HANDLE', () => {
    const tpm = startedEngine();
    fails(tpm, readPublic(IX), RC.HANDLE_H1);
  });

  test('GetCapability(HANDLES, NV_INDEX) lists the defined indices in order; TPM_PT_HR_NV_INDEX counts them', () => {
    const tpm = startedEngine();
    for (const h of [IX + 5, IX + 1, 0x01c00002]) define(tpm, pub(h, OWNER_RW, 4));
    const caps = parse.getCapability(ok(tpm, getCapability(CAP.HANDLES, HT.NV_INDEX << 24, 64)));
    assert.deepEqual((caps.capabilityData as { items: number[] }).items, [IX + 1, IX + 5, 0x01c00002]);
    const page = parse.getCapability(ok(tpm, getCapability(CAP.HANDLES, IX + 2, 1)));
    assert.deepEqual((page.capabilityData as { items: number[] }).items, [IX + 5]);
    assert.equal(page.moreData, true);
    const props = parse.getCapability(ok(tpm, getCapability(CAP.TPM_PROPERTIES, PT.HR_NV_INDEX, 1)));
    assert.deepEqual((props.capabilityData as { properties: unknown[] }).properties, [{ property: PT.HR_NV_INDEX, value: 3 }]);
    const max = parse.getCapability(ok(tpm, getCapability(CAP.TPM_PROPERTIES, PT.NV_INDEX_MAX, 1)));
    assert.deepEqual((max.capabilityData as { properties: unknown[] }).properties, [{ property: PT.NV_INDEX_MAX, value: 2048 }]);
  });

  test('indices survive a process restart (a new engine over the same store)', () => {
    const store = new MemoryStateStore();
    const a = startedEngine({ store });
    define(a, pub(IX, OWNER_RW | AUTH_RW, 16), 'pw');
    ok(a, nvWrite(IX, IX, 'persisted data!!', 0, 'pw'));
    const b = newEngine({ store });
    ok(b, startup(SU.CLEAR));
    assert.equal(readAll(b, IX, 16).toString(), 'persisted data!!');
    assert.equal(attributesOf(b, IX), u(OWNER_RW | AUTH_RW | A.WRITTEN));
  });
});

describe('TPM2_NV_UndefineSpace and TPM2_NV_UndefineSpaceSpecial', () => {
  test('the owner deletes an owner-created index; it is gone', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW));
    ok(tpm, undefineSpace(IX));
    fails(tpm, readPublic(IX), RC.HANDLE_H1);
    fails(tpm, undefineSpace(IX), RC.HANDLE_H2);
    define(tpm, pub(IX, OWNER_RW));
  });

  test('the owner may not delete a platform-created index (TPM_RC_NV_AUTHORIZATION); the platform may delete either', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, PP_RW | A.PLATFORMCREATE), '', RH.PLATFORM);
    define(tpm, pub(IX + 1, OWNER_RW));
    fails(tpm, undefineSpace(IX), RC.NV_AUTHORIZATION);
    ok(tpm, undefineSpace(IX, RH.PLATFORM));
    ok(tpm, undefineSpace(IX + 1, RH.PLATFORM));
  });

  test('an index with POLICY_DELETE is refused by NV_UndefineSpace with TPM_RC_ATTRIBUTES on nvIndex', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, PP_RW | A.PLATFORMCREATE | A.POLICY_DELETE, 8, { authPolicy: ZERO_POLICY }), '', RH.PLATFORM);
    fails(tpm, undefineSpace(IX, RH.PLATFORM), RC.ATTRIBUTES_H2);
  });

  test('NV_UndefineSpaceSpecial deletes a POLICY_DELETE index with its policy and platform authorization', () => {
    const tpm = startedEngine();
    const authPolicy = commandCodePolicy(CC.NV_UndefineSpaceSpecial);
    define(tpm, pub(IX, PP_RW | A.PLATFORMCREATE | A.POLICY_DELETE, 8, { authPolicy }), '', RH.PLATFORM);
    ok(tpm, undefineSpaceSpecial(IX, commandCodeSession(tpm, CC.NV_UndefineSpaceSpecial)));
    fails(tpm, readPublic(IX), RC.HANDLE_H1);
  });

  test('NV_UndefineSpaceSpecial of an index without POLICY_DELETE is TPM_RC_ATTRIBUTES on nvIndex', () => {
    const tpm = startedEngine();
    const authPolicy = commandCodePolicy(CC.NV_UndefineSpaceSpecial);
    define(tpm, pub(IX, PP_RW | A.PLATFORMCREATE, 8, { authPolicy }), '', RH.PLATFORM);
    fails(tpm, undefineSpaceSpecial(IX, commandCodeSession(tpm, CC.NV_UndefineSpaceSpecial)), RC.ATTRIBUTES_H1);
  });

  test('NV_UndefineSpaceSpecial with a policy session whose digest is not the authPolicy is TPM_RC_POLICY_FAIL', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, PP_RW | A.PLATFORMCREATE | A.POLICY_DELETE, 8, { authPolicy: Buffer.alloc(32, 1) }), '', RH.PLATFORM);
    fails(tpm, undefineSpaceSpecial(IX, policySession(tpm)), RC.POLICY_FAIL_S1);
  });
});

describe('TPM2_NV_Write and TPM2_NV_Read on ordinary indices', () => {
  test('data written reads back; bytes never written read as zero', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW, 16));
    ok(tpm, nvWrite(RH.OWNER, IX, 'abcd', 4));
    assert.deepEqual(readAll(tpm, IX, 16), Buffer.concat([Buffer.alloc(4), Buffer.from('abcd'), Buffer.alloc(8)]));
    ok(tpm, nvWrite(RH.OWNER, IX, 'XY', 5));
    assert.deepEqual(parseRead(ok(tpm, nvRead(RH.OWNER, IX, 4, 4))), Buffer.from('aXYd'));
    assert.deepEqual(parseRead(ok(tpm, nvRead(RH.OWNER, IX, 0, 16))), Buffer.alloc(0));
  });

  test('a 2048-byte index is written and read in MAX_NV_BUFFER_SIZE chunks', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW, 2048));
    const data = Buffer.from(Array.from({ length: 2048 }, (_, i) => (i * 7) & 0xff));
    ok(tpm, nvWrite(RH.OWNER, IX, data.subarray(0, 1024), 0));
    ok(tpm, nvWrite(RH.OWNER, IX, data.subarray(1024), 1024));
    const back = Buffer.concat([parseRead(ok(tpm, nvRead(RH.OWNER, IX, 1024, 0))), parseRead(ok(tpm, nvRead(RH.OWNER, IX, 1024, 1024)))]);
    assert.deepEqual(back, data);
  });

  test('reading an index never written is TPM_RC_NV_UNINITIALIZED; a zero-length write makes it written', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW, 8));
    fails(tpm, nvRead(RH.OWNER, IX, 8), RC.NV_UNINITIALIZED);
    ok(tpm, nvWrite(RH.OWNER, IX, ''));
    assert.deepEqual(readAll(tpm, IX, 8), Buffer.alloc(8));
    assert.ok(attributesOf(tpm, IX) & A.WRITTEN);
  });

  test('the first write sets WRITTEN and so changes the Name', () => {
    const tpm = startedEngine();
    const p = pub(IX, OWNER_RW, 8);
    define(tpm, p);
    const before = publicOf(tpm, IX).nvName;
    ok(tpm, nvWrite(RH.OWNER, IX, 'x'));
    const after = publicOf(tpm, IX);
    assert.notDeepEqual(after.nvName, before);
    assert.deepEqual(after.nvName, expectedName({ ...p, attributes: u(p.attributes | A.WRITTEN) }));
    assert.deepEqual(tpm.nameOf(IX), after.nvName);
  });

  test('an offset past the end is TPM_RC_VALUE; data past the end is TPM_RC_NV_RANGE', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW, 8));
    fails(tpm, nvWrite(RH.OWNER, IX, '', 9), RC.VALUE_P2);
    fails(tpm, nvWrite(RH.OWNER, IX, 'abc', 6), RC.NV_RANGE);
    ok(tpm, nvWrite(RH.OWNER, IX, 'ab', 6));
    ok(tpm, nvWrite(RH.OWNER, IX, '', 8));
    fails(tpm, nvRead(RH.OWNER, IX, 1025), RC.VALUE_P1);
    fails(tpm, nvRead(RH.OWNER, IX, 0, 9), RC.VALUE_P2);
    fails(tpm, nvRead(RH.OWNER, IX, 3, 6), RC.NV_RANGE);
  });

  test('data above MAX_NV_BUFFER_SIZE is TPM_RC_SIZE on the data parameter', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW, 2048));
    fails(tpm, nvWrite(RH.OWNER, IX, Buffer.alloc(1025)), RC.SIZE_P1);
  });

  test('WRITEALL refuses a partial write with TPM_RC_NV_RANGE and takes a full one', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | A.WRITEALL, 8));
    fails(tpm, nvWrite(RH.OWNER, IX, 'abcdefg'), RC.NV_RANGE);
    fails(tpm, nvWrite(RH.OWNER, IX, ''), RC.NV_RANGE);
    ok(tpm, nvWrite(RH.OWNER, IX, 'abcdefgh'));
    assert.equal(readAll(tpm, IX, 8).toString(), 'abcdefgh');
  });

  test('NV_Write to a counter, bits or extend index is TPM_RC_ATTRIBUTES', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | NT_COUNTER, 8));
    define(tpm, pub(IX + 1, OWNER_RW | NT_BITS, 8));
    define(tpm, pub(IX + 2, OWNER_RW | NT_EXTEND, 32));
    for (const h of [IX, IX + 1, IX + 2]) fails(tpm, nvWrite(RH.OWNER, h, 'x'), RC.ATTRIBUTES);
  });

  test('the owner writes only with OWNERWRITE and reads only with OWNERREAD, else TPM_RC_NV_AUTHORIZATION', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, A.OWNERREAD | A.AUTHWRITE, 8));
    define(tpm, pub(IX + 1, A.OWNERWRITE | A.AUTHREAD, 8));
    fails(tpm, nvWrite(RH.OWNER, IX, 'x'), RC.NV_AUTHORIZATION);
    ok(tpm, nvWrite(IX, IX, 'x'));
    ok(tpm, nvRead(RH.OWNER, IX, 1));
    ok(tpm, nvWrite(RH.OWNER, IX + 1, 'y'));
    fails(tpm, nvRead(RH.OWNER, IX + 1, 1), RC.NV_AUTHORIZATION);
    ok(tpm, nvRead(IX + 1, IX + 1, 1));
  });

  test('the platform writes only with PPWRITE and reads only with PPREAD, else TPM_RC_NV_AUTHORIZATION', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW, 8));
    define(tpm, pub(IX + 1, PP_RW | A.PLATFORMCREATE, 8), '', RH.PLATFORM);
    fails(tpm, nvWrite(RH.PLATFORM, IX, 'x'), RC.NV_AUTHORIZATION);
    ok(tpm, nvWrite(RH.OWNER, IX, 'x'));
    fails(tpm, nvRead(RH.PLATFORM, IX, 1), RC.NV_AUTHORIZATION);
    ok(tpm, nvWrite(RH.PLATFORM, IX + 1, 'p'));
    assert.equal(readAll(tpm, IX + 1, 1, RH.PLATFORM).toString(), 'p');
    fails(tpm, nvWrite(RH.OWNER, IX + 1, 'x'), RC.NV_AUTHORIZATION);
  });

  test('an index authorizes itself with its authValue (AUTHWRITE / AUTHREAD)', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, AUTH_RW, 8), 'ixpass');
    ok(tpm, nvWrite(IX, IX, 'hello', 0, 'ixpass'));
    assert.equal(readAll(tpm, IX, 5, IX, 'ixpass').toString(), 'hello');
    fails(tpm, nvRead(RH.OWNER, IX, 5), RC.NV_AUTHORIZATION);
  });

  test('an index authValue serves writes only with AUTHWRITE and reads only with AUTHREAD: TPM_RC_AUTH_UNAVAILABLE', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, A.OWNERWRITE | A.AUTHREAD, 8));
    fails(tpm, nvWrite(IX, IX, 'x'), RC.AUTH_UNAVAILABLE);
    define(tpm, pub(IX + 1, A.AUTHWRITE | A.OWNERREAD, 8));
    ok(tpm, nvWrite(IX + 1, IX + 1, 'x'));
    fails(tpm, nvRead(IX + 1, IX + 1, 1), RC.AUTH_UNAVAILABLE);
  });

  test('a password may not use an index whose only write path is its policy: TPM_RC_AUTH_UNAVAILABLE', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, A.POLICYWRITE | A.OWNERREAD, 8, { authPolicy: ZERO_POLICY }));
    fails(tpm, nvWrite(IX, IX, 'x'), RC.AUTH_UNAVAILABLE);
    ok(tpm, nvWrite(IX, IX, 'x', 0, policySession(tpm)));
    fails(tpm, nvRead(IX, IX, 1, 0, policySession(tpm)), RC.AUTH_UNAVAILABLE);
  });

  test('one index may not authorize access to another: TPM_RC_NV_AUTHORIZATION', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, AUTH_RW | OWNER_RW, 8));
    define(tpm, pub(IX + 1, AUTH_RW, 8));
    fails(tpm, nvWrite(IX + 1, IX, 'x'), RC.NV_AUTHORIZATION);
    ok(tpm, nvWrite(RH.OWNER, IX, 'x'));
    fails(tpm, nvRead(IX + 1, IX, 1), RC.NV_AUTHORIZATION);
  });

  test('a wrong index password is TPM_RC_AUTH_FAIL (DA-protected) or TPM_RC_BAD_AUTH with NO_DA', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, AUTH_RW, 8), 'right');
    define(tpm, pub(IX + 1, AUTH_RW | A.NO_DA, 8), 'right');
    fails(tpm, nvWrite(IX, IX, 'x', 0, 'wrong'), RC.AUTH_FAIL_S1);
    assert.equal(tpm.lockout.failedTries, 1);
    fails(tpm, nvWrite(IX + 1, IX + 1, 'x', 0, 'wrong'), RC.BAD_AUTH_S1);
    assert.equal(tpm.lockout.failedTries, 1);
  });

  test('an authHandle that is not owner, platform or an NV index is TPM_RC_VALUE; an undefined index TPM_RC_HANDLE', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW, 8));
    fails(tpm, nvWrite(RH.ENDORSEMENT, IX, 'x'), RC.VALUE_H1);
    fails(tpm, nvRead(RH.LOCKOUT, IX, 1), RC.VALUE_H1);
    fails(tpm, nvWrite(RH.OWNER, IX + 1, 'x'), RC.HANDLE_H2);
    fails(tpm, nvRead(RH.OWNER, 0x81000000, 1), 0x284);
  });

  test('an HMAC session authorizes with the index authValue, over the Names as they are at the time', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, AUTH_RW, 8), 'hmacpw');
    const s = startSession(tpm, 0);
    let name = publicOf(tpm, IX).nvName;
    const p1 = params(tpm2b('abc'), u16b(0));
    const r1 = ok(tpm, buildCommand({ cc: CC.NV_Write, handles: [IX, IX], sessions: [hmacAuth(s, CC.NV_Write, [name, name], p1, 'hmacpw')], params: p1 }));
    s.nonceTPM = r1.sessions[0]!.nonce;
    // WRITTEN is now SET: the Name changed, and the next cpHash must use the new one.
    const stale = name;
    name = publicOf(tpm, IX).nvName;
    assert.notDeepEqual(name, stale);
    const p2 = params(u16b(3), u16b(0));
    fails(tpm, buildCommand({ cc: CC.NV_Read, handles: [IX, IX], sessions: [hmacAuth(s, CC.NV_Read, [stale, stale], p2, 'hmacpw')], params: p2 }), RC.AUTH_FAIL_S1);
    const r2 = ok(tpm, buildCommand({ cc: CC.NV_Read, handles: [IX, IX], sessions: [hmacAuth(s, CC.NV_Read, [name, name], p2, 'hmacpw')], params: p2 }));
    assert.equal(parseRead(r2).toString(), 'abc');
  });

  test('a policy session satisfying authPolicy authorizes a POLICYWRITE / POLICYREAD index', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, A.POLICYWRITE | A.POLICYREAD, 8, { authPolicy: ZERO_POLICY }));
    ok(tpm, nvWrite(IX, IX, 'policy', 0, policySession(tpm)));
    assert.equal(parseRead(ok(tpm, nvRead(IX, IX, 6, 0, policySession(tpm)))).toString(), 'policy');
  });

  test('an owner-created index vanishes while shEnable is CLEAR, a platform-created one while phEnableNV is CLEAR', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | AUTH_RW, 8));
    define(tpm, pub(IX + 1, PP_RW | AUTH_RW | A.PLATFORMCREATE, 8), '', RH.PLATFORM);
    tpm.enables.sh = false;
    assert.equal(nvIndexAccessible(tpm, IX), 0x08b);
    assert.equal(nvIndexAccessible(tpm, IX + 1), 0);
    fails(tpm, readPublic(IX), RC.HANDLE_H1);
    fails(tpm, nvWrite(IX, IX, 'x'), RC.HANDLE_H1);
    ok(tpm, readPublic(IX + 1));
    tpm.enables.sh = true;
    tpm.enables.phNV = false;
    fails(tpm, readPublic(IX + 1), RC.HANDLE_H1);
    ok(tpm, readPublic(IX));
  });
});

describe('TPM2_NV_Increment', () => {
  test('a counter starts at 1 on a fresh TPM and counts up; NV_Read returns it big-endian', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | NT_COUNTER, 8));
    fails(tpm, nvRead(RH.OWNER, IX, 8), RC.NV_UNINITIALIZED);
    ok(tpm, nvIncrement(RH.OWNER, IX));
    assert.deepEqual(readAll(tpm, IX, 8), Buffer.from([0, 0, 0, 0, 0, 0, 0, 1]));
    ok(tpm, nvIncrement(RH.OWNER, IX));
    ok(tpm, nvIncrement(RH.OWNER, IX));
    assert.equal(counterValue(tpm, IX), 3n);
  });

  test('a counter defined after a counter is deleted starts above the deleted one, even across a process restart', () => {
    const store = new MemoryStateStore();
    const tpm = startedEngine({ store });
    define(tpm, pub(IX, OWNER_RW | NT_COUNTER, 8));
    for (let i = 0; i < 5; i++) ok(tpm, nvIncrement(RH.OWNER, IX));
    ok(tpm, undefineSpace(IX));
    const again = newEngine({ store });
    ok(again, startup(SU.CLEAR));
    define(again, pub(IX, OWNER_RW | NT_COUNTER, 8));
    ok(again, nvIncrement(RH.OWNER, IX));
    assert.equal(counterValue(again, IX), 6n);
  });

  test('NV_Increment of a non-counter index is TPM_RC_ATTRIBUTES on nvIndex', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW, 8));
    fails(tpm, nvIncrement(RH.OWNER, IX), RC.ATTRIBUTES_H2);
  });

  test('NV_Increment checks write authorization and locks like NV_Write', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, A.OWNERREAD | A.AUTHWRITE | A.WRITE_STCLEAR | NT_COUNTER, 8), 'c');
    fails(tpm, nvIncrement(RH.OWNER, IX), RC.NV_AUTHORIZATION);
    ok(tpm, nvIncrement(IX, IX, 'c'));
    ok(tpm, nvWriteLock(IX, IX, 'c'));
    fails(tpm, nvIncrement(IX, IX, 'c'), RC.NV_LOCKED);
  });
});

describe('TPM2_NV_SetBits', () => {
  test('bits are ORed into the field, which starts at zero', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | NT_BITS, 8));
    ok(tpm, nvSetBits(RH.OWNER, IX, 0x0000_0000_0000_0005n));
    assert.equal(counterValue(tpm, IX), 5n);
    ok(tpm, nvSetBits(RH.OWNER, IX, 0x8000_0000_0000_0002n));
    assert.equal(counterValue(tpm, IX), 0x8000_0000_0000_0007n);
    ok(tpm, nvSetBits(RH.OWNER, IX, 0n));
    assert.equal(counterValue(tpm, IX), 0x8000_0000_0000_0007n);
  });

  test('NV_SetBits of a non-bits index is TPM_RC_ATTRIBUTES on nvIndex', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | NT_COUNTER, 8));
    fails(tpm, nvSetBits(RH.OWNER, IX, 1n), RC.ATTRIBUTES_H2);
  });
});

describe('TPM2_NV_Extend', () => {
  for (const [alg, size] of [
    [ALG.SHA1, 20],
    [ALG.SHA256, 32],
    [ALG.SHA384, 48],
    [ALG.SHA512, 64],
  ] as const) {
    test(`an extend index with nameAlg 0x${alg.toString(16)} holds H(old || data), starting from zeros`, () => {
      const tpm = startedEngine();
      define(tpm, pub(IX, OWNER_RW | NT_EXTEND, size, { nameAlg: alg }));
      ok(tpm, nvExtend(RH.OWNER, IX, 'first'));
      const v1 = H(alg, Buffer.alloc(size), 'first');
      assert.deepEqual(readAll(tpm, IX, size), v1);
      const big = Buffer.alloc(1024, 0xab);
      ok(tpm, nvExtend(RH.OWNER, IX, big));
      assert.deepEqual(readAll(tpm, IX, size), H(alg, v1, big));
    });
  }

  test('NV_Extend of a non-extend index is TPM_RC_ATTRIBUTES on nvIndex', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW, 32));
    fails(tpm, nvExtend(RH.OWNER, IX, 'x'), RC.ATTRIBUTES_H2);
  });
});

describe('TPM2_NV_WriteLock and TPM2_NV_GlobalWriteLock', () => {
  test('WRITE_STCLEAR: the lock blocks writes (TPM_RC_NV_LOCKED), changes the Name, and ends at the next Startup(CLEAR)', () => {
    const tpm = startedEngine();
    const p = pub(IX, OWNER_RW | A.WRITE_STCLEAR, 8);
    define(tpm, p);
    ok(tpm, nvWrite(RH.OWNER, IX, 'a'));
    ok(tpm, nvWriteLock(RH.OWNER, IX));
    const locked = u(p.attributes | A.WRITTEN | A.WRITELOCKED);
    assert.deepEqual(publicOf(tpm, IX).nvName, expectedName({ ...p, attributes: locked }));
    fails(tpm, nvWrite(RH.OWNER, IX, 'b'), RC.NV_LOCKED);
    ok(tpm, nvWriteLock(RH.OWNER, IX));
    assert.equal(readAll(tpm, IX, 1).toString(), 'a');
    reboot(tpm, 'resume');
    fails(tpm, nvWrite(RH.OWNER, IX, 'b'), RC.NV_LOCKED);
    reboot(tpm, 'restart');
    ok(tpm, nvWrite(RH.OWNER, IX, 'b'));
  });

  test('WRITEDEFINE: the lock on a written index outlives TPM Reset; on an unwritten one it does not', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | A.WRITEDEFINE, 8));
    define(tpm, pub(IX + 1, OWNER_RW | A.WRITEDEFINE, 8));
    ok(tpm, nvWrite(RH.OWNER, IX, 'a'));
    ok(tpm, nvWriteLock(RH.OWNER, IX));
    ok(tpm, nvWriteLock(RH.OWNER, IX + 1));
    fails(tpm, nvWrite(RH.OWNER, IX + 1, 'a'), RC.NV_LOCKED);
    reboot(tpm, 'reset');
    reboot(tpm, 'power-loss');
    fails(tpm, nvWrite(RH.OWNER, IX, 'b'), RC.NV_LOCKED);
    ok(tpm, nvWrite(RH.OWNER, IX + 1, 'b'));
  });

  test('an index with neither WRITEDEFINE nor WRITE_STCLEAR cannot be locked: TPM_RC_ATTRIBUTES on nvIndex', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW, 8));
    fails(tpm, nvWriteLock(RH.OWNER, IX), RC.ATTRIBUTES_H2);
  });

  test('NV_WriteLock needs write authorization: TPM_RC_NV_AUTHORIZATION', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, A.OWNERREAD | A.AUTHWRITE | A.WRITE_STCLEAR, 8));
    fails(tpm, nvWriteLock(RH.OWNER, IX), RC.NV_AUTHORIZATION);
    ok(tpm, nvWriteLock(IX, IX));
  });

  test('NV_GlobalWriteLock locks the GLOBALLOCK indices that exist, until the next Startup(CLEAR)', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | A.GLOBALLOCK, 8));
    define(tpm, pub(IX + 1, OWNER_RW, 8));
    ok(tpm, nvGlobalWriteLock());
    define(tpm, pub(IX + 2, OWNER_RW | A.GLOBALLOCK, 8));
    fails(tpm, nvWrite(RH.OWNER, IX, 'x'), RC.NV_LOCKED);
    ok(tpm, nvWrite(RH.OWNER, IX + 1, 'x'));
    ok(tpm, nvWrite(RH.OWNER, IX + 2, 'x'));
    assert.ok(attributesOf(tpm, IX) & A.WRITELOCKED);
    ok(tpm, nvGlobalWriteLock(RH.PLATFORM));
    reboot(tpm, 'reset');
    ok(tpm, nvWrite(RH.OWNER, IX, 'x'));
  });
});

describe('TPM2_NV_ReadLock', () => {
  test('READ_STCLEAR: the lock blocks reads (TPM_RC_NV_LOCKED) until the next Startup(CLEAR), not across Startup(STATE)', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | A.READ_STCLEAR, 8));
    ok(tpm, nvWrite(RH.OWNER, IX, 'r'));
    ok(tpm, nvReadLock(RH.OWNER, IX));
    assert.ok(attributesOf(tpm, IX) & A.READLOCKED);
    fails(tpm, nvRead(RH.OWNER, IX, 1), RC.NV_LOCKED);
    ok(tpm, nvReadLock(RH.OWNER, IX));
    ok(tpm, nvWrite(RH.OWNER, IX, 's'));
    reboot(tpm, 'resume');
    fails(tpm, nvRead(RH.OWNER, IX, 1), RC.NV_LOCKED);
    reboot(tpm, 'reset');
    assert.equal(readAll(tpm, IX, 1).toString(), 's');
  });

  test('an index never written may be read-locked', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | A.READ_STCLEAR, 8));
    ok(tpm, nvReadLock(RH.OWNER, IX));
    ok(tpm, nvWrite(RH.OWNER, IX, 'x'));
    fails(tpm, nvRead(RH.OWNER, IX, 1), RC.NV_LOCKED);
  });

  test('without READ_STCLEAR NV_ReadLock is TPM_RC_ATTRIBUTES; without read authorization TPM_RC_NV_AUTHORIZATION', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW, 8));
    fails(tpm, nvReadLock(RH.OWNER, IX), RC.ATTRIBUTES_H2);
    define(tpm, pub(IX + 1, A.OWNERWRITE | A.AUTHREAD | A.READ_STCLEAR, 8));
    fails(tpm, nvReadLock(RH.OWNER, IX + 1), RC.NV_AUTHORIZATION);
    ok(tpm, nvReadLock(IX + 1, IX + 1));
  });
});

describe('TPM2_NV_ChangeAuth', () => {
  test('a policy session changes the authValue: the old password fails, the new one works', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, AUTH_RW, 8, { authPolicy: commandCodePolicy(CC.NV_ChangeAuth) }), 'old');
    ok(tpm, nvChangeAuth(IX, 'new', commandCodeSession(tpm, CC.NV_ChangeAuth)));
    fails(tpm, nvWrite(IX, IX, 'x', 0, 'old'), RC.AUTH_FAIL_S1);
    ok(tpm, nvWrite(IX, IX, 'x', 0, 'new'));
  });

  test('a newAuth longer than the nameAlg digest is TPM_RC_SIZE; trailing zeros are removed first', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, AUTH_RW, 8, { nameAlg: ALG.SHA1, authPolicy: commandCodePolicy(CC.NV_ChangeAuth, ALG.SHA1) }));
    fails(tpm, nvChangeAuth(IX, Buffer.alloc(21, 1), commandCodeSession(tpm, CC.NV_ChangeAuth, ALG.SHA1)), RC.SIZE_P1);
    ok(tpm, nvChangeAuth(IX, Buffer.concat([Buffer.alloc(20, 2), Buffer.alloc(4)]), commandCodeSession(tpm, CC.NV_ChangeAuth, ALG.SHA1)));
    ok(tpm, nvWrite(IX, IX, 'x', 0, Buffer.alloc(20, 2).toString('latin1')));
  });
  test('NV_ChangeAuth by password is refused: the ADMIN role of an index needs a policy session (TPM_RC_AUTH_TYPE)', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, AUTH_RW, 8), 'pw');
    fails(tpm, nvChangeAuth(IX, 'new', 'pw'), RC.AUTH_TYPE);
  });
});

describe('TPM Reset and TPM Restart effects (nvOnStartupClear)', () => {
  test('CLEAR_STCLEAR: the index is unwritten after Startup(CLEAR), with no old data left; Startup(STATE) keeps it', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | A.CLEAR_STCLEAR, 8));
    ok(tpm, nvWrite(RH.OWNER, IX, 'volatile'));
    reboot(tpm, 'resume');
    assert.equal(readAll(tpm, IX, 8).toString(), 'volatile');
    reboot(tpm, 'restart');
    fails(tpm, nvRead(RH.OWNER, IX, 8), RC.NV_UNINITIALIZED);
    ok(tpm, nvWrite(RH.OWNER, IX, 'v'));
    assert.deepEqual(readAll(tpm, IX, 8), Buffer.concat([Buffer.from('v'), Buffer.alloc(7)]));
  });

  test('CLEAR_STCLEAR extend and bits indices start again from zero', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | A.CLEAR_STCLEAR | NT_EXTEND, 32));
    define(tpm, pub(IX + 1, OWNER_RW | A.CLEAR_STCLEAR | NT_BITS, 8));
    ok(tpm, nvExtend(RH.OWNER, IX, 'a'));
    ok(tpm, nvSetBits(RH.OWNER, IX + 1, 0xf0n));
    reboot(tpm, 'power-loss');
    ok(tpm, nvExtend(RH.OWNER, IX, 'b'));
    ok(tpm, nvSetBits(RH.OWNER, IX + 1, 0x01n));
    assert.deepEqual(readAll(tpm, IX, 32), H(ALG.SHA256, Buffer.alloc(32), 'b'));
    assert.equal(counterValue(tpm, IX + 1), 1n);
  });

  test('ORDERLY non-counter indices are unwritten after TPM Reset but kept by TPM Restart', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | A.ORDERLY, 8));
    ok(tpm, nvWrite(RH.OWNER, IX, 'orderly'));
    reboot(tpm, 'restart');
    assert.equal(readAll(tpm, IX, 7).toString(), 'orderly');
    reboot(tpm, 'reset');
    fails(tpm, nvRead(RH.OWNER, IX, 1), RC.NV_UNINITIALIZED);
  });

  test('an ORDERLY counter keeps its value over orderly shutdowns and jumps past MAX_ORDERLY_COUNT after power loss', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | A.ORDERLY | NT_COUNTER, 8));
    define(tpm, pub(IX + 1, OWNER_RW | NT_COUNTER, 8));
    for (let i = 0; i < 3; i++) ok(tpm, nvIncrement(RH.OWNER, IX));
    ok(tpm, nvIncrement(RH.OWNER, IX + 1));
    reboot(tpm, 'reset');
    assert.equal(counterValue(tpm, IX), 3n);
    reboot(tpm, 'power-loss');
    assert.equal(counterValue(tpm, IX), 0xffn);
    assert.equal(counterValue(tpm, IX + 1), 1n);
    ok(tpm, nvIncrement(RH.OWNER, IX));
    assert.equal(counterValue(tpm, IX), 0x100n);
  });

  test('a counter keeps WRITTEN and its value over TPM Reset', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | NT_COUNTER, 8));
    ok(tpm, nvIncrement(RH.OWNER, IX));
    reboot(tpm, 'power-loss');
    assert.equal(counterValue(tpm, IX), 1n);
  });

  test('nvOnStartupClear is idempotent: a second call changes nothing', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | A.ORDERLY | NT_COUNTER, 8));
    define(tpm, pub(IX + 1, OWNER_RW | A.READ_STCLEAR | A.WRITE_STCLEAR, 8));
    ok(tpm, nvIncrement(RH.OWNER, IX));
    ok(tpm, nvWrite(RH.OWNER, IX + 1, 'x'));
    ok(tpm, nvReadLock(RH.OWNER, IX + 1));
    ok(tpm, nvWriteLock(RH.OWNER, IX + 1));
    tpm.powerOn();
    ok(tpm, startup(SU.CLEAR));
    nvOnStartupClear(tpm, 'none');
    const once = tpm.nv.nvIndices.handles().map((h) => ({ ...tpm.nv.nvIndices.get(h)! }));
    nvOnStartupClear(tpm, 'none');
    assert.deepEqual(tpm.nv.nvIndices.handles().map((h) => ({ ...tpm.nv.nvIndices.get(h)! })), once);
    assert.equal(counterValue(tpm, IX), 0xffn);
  });

  test('Tpm2Engine.startup applies the NV startup effects itself', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | A.READ_STCLEAR, 8));
    ok(tpm, nvWrite(RH.OWNER, IX, 'x'));
    ok(tpm, nvReadLock(RH.OWNER, IX));
    tpm.powerOn();
    ok(tpm, startup(SU.CLEAR));
    ok(tpm, nvRead(RH.OWNER, IX, 1));
  });
});

test('every NV command is in the command table with the right handle count and TPMA_CC.nv', () => {
  const tpm = startedEngine();
  const caps = parse.getCapability(ok(tpm, getCapability(CAP.COMMANDS, CC.NV_UndefineSpaceSpecial, 256)));
  const attrs = new Map((caps.capabilityData as { items: number[] }).items.map((a) => [a & 0xffff, a]));
  const expect: [number, number, boolean][] = [
    [CC.NV_UndefineSpaceSpecial, 2, true],
    [CC.NV_UndefineSpace, 2, true],
    [CC.NV_DefineSpace, 1, true],
    [CC.NV_GlobalWriteLock, 1, true],
    [CC.NV_Increment, 2, true],
    [CC.NV_SetBits, 2, true],
    [CC.NV_Extend, 2, true],
    [CC.NV_Write, 2, true],
    [CC.NV_WriteLock, 2, true],
    [CC.NV_ChangeAuth, 1, true],
    [CC.NV_Read, 2, false],
    [CC.NV_ReadLock, 2, true],
    [CC.NV_ReadPublic, 1, false],
  ];
  for (const [cc, handles, nv] of expect) {
    const a = attrs.get(cc);
    assert.ok(a !== undefined, `0x${cc.toString(16)} missing`);
    assert.equal((a >>> 25) & 7, handles, `handles of 0x${cc.toString(16)}`);
    assert.equal(((a >>> 22) & 1) === 1, nv, `nv of 0x${cc.toString(16)}`);
  }
});

describe('PIN indices (TPM_NT_PIN_PASS, TPM_NT_PIN_FAIL)', () => {
  const pins = (count: number, limit: number) => Buffer.concat([u32b(count), u32b(limit)]);
  const counts = (tpm: Tpm2Engine, index: number) => {
    const d = parseRead(ok(tpm, nvRead(RH.OWNER, index, 8)));
    return [d.readUInt32BE(0), d.readUInt32BE(4)];
  };
  const lockoutCounter = (tpm: Tpm2Engine) => {
    const data = parse.getCapability(ok(tpm, getCapability(CAP.TPM_PROPERTIES, PT.LOCKOUT_COUNTER, 1))).capabilityData as { properties: { value: number }[] };
    return data.properties[0]!.value;
  };

  test('definition: 8 bytes; no AUTHWRITE, GLOBALLOCK or WRITEDEFINE; a PIN Fail index must be NO_DA', () => {
    const tpm = startedEngine();
    for (const nt of [NT_PIN_PASS, NT_PIN_FAIL | A.NO_DA]) {
      fails(tpm, defineSpace(pub(IX, OWNER_RW | A.AUTHREAD | nt, 4)), RC.SIZE_P2);
      for (const bad of [A.AUTHWRITE, A.GLOBALLOCK, A.WRITEDEFINE]) fails(tpm, defineSpace(pub(IX, OWNER_RW | A.AUTHREAD | nt | bad, 8)), RC.ATTRIBUTES_P2);
    }
    fails(tpm, defineSpace(pub(IX, OWNER_RW | A.AUTHREAD | NT_PIN_FAIL, 8)), RC.ATTRIBUTES_P2);
    define(tpm, pub(IX, OWNER_RW | A.AUTHREAD | NT_PIN_PASS, 8), 'pin');
    define(tpm, pub(IX + 1, OWNER_RW | A.AUTHREAD | NT_PIN_FAIL | A.NO_DA, 8), 'pin');
    // Counter-type commands do not apply.
    fails(tpm, nvIncrement(RH.OWNER, IX), RC.ATTRIBUTES_H2);
  });

  test('PIN Pass: the PIN serves once written, each use counts, and it stops at pinLimit; wrong PINs and owner reads do not count', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | A.AUTHREAD | NT_PIN_PASS, 8), 'pin');
    fails(tpm, nvRead(IX, IX, 8, 0, 'pin'), RC.AUTH_UNAVAILABLE);
    ok(tpm, nvWrite(RH.OWNER, IX, pins(0, 2)));
    assert.deepEqual(counts(tpm, IX), [0, 2]);
    // The use is counted when the PIN is accepted, before the read.
    assert.deepEqual([...parseRead(ok(tpm, nvRead(IX, IX, 8, 0, 'pin')))], [...pins(1, 2)]);
    fails(tpm, nvRead(IX, IX, 8, 0, 'wrong'), RC.AUTH_FAIL_S1);
    assert.deepEqual(counts(tpm, IX), [1, 2]);
    ok(tpm, nvRead(IX, IX, 8, 0, 'pin'));
    fails(tpm, nvRead(IX, IX, 8, 0, 'pin'), RC.AUTH_UNAVAILABLE);
    assert.deepEqual(counts(tpm, IX), [2, 2]);
    // The owner hands out more uses.
    ok(tpm, nvWrite(RH.OWNER, IX, pins(2, 3)));
    ok(tpm, nvRead(IX, IX, 8, 0, 'pin'));
    assert.deepEqual(counts(tpm, IX), [3, 3]);
  });

  test('PIN Fail: wrong PINs count (TPM_RC_AUTH_FAIL, not the TPM lockout counter), a right one resets the count, and at pinLimit even the right PIN fails', () => {
    const tpm = startedEngine();
    define(tpm, pub(IX, OWNER_RW | A.AUTHREAD | NT_PIN_FAIL | A.NO_DA, 8), 'pin');
    fails(tpm, nvRead(IX, IX, 8, 0, 'pin'), RC.AUTH_UNAVAILABLE);
    ok(tpm, nvWrite(RH.OWNER, IX, pins(0, 2)));
    fails(tpm, nvRead(IX, IX, 8, 0, 'wrong'), RC.AUTH_FAIL_S1);
    assert.deepEqual(counts(tpm, IX), [1, 2]);
    assert.deepEqual([...parseRead(ok(tpm, nvRead(IX, IX, 8, 0, 'pin')))], [...pins(0, 2)]);
    fails(tpm, nvRead(IX, IX, 8, 0, 'wrong'), RC.AUTH_FAIL_S1);
    fails(tpm, nvRead(IX, IX, 8, 0, 'wrong'), RC.AUTH_FAIL_S1);
    fails(tpm, nvRead(IX, IX, 8, 0, 'pin'), RC.AUTH_UNAVAILABLE);
    assert.deepEqual(counts(tpm, IX), [2, 2]);
    assert.equal(lockoutCounter(tpm), 0);
    ok(tpm, nvWrite(RH.OWNER, IX, pins(0, 2)));
    ok(tpm, nvRead(IX, IX, 8, 0, 'pin'));
  });

  test('an HMAC session with the PIN counts like a password, and the count is NV', () => {
    const store = new MemoryStateStore();
    const tpm = startedEngine({ store });
    define(tpm, pub(IX, OWNER_RW | A.AUTHREAD | NT_PIN_PASS, 8), 'pin');
    ok(tpm, nvWrite(RH.OWNER, IX, pins(0, 5)));
    const s = startSession(tpm, 0);
    const name = publicOf(tpm, IX).nvName;
    const p = params(u16b(8), u16b(0));
    const wrong = hmacAuth(s, CC.NV_Read, [name, name], p, 'nip');
    fails(tpm, buildCommand({ cc: CC.NV_Read, handles: [IX, IX], sessions: [wrong], params: p }), RC.AUTH_FAIL_S1);
    ok(tpm, buildCommand({ cc: CC.NV_Read, handles: [IX, IX], sessions: [hmacAuth(s, CC.NV_Read, [name, name], p, 'pin')], params: p }));
    assert.deepEqual(counts(tpm, IX), [1, 5]);
    const again = newEngine({ store });
    ok(again, startup(SU.CLEAR));
    assert.deepEqual(counts(again, IX), [1, 5]);
  });
});
