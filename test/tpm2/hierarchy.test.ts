/**
 * Hierarchy commands (Part 3, clause 24): HierarchyChangeAuth, HierarchyControl,
 * SetPrimaryPolicy, Clear, ClearControl, ChangeEPS and ChangePPS, with exact response codes.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHmac } from 'node:crypto';
import { ALG, CAP, CC, PT, RH, SESSION_ATTR, SU } from '../../src/tpm/tpm2/constants.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import type { TransientObject } from '../../src/tpm/tpm2/state/objects.ts';
import { FileStateStore } from '../../src/tpm/tpm2/state/store.ts';
import { pcrSelectionList } from '../../src/tpm/tpm2/types/pcr.ts';
import { NULL_SCHEME } from '../../src/tpm/tpm2/types/public-parms.ts';
import { OBJECT_ATTR, public2b, sensitiveCreate, type Public } from '../../src/tpm/tpm2/types/public.ts';
import {
  buildCommand,
  clockSet,
  enc,
  getCapability,
  hashSequenceStart,
  params,
  parse,
  pw,
  readClock,
  shutdown,
  tpm2b,
  u16b,
  u32b,
  type Response,
  type SessionSpec,
} from '../helpers/tpm2-commands.ts';
import { H, HMAC, exec, fails, manualClock, newEngine, ok, pcrUpdateCounter, powerCycle, startedEngine } from '../helpers/tpm2-engine.ts';

const RC = {
  AUTH_FAIL: 0x08e,
  DISABLED: 0x120,
  AUTH_TYPE: 0x124,
  VALUE_H1: 0x184,
  HIERARCHY_H1: 0x185,
  VALUE_P1: 0x1c4,
  SIZE_P1: 0x1d5,
  HASH_P2: 0x2c3,
  VALUE_P2: 0x2c4,
  AUTH_FAIL_S1: 0x98e,
  BAD_AUTH_S1: 0x9a2,
  LOCKOUT: 0x921,
};

type Auth = string | Uint8Array | SessionSpec;
const sess = (a: Auth): SessionSpec => (typeof a === 'string' || a instanceof Uint8Array ? pw(a) : a);

const changeAuth = (h: number, newAuth: string | Uint8Array, auth: Auth = '') =>
  buildCommand({ cc: CC.HierarchyChangeAuth, handles: [h], sessions: [sess(auth)], params: tpm2b(newAuth) });
const hierarchyControl = (h: number, enable: number, state: boolean | number, auth: Auth = '') =>
  buildCommand({ cc: CC.HierarchyControl, handles: [h], sessions: [sess(auth)], params: params(u32b(enable), Buffer.from([Number(state)])) });
const setPrimaryPolicy = (h: number, policy: Uint8Array, alg: number, auth: Auth = '') =>
  buildCommand({ cc: CC.SetPrimaryPolicy, handles: [h], sessions: [sess(auth)], params: params(tpm2b(policy), u16b(alg)) });
const clear = (h: number = RH.LOCKOUT, auth: Auth = '') => buildCommand({ cc: CC.Clear, handles: [h], sessions: [sess(auth)] });
const clearControl = (h: number, disable: boolean, auth: Auth = '') =>
  buildCommand({ cc: CC.ClearControl, handles: [h], sessions: [sess(auth)], params: Buffer.from([disable ? 1 : 0]) });
const changeEps = (h: number = RH.PLATFORM, auth: Auth = '') => buildCommand({ cc: CC.ChangeEPS, handles: [h], sessions: [sess(auth)] });
const changePps = (h: number = RH.PLATFORM, auth: Auth = '') => buildCommand({ cc: CC.ChangePPS, handles: [h], sessions: [sess(auth)] });
const daParameters = (maxTries: number, recoveryTime: number, lockoutRecovery: number, auth: Auth = '') =>
  buildCommand({
    cc: CC.DictionaryAttackParameters,
    handles: [RH.LOCKOUT],
    sessions: [sess(auth)],
    params: params(u32b(maxTries), u32b(recoveryTime), u32b(lockoutRecovery)),
  });

function property(tpm: Tpm2Engine, pt: number): number {
  const data = parse.getCapability(ok(tpm, getCapability(CAP.TPM_PROPERTIES, pt, 1))).capabilityData as {
    properties: { property: number; value: number }[];
  };
  assert.equal(data.properties[0]!.property, pt);
  return data.properties[0]!.value;
}

const PERM = { ownerAuthSet: 1, endorsementAuthSet: 2, lockoutAuthSet: 4, disableClear: 1 << 8, inLockout: 1 << 9 };
const STARTUP = { ph: 1, sh: 2, eh: 4, phNV: 8 };

/** An object of a hierarchy, as the object model loads them. */
function fakeObject(tpm: Tpm2Engine, hierarchy: number): number {
  return tpm.objects.add({ kind: 'object', auth: Buffer.alloc(0), noDA: true, hierarchy } as TransientObject);
}

/** A sealed-data primary object (KEYEDHASH, no key generation): the cheapest real object. */
function sealedPrimary(tpm: Tpm2Engine, hierarchy: number, hierarchyAuth: Auth = ''): number {
  const template: Public = {
    type: ALG.KEYEDHASH,
    nameAlg: ALG.SHA256,
    objectAttributes: OBJECT_ATTR.fixedTPM | OBJECT_ATTR.fixedParent | OBJECT_ATTR.userWithAuth,
    authPolicy: Buffer.alloc(0),
    parameters: { type: ALG.KEYEDHASH, scheme: NULL_SCHEME },
    unique: { digest: Buffer.alloc(0) },
  };
  const cmd = buildCommand({
    cc: CC.CreatePrimary,
    handles: [hierarchy],
    sessions: [sess(hierarchyAuth)],
    params: params(enc(sensitiveCreate, { userAuth: Buffer.alloc(0), data: Buffer.from(`sealed-${hierarchy.toString(16)}`) }), enc(public2b, template), tpm2b(''), enc(pcrSelectionList, [])),
  });
  return ok(tpm, cmd).handle!;
}

/** EvictControl: makes a loaded object persistent at `persistent`. */
function persist(tpm: Tpm2Engine, object: number, persistent: number, auth: number = persistent >= 0x81800000 ? RH.PLATFORM : RH.OWNER): void {
  ok(tpm, buildCommand({ cc: CC.EvictControl, handles: [auth, object], sessions: [pw('')], params: u32b(persistent) }));
}

function withStateDir<T>(f: (dir: string) => T): T {
  const dir = mkdtempSync(join(tmpdir(), 'vtpmd-hier-'));
  try {
    return f(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// HMAC sessions, computed independently

interface Sess {
  handle: number;
  nonceTPM: Buffer;
}

function startHmacSession(tpm: Tpm2Engine): Sess {
  const r = ok(
    tpm,
    buildCommand({
      cc: CC.StartAuthSession,
      handles: [RH.NULL, RH.NULL],
      params: params(tpm2b(Buffer.alloc(16, 0x11)), tpm2b(''), Buffer.from([0]), u16b(ALG.NULL), u16b(ALG.SHA256)),
    }),
  );
  const rd = r.reader();
  return { handle: r.handle!, nonceTPM: Buffer.from(rd.bytes(rd.u16())) };
}

/** A command on one permanent handle authorized by an unbound, unsalted SHA-256 HMAC session. */
function hmacAuthorized(s: Sess, cc: number, handle: number, paramBytes: Buffer, authValue: string) {
  const nonceCaller = Buffer.alloc(32, 0x22);
  const attributes = SESSION_ATTR.continueSession;
  const cpHash = H(ALG.SHA256, u32b(cc), u32b(handle), paramBytes);
  const mac = HMAC(ALG.SHA256, Buffer.from(authValue), cpHash, nonceCaller, s.nonceTPM, Buffer.from([attributes]));
  const cmd = buildCommand({ cc, handles: [handle], sessions: [{ handle: s.handle, nonce: nonceCaller, attributes, password: mac }], params: paramBytes });
  return { cmd, nonceCaller };
}

/** Whether the response HMAC verifies with the given authValue. */
function responseHmacVerifies(cc: number, r: Response, nonceCaller: Buffer, authValue: string): boolean {
  const a = r.sessions[0]!;
  const rpHash = H(ALG.SHA256, u32b(0), u32b(cc), r.params);
  return HMAC(ALG.SHA256, Buffer.from(authValue), rpHash, a.nonce, nonceCaller, Buffer.from([a.attributes])).equals(a.hmac);
}

// ---------------------------------------------------------------------------------------------

describe('TPM2_HierarchyChangeAuth', () => {
  for (const [name, h] of [
    ['owner', RH.OWNER],
    ['endorsement', RH.ENDORSEMENT],
    ['platform', RH.PLATFORM],
  ] as const) {
    test(`changes the ${name} authValue: the old one then fails TPM_RC_BAD_AUTH+S1 (not DA-protected), the new one works`, () => {
      const tpm = startedEngine();
      ok(tpm, changeAuth(h, 'new-secret'));
      fails(tpm, changeAuth(h, 'x', ''), RC.BAD_AUTH_S1);
      fails(tpm, changeAuth(h, 'x', ''), RC.BAD_AUTH_S1);
      ok(tpm, changeAuth(h, 'other', 'new-secret'));
      ok(tpm, changeAuth(h, '', 'other'));
      ok(tpm, changeAuth(h, '', ''));
    });
  }

  test('changes the lockout authValue: the new one works; the old one then fails TPM_RC_AUTH_FAIL+S1 and blocks lockoutAuth', () => {
    const tpm = startedEngine();
    ok(tpm, changeAuth(RH.LOCKOUT, 'new-secret'));
    ok(tpm, changeAuth(RH.LOCKOUT, 'other', 'new-secret'));
    fails(tpm, changeAuth(RH.LOCKOUT, 'x', 'new-secret'), RC.AUTH_FAIL_S1);
    fails(tpm, changeAuth(RH.LOCKOUT, 'x', 'other'), RC.LOCKOUT);
  });

  test('TPM_PT_PERMANENT reports ownerAuthSet, endorsementAuthSet and lockoutAuthSet', () => {
    const tpm = startedEngine();
    assert.equal(property(tpm, PT.PERMANENT) & 7, 0);
    ok(tpm, changeAuth(RH.OWNER, 'o'));
    assert.equal(property(tpm, PT.PERMANENT) & 7, PERM.ownerAuthSet);
    ok(tpm, changeAuth(RH.ENDORSEMENT, 'e'));
    ok(tpm, changeAuth(RH.LOCKOUT, 'l'));
    assert.equal(property(tpm, PT.PERMANENT) & 7, 7);
    ok(tpm, changeAuth(RH.OWNER, '', 'o'));
    assert.equal(property(tpm, PT.PERMANENT) & 7, PERM.endorsementAuthSet | PERM.lockoutAuthSet);
  });

  test('trailing zeros are removed: a newAuth of zeros leaves the authValue empty and ownerAuthSet clear', () => {
    const tpm = startedEngine();
    ok(tpm, changeAuth(RH.OWNER, Buffer.alloc(20)));
    assert.equal(property(tpm, PT.PERMANENT) & PERM.ownerAuthSet, 0);
    ok(tpm, changeAuth(RH.OWNER, Buffer.from('ab\0\0')));
    ok(tpm, changeAuth(RH.OWNER, '', 'ab'));
  });

  test('a newAuth longer than the context integrity digest (SHA-256, 32 bytes) is TPM_RC_SIZE+P1, unless the excess is trailing zeros', () => {
    const tpm = startedEngine();
    fails(tpm, changeAuth(RH.OWNER, Buffer.alloc(33, 0x41)), RC.SIZE_P1);
    // Larger than TPM2B_AUTH itself (sizeof(TPMU_HA) = 64): the decoder refuses it.
    fails(tpm, changeAuth(RH.OWNER, Buffer.alloc(65, 0x41)), RC.SIZE_P1);
    const padded = Buffer.concat([Buffer.alloc(32, 0x41), Buffer.alloc(20)]);
    ok(tpm, changeAuth(RH.OWNER, padded));
    ok(tpm, changeAuth(RH.OWNER, '', Buffer.alloc(32, 0x41)));
  });

  test('handles other than owner, endorsement, lockout and platform are TPM_RC_VALUE+H1', () => {
    const tpm = startedEngine();
    for (const h of [RH.NULL, RH.PLATFORM_NV, RH.RS_PW, 0x80000000, 0x01000000]) fails(tpm, changeAuth(h, 'x'), RC.VALUE_H1);
  });

  test('the changed owner authValue is required afterwards and persists across a new engine on the same FileStateStore', () => {
    withStateDir((dir) => {
      const a = startedEngine({ store: new FileStateStore(dir) });
      ok(a, changeAuth(RH.OWNER, 'persisted'));
      ok(a, changeAuth(RH.LOCKOUT, 'lk'));
      const b = startedEngine({ store: new FileStateStore(dir) });
      fails(b, clockSet(10_000_000n, ''), RC.BAD_AUTH_S1);
      ok(b, clockSet(10_000_000n, 'persisted'));
      assert.equal(property(b, PT.PERMANENT) & 7, PERM.ownerAuthSet | PERM.lockoutAuthSet);
    });
  });

  test('platformAuth is volatile: a TPM Reset empties it again', () => {
    const tpm = startedEngine();
    ok(tpm, changeAuth(RH.PLATFORM, 'pp'));
    fails(tpm, changeEps(RH.PLATFORM, ''), RC.BAD_AUTH_S1);
    ok(tpm, shutdown(SU.CLEAR));
    powerCycle(tpm);
    ok(tpm, changeEps(RH.PLATFORM, ''));
  });

  test('with an HMAC session, the response HMAC is computed with the new authValue', () => {
    const tpm = startedEngine();
    const s = startHmacSession(tpm);
    const { cmd, nonceCaller } = hmacAuthorized(s, CC.HierarchyChangeAuth, RH.OWNER, tpm2b('fresh'), '');
    const r = ok(tpm, cmd);
    assert.ok(responseHmacVerifies(CC.HierarchyChangeAuth, r, nonceCaller, 'fresh'), 'verifies with the new authValue');
    assert.ok(!responseHmacVerifies(CC.HierarchyChangeAuth, r, nonceCaller, ''), 'not with the old one');
    // The session goes on, now keyed with the new authValue.
    s.nonceTPM = r.sessions[0]!.nonce;
    const next = hmacAuthorized(s, CC.HierarchyChangeAuth, RH.OWNER, tpm2b(''), 'fresh');
    const r2 = ok(tpm, next.cmd);
    assert.ok(responseHmacVerifies(CC.HierarchyChangeAuth, r2, next.nonceCaller, ''));
  });

  test(
    'a session bound to the owner with its old authValue no longer counts as bound once ownerAuth changed (TPM_RC_BAD_AUTH+S1)',
    () => {
      const tpm = startedEngine();
      ok(tpm, changeAuth(RH.OWNER, 'old'));
      const nonceCaller = Buffer.alloc(16, 0x11);
      const r = ok(
        tpm,
        buildCommand({
          cc: CC.StartAuthSession,
          handles: [RH.NULL, RH.OWNER],
          params: params(tpm2b(nonceCaller), tpm2b(''), Buffer.from([0]), u16b(ALG.NULL), u16b(ALG.SHA256)),
        }),
      );
      const rd = r.reader();
      const nonceTPM = Buffer.from(rd.bytes(rd.u16()));
      // KDFa(SHA-256, bindAuth, "ATH", nonceTPM, nonceCaller, 256): one block.
      const sessionKey = createHmac('sha256', 'old')
        .update(Buffer.concat([u32b(1), Buffer.from('ATH\0'), nonceTPM, nonceCaller, u32b(256)]))
        .digest();
      ok(tpm, changeAuth(RH.OWNER, 'new', 'old'));
      // Knowing only the old authValue, the session's holder must not authorize the owner any more.
      const p = tpm2b('taken');
      const nc = Buffer.alloc(32, 0x22);
      const cpHash = H(ALG.SHA256, u32b(CC.HierarchyChangeAuth), u32b(RH.OWNER), p);
      const mac = HMAC(ALG.SHA256, sessionKey, cpHash, nc, nonceTPM, Buffer.from([SESSION_ATTR.continueSession]));
      fails(
        tpm,
        buildCommand({ cc: CC.HierarchyChangeAuth, handles: [RH.OWNER], sessions: [{ handle: r.handle!, nonce: nc, attributes: SESSION_ATTR.continueSession, password: mac }], params: p }),
        RC.BAD_AUTH_S1,
      );
    },
  );

  test('on a disabled hierarchy it is TPM_RC_HIERARCHY+H1', () => {
    const tpm = startedEngine();
    ok(tpm, hierarchyControl(RH.OWNER, RH.OWNER, false));
    fails(tpm, changeAuth(RH.OWNER, 'x'), RC.HIERARCHY_H1);
  });
});

describe('TPM2_HierarchyControl', () => {
  test('ownerAuth disables the storage hierarchy: owner-authorized commands then fail TPM_RC_HIERARCHY+H1', () => {
    const tpm = startedEngine();
    ok(tpm, hierarchyControl(RH.OWNER, RH.OWNER, false));
    assert.equal(property(tpm, PT.STARTUP_CLEAR) & 0xf, STARTUP.ph | STARTUP.eh | STARTUP.phNV);
    fails(tpm, clockSet(10_000_000n, '', RH.OWNER), RC.HIERARCHY_H1);
    fails(tpm, setPrimaryPolicy(RH.OWNER, Buffer.alloc(0), ALG.NULL), RC.HIERARCHY_H1);
    // Only the platform may enable it again (ownerAuth cannot even be named).
    fails(tpm, hierarchyControl(RH.OWNER, RH.OWNER, true), RC.HIERARCHY_H1);
    ok(tpm, hierarchyControl(RH.PLATFORM, RH.OWNER, true));
    ok(tpm, clockSet(10_000_000n, '', RH.OWNER));
  });

  test('endorsementAuth disables the endorsement hierarchy; platformAuth enables it', () => {
    const tpm = startedEngine();
    ok(tpm, hierarchyControl(RH.ENDORSEMENT, RH.ENDORSEMENT, false));
    assert.equal(property(tpm, PT.STARTUP_CLEAR) & STARTUP.eh, 0);
    fails(tpm, changeAuth(RH.ENDORSEMENT, 'x'), RC.HIERARCHY_H1);
    ok(tpm, hierarchyControl(RH.PLATFORM, RH.ENDORSEMENT, true));
    ok(tpm, changeAuth(RH.ENDORSEMENT, 'x'));
  });

  test('a hierarchy may not control another: TPM_RC_AUTH_TYPE', () => {
    const tpm = startedEngine();
    fails(tpm, hierarchyControl(RH.OWNER, RH.ENDORSEMENT, false), RC.AUTH_TYPE);
    fails(tpm, hierarchyControl(RH.ENDORSEMENT, RH.OWNER, false), RC.AUTH_TYPE);
    fails(tpm, hierarchyControl(RH.OWNER, RH.PLATFORM, false), RC.AUTH_TYPE);
    fails(tpm, hierarchyControl(RH.ENDORSEMENT, RH.PLATFORM_NV, false), RC.AUTH_TYPE);
    assert.equal(property(tpm, PT.STARTUP_CLEAR) & 0xf, 0xf);
  });

  test('setting an enable that is already set is allowed to its own hierarchy', () => {
    const tpm = startedEngine();
    ok(tpm, hierarchyControl(RH.OWNER, RH.OWNER, true));
    ok(tpm, hierarchyControl(RH.ENDORSEMENT, RH.ENDORSEMENT, true));
  });

  test('platformAuth clears phEnableNV and phEnable; with phEnable clear, platform commands fail TPM_RC_HIERARCHY+H1 until a TPM Reset', () => {
    const tpm = startedEngine();
    ok(tpm, hierarchyControl(RH.PLATFORM, RH.PLATFORM_NV, false));
    assert.equal(property(tpm, PT.STARTUP_CLEAR) & 0xf, STARTUP.ph | STARTUP.sh | STARTUP.eh);
    ok(tpm, hierarchyControl(RH.PLATFORM, RH.PLATFORM_NV, true));
    ok(tpm, hierarchyControl(RH.PLATFORM, RH.PLATFORM, false));
    assert.equal(property(tpm, PT.STARTUP_CLEAR) & 0xf, STARTUP.sh | STARTUP.eh | STARTUP.phNV);
    fails(tpm, hierarchyControl(RH.PLATFORM, RH.PLATFORM, true), RC.HIERARCHY_H1);
    fails(tpm, changeEps(), RC.HIERARCHY_H1);
    fails(tpm, clear(RH.PLATFORM), RC.HIERARCHY_H1);
    ok(tpm, clear(RH.LOCKOUT));
    ok(tpm, shutdown(SU.CLEAR));
    powerCycle(tpm);
    assert.equal(property(tpm, PT.STARTUP_CLEAR) & 0xf, 0xf);
    ok(tpm, changeEps());
  });

  test('the enables survive Shutdown(STATE) + Startup(STATE) but not a TPM Reset', () => {
    const tpm = startedEngine();
    ok(tpm, hierarchyControl(RH.OWNER, RH.OWNER, false));
    ok(tpm, shutdown(SU.STATE));
    powerCycle(tpm, SU.STATE);
    assert.equal(property(tpm, PT.STARTUP_CLEAR) & STARTUP.sh, 0);
    ok(tpm, shutdown(SU.CLEAR));
    powerCycle(tpm, SU.CLEAR);
    assert.equal(property(tpm, PT.STARTUP_CLEAR) & STARTUP.sh, STARTUP.sh);
  });

  test('disabling a hierarchy flushes its loaded objects, not those of others nor sequences', () => {
    const tpm = startedEngine({ objectSlots: 4 });
    const owner = fakeObject(tpm, RH.OWNER);
    const endorsement = fakeObject(tpm, RH.ENDORSEMENT);
    const platform = fakeObject(tpm, RH.PLATFORM);
    const seq = ok(tpm, hashSequenceStart('')).handle!;
    ok(tpm, hierarchyControl(RH.OWNER, RH.OWNER, false));
    assert.equal(tpm.objects.get(owner), undefined);
    assert.ok(tpm.objects.get(endorsement) && tpm.objects.get(platform) && tpm.objects.get(seq));
    ok(tpm, hierarchyControl(RH.PLATFORM, RH.PLATFORM_NV, false));
    assert.ok(tpm.objects.get(platform), 'phEnableNV guards NV only');
    ok(tpm, hierarchyControl(RH.PLATFORM, RH.PLATFORM, false));
    assert.equal(tpm.objects.get(platform), undefined);
    assert.ok(tpm.objects.get(endorsement) && tpm.objects.get(seq));
  });

  test(
    'persistent objects of a disabled hierarchy are TPM_RC_HANDLE+H1 (owner range: shEnable; platform range: phEnable)',
    () => {
      const tpm = startedEngine();
      persist(tpm, sealedPrimary(tpm, RH.OWNER), 0x81000001);
      persist(tpm, sealedPrimary(tpm, RH.PLATFORM), 0x81800001);
      ok(tpm, buildCommand({ cc: CC.FlushContext, params: u32b(0x80000000) }));
      ok(tpm, buildCommand({ cc: CC.FlushContext, params: u32b(0x80000001) }));
      ok(tpm, hierarchyControl(RH.OWNER, RH.OWNER, false));
      fails(tpm, buildCommand({ cc: CC.ReadPublic, handles: [0x81000001] }), 0x18b);
      ok(tpm, buildCommand({ cc: CC.ReadPublic, handles: [0x81800001] }));
      ok(tpm, hierarchyControl(RH.PLATFORM, RH.PLATFORM, false));
      fails(tpm, buildCommand({ cc: CC.ReadPublic, handles: [0x81800001] }), 0x18b);
    },
  );

  test('malformed handles and parameters: TPM_RC_VALUE+H1, +P1, +P2', () => {
    const tpm = startedEngine();
    fails(tpm, hierarchyControl(RH.LOCKOUT, RH.OWNER, false), RC.VALUE_H1);
    fails(tpm, hierarchyControl(RH.NULL, RH.OWNER, false), RC.VALUE_H1);
    fails(tpm, hierarchyControl(RH.PLATFORM, RH.NULL, false), RC.VALUE_P1);
    fails(tpm, hierarchyControl(RH.PLATFORM, RH.LOCKOUT, false), RC.VALUE_P1);
    fails(tpm, hierarchyControl(RH.PLATFORM, RH.OWNER, 2), RC.VALUE_P2);
  });
});

describe('TPM2_SetPrimaryPolicy', () => {
  test('sets the owner, endorsement and lockout policies in NV and the platform policy in volatile state', () => {
    const tpm = startedEngine();
    const d = (n: number, fill: number) => Buffer.alloc(n, fill);
    ok(tpm, setPrimaryPolicy(RH.OWNER, d(32, 1), ALG.SHA256));
    ok(tpm, setPrimaryPolicy(RH.ENDORSEMENT, d(20, 2), ALG.SHA1));
    ok(tpm, setPrimaryPolicy(RH.LOCKOUT, d(48, 3), ALG.SHA384));
    ok(tpm, setPrimaryPolicy(RH.PLATFORM, d(64, 4), ALG.SHA512));
    const p = tpm.nv.hierarchy.policies;
    assert.deepEqual(p.owner, { alg: ALG.SHA256, digest: d(32, 1) });
    assert.deepEqual(p.endorsement, { alg: ALG.SHA1, digest: d(20, 2) });
    assert.deepEqual(p.lockout, { alg: ALG.SHA384, digest: d(48, 3) });
    assert.deepEqual(tpm.platformPolicy, { alg: ALG.SHA512, digest: d(64, 4) });
    assert.deepEqual(tpm.authPolicy(RH.OWNER), d(32, 1));
    // An empty policy with TPM_ALG_NULL removes it.
    ok(tpm, setPrimaryPolicy(RH.OWNER, Buffer.alloc(0), ALG.NULL));
    assert.deepEqual(tpm.nv.hierarchy.policies.owner, { alg: ALG.NULL, digest: Buffer.alloc(0) });
    ok(tpm, shutdown(SU.CLEAR));
    powerCycle(tpm);
    assert.deepEqual(tpm.nv.hierarchy.policies.lockout.digest, d(48, 3));
    assert.equal(tpm.platformPolicy.digest.length, 0, 'platformPolicy is cleared by a TPM Reset');
  });

  test('a digest whose size is not that of hashAlg is TPM_RC_SIZE+P1', () => {
    const tpm = startedEngine();
    fails(tpm, setPrimaryPolicy(RH.OWNER, Buffer.alloc(20), ALG.SHA256), RC.SIZE_P1);
    fails(tpm, setPrimaryPolicy(RH.OWNER, Buffer.alloc(0), ALG.SHA256), RC.SIZE_P1);
    fails(tpm, setPrimaryPolicy(RH.OWNER, Buffer.alloc(32), ALG.NULL), RC.SIZE_P1);
    assert.equal(tpm.nv.hierarchy.policies.owner.alg, ALG.NULL);
  });

  test('an unimplemented hashAlg is TPM_RC_HASH+P2; a handle outside TPMI_RH_HIERARCHY_POLICY is TPM_RC_VALUE+H1', () => {
    const tpm = startedEngine();
    fails(tpm, setPrimaryPolicy(RH.OWNER, Buffer.alloc(32), ALG.SM3_256), RC.HASH_P2);
    fails(tpm, setPrimaryPolicy(RH.PLATFORM_NV, Buffer.alloc(32), ALG.SHA256), RC.VALUE_H1);
    fails(tpm, setPrimaryPolicy(RH.NULL, Buffer.alloc(32), ALG.SHA256), RC.VALUE_H1);
  });

  test('the policy persists across a new engine on the same FileStateStore', () => {
    withStateDir((dir) => {
      const a = startedEngine({ store: new FileStateStore(dir) });
      ok(a, setPrimaryPolicy(RH.ENDORSEMENT, Buffer.alloc(32, 9), ALG.SHA256));
      const b = newEngine({ store: new FileStateStore(dir) });
      assert.deepEqual(b.nv.hierarchy.policies.endorsement, { alg: ALG.SHA256, digest: Buffer.alloc(32, 9) });
    });
  });
});

describe('TPM2_Clear', () => {
  /** An engine with authValues, policies, DA state, objects, persistent objects and NV indices. */
  function provisioned(opts: { objectSlots?: number } = {}) {
    const clock = manualClock();
    const tpm = startedEngine({ now: clock.now, objectSlots: opts.objectSlots ?? 4 });
    ok(tpm, changeAuth(RH.OWNER, 'o'));
    ok(tpm, changeAuth(RH.ENDORSEMENT, 'e'));
    ok(tpm, setPrimaryPolicy(RH.OWNER, Buffer.alloc(32, 1), ALG.SHA256, 'o'));
    ok(tpm, setPrimaryPolicy(RH.ENDORSEMENT, Buffer.alloc(32, 2), ALG.SHA256, 'e'));
    ok(tpm, setPrimaryPolicy(RH.LOCKOUT, Buffer.alloc(32, 3), ALG.SHA256));
    ok(tpm, daParameters(5, 60, 30));
    ok(tpm, changeAuth(RH.LOCKOUT, 'l'));
    tpm.nv.da.failedTries = 2;
    const nvIndex = (handle: number, attributes: number) =>
      tpm.nv.nvIndices.set({ handle, nameAlg: ALG.SHA256, attributes, authPolicy: Buffer.alloc(0), dataSize: 0, auth: Buffer.alloc(0), data: Buffer.alloc(0) });
    nvIndex(0x01000001, 0);
    nvIndex(0x01400001, 1 << 30); // TPMA_NV_PLATFORMCREATE
    tpm.nv.persistent.set(0x81000001, Buffer.from('owner'));
    tpm.nv.persistent.set(0x81010001, Buffer.from('endorsement'));
    tpm.nv.persistent.set(0x81800001, Buffer.from('platform'));
    const objects = {
      owner: fakeObject(tpm, RH.OWNER),
      endorsement: fakeObject(tpm, RH.ENDORSEMENT),
      platform: fakeObject(tpm, RH.PLATFORM),
    };
    return { tpm, clock, objects };
  }

  test('with lockoutAuth: new owner seed and proofs, empty authValues and policies, DA defaults; EPS and PPS kept', () => {
    const { tpm } = provisioned();
    const before = structuredClone({ seeds: tpm.nv.hierarchy.seeds, proofs: tpm.nv.hierarchy.proofs });
    ok(tpm, clear(RH.LOCKOUT, 'l'));
    const h = tpm.nv.hierarchy;
    assert.notDeepEqual(h.seeds.owner, before.seeds.owner);
    assert.notDeepEqual(h.proofs.owner, before.proofs.owner);
    assert.notDeepEqual(h.proofs.endorsement, before.proofs.endorsement);
    assert.deepEqual(h.seeds.endorsement, Buffer.from(before.seeds.endorsement));
    assert.deepEqual(h.seeds.platform, Buffer.from(before.seeds.platform));
    assert.deepEqual(h.proofs.platform, Buffer.from(before.proofs.platform));
    for (const k of ['owner', 'endorsement', 'lockout'] as const) {
      assert.equal(h.auth[k].length, 0, `${k} auth`);
      assert.deepEqual(h.policies[k], { alg: ALG.NULL, digest: Buffer.alloc(0) }, `${k} policy`);
    }
    assert.deepEqual(tpm.nv.da, { failedTries: 0, maxTries: 3, recoveryTime: 1000, lockoutRecovery: 1000, lockoutAuthEnabled: true });
    assert.equal(property(tpm, PT.PERMANENT) & (7 | PERM.inLockout), 0);
    assert.equal(property(tpm, PT.LOCKOUT_COUNTER), 0);
    // The empty authValues work.
    ok(tpm, changeAuth(RH.OWNER, ''));
    ok(tpm, changeAuth(RH.ENDORSEMENT, ''));
    ok(tpm, changeAuth(RH.LOCKOUT, ''));
  });

  test('with platformAuth it clears too', () => {
    const { tpm } = provisioned();
    ok(tpm, changeAuth(RH.PLATFORM, 'p'));
    ok(tpm, clear(RH.PLATFORM, 'p'));
    assert.equal(property(tpm, PT.PERMANENT) & 7, 0);
  });

  test('flushes owner and endorsement objects, owner-range persistent objects and indices not PLATFORMCREATE', () => {
    const { tpm, objects } = provisioned();
    ok(tpm, clear(RH.LOCKOUT, 'l'));
    assert.equal(tpm.objects.get(objects.owner), undefined);
    assert.equal(tpm.objects.get(objects.endorsement), undefined);
    assert.ok(tpm.objects.get(objects.platform));
    assert.deepEqual([...tpm.nv.persistent.keys()], [0x81800001]);
    assert.deepEqual(tpm.nv.nvIndices.handles(), [0x01400001]);
  });

  test('removes the persistent objects EvictControl made in the owner and endorsement hierarchies, keeps the platform ones; flushes real loaded objects', () => {
    const tpm = startedEngine({ objectSlots: 4 });
    const owner = sealedPrimary(tpm, RH.OWNER);
    const endorsement = sealedPrimary(tpm, RH.ENDORSEMENT);
    const platform = sealedPrimary(tpm, RH.PLATFORM);
    persist(tpm, owner, 0x81000001);
    persist(tpm, endorsement, 0x81010001);
    persist(tpm, platform, 0x81800001);
    ok(tpm, clear(RH.LOCKOUT));
    assert.deepEqual([...tpm.nv.persistent.keys()], [0x81800001]);
    assert.equal(tpm.objects.get(owner), undefined);
    assert.equal(tpm.objects.get(endorsement), undefined);
    assert.ok(tpm.objects.get(platform));
    fails(tpm, buildCommand({ cc: CC.ReadPublic, handles: [0x81000001] }), 0x18b);
    ok(tpm, buildCommand({ cc: CC.ReadPublic, handles: [0x81800001] }));
  });

  test('Clock, resetCount and restartCount start over, Safe is set and pcrUpdateCounter moves', () => {
    const { tpm, clock } = provisioned();
    ok(tpm, shutdown(SU.STATE));
    powerCycle(tpm, SU.STATE);
    clock.advance(5_000_000);
    const counter = pcrUpdateCounter(tpm);
    const before = parse.readClock(ok(tpm, readClock()));
    assert.ok(before.clockInfo.clock >= 5_000_000n && before.clockInfo.restartCount === 1);
    ok(tpm, clear(RH.LOCKOUT, 'l'));
    const after = parse.readClock(ok(tpm, readClock()));
    assert.equal(after.clockInfo.clock, 0n);
    assert.equal(after.clockInfo.resetCount, 0);
    assert.equal(after.clockInfo.restartCount, 0);
    assert.equal(after.clockInfo.safe, true);
    assert.equal(pcrUpdateCounter(tpm), counter + 1);
  });

  test('enables the storage and endorsement hierarchies', () => {
    const tpm = startedEngine();
    ok(tpm, hierarchyControl(RH.OWNER, RH.OWNER, false));
    ok(tpm, hierarchyControl(RH.ENDORSEMENT, RH.ENDORSEMENT, false));
    ok(tpm, clear(RH.LOCKOUT));
    assert.equal(property(tpm, PT.STARTUP_CLEAR) & 0xf, 0xf);
  });

  test('disableClear refuses it with TPM_RC_DISABLED, whichever authorization', () => {
    const { tpm } = provisioned();
    ok(tpm, clearControl(RH.LOCKOUT, true, 'l'));
    fails(tpm, clear(RH.LOCKOUT, 'l'), RC.DISABLED);
    fails(tpm, clear(RH.PLATFORM), RC.DISABLED);
    assert.equal(tpm.nv.hierarchy.auth.owner.toString(), 'o', 'nothing changed');
    ok(tpm, clearControl(RH.PLATFORM, false));
    ok(tpm, clear(RH.LOCKOUT, 'l'));
  });

  test('ownerAuth or endorsementAuth cannot clear: TPM_RC_VALUE+H1', () => {
    const tpm = startedEngine();
    fails(tpm, clear(RH.OWNER), RC.VALUE_H1);
    fails(tpm, clear(RH.ENDORSEMENT), RC.VALUE_H1);
  });

  test('a wrong lockoutAuth is TPM_RC_AUTH_FAIL+S1 and then TPM_RC_LOCKOUT', () => {
    const { tpm } = provisioned();
    fails(tpm, clear(RH.LOCKOUT, 'wrong'), RC.AUTH_FAIL_S1);
    fails(tpm, clear(RH.LOCKOUT, 'l'), RC.LOCKOUT);
    // The platform may still clear, and that re-enables lockoutAuth.
    ok(tpm, clear(RH.PLATFORM));
    ok(tpm, changeAuth(RH.LOCKOUT, 'l2', ''));
  });

  test('authorized by an HMAC session on lockoutAuth, the response HMAC uses the new, empty lockoutAuth', () => {
    const tpm = startedEngine();
    ok(tpm, changeAuth(RH.LOCKOUT, 'old-lockout'));
    const s = startHmacSession(tpm);
    const { cmd, nonceCaller } = hmacAuthorized(s, CC.Clear, RH.LOCKOUT, Buffer.alloc(0), 'old-lockout');
    const r = ok(tpm, cmd);
    assert.ok(responseHmacVerifies(CC.Clear, r, nonceCaller, ''));
    assert.ok(!responseHmacVerifies(CC.Clear, r, nonceCaller, 'old-lockout'));
  });

  test('the cleared state persists across a new engine on the same FileStateStore', () => {
    withStateDir((dir) => {
      const a = startedEngine({ store: new FileStateStore(dir) });
      ok(a, changeAuth(RH.OWNER, 'o'));
      ok(a, clear(RH.LOCKOUT));
      const b = startedEngine({ store: new FileStateStore(dir) });
      assert.equal(property(b, PT.PERMANENT) & PERM.ownerAuthSet, 0);
      ok(b, clockSet(10_000_000n, ''));
    });
  });
});

describe('TPM2_ClearControl', () => {
  test('lockoutAuth sets disableClear (TPMA_PERMANENT.disableClear) but may not clear it: TPM_RC_AUTH_FAIL', () => {
    const tpm = startedEngine();
    ok(tpm, clearControl(RH.LOCKOUT, true));
    assert.equal(property(tpm, PT.PERMANENT) & PERM.disableClear, PERM.disableClear);
    fails(tpm, clearControl(RH.LOCKOUT, false), RC.AUTH_FAIL);
    assert.equal(property(tpm, PT.PERMANENT) & PERM.disableClear, PERM.disableClear);
    // Setting it again is allowed; the failure above was not a DA failure.
    ok(tpm, clearControl(RH.LOCKOUT, true));
  });

  test('platformAuth sets and clears it', () => {
    const tpm = startedEngine();
    ok(tpm, clearControl(RH.PLATFORM, true));
    assert.equal(property(tpm, PT.PERMANENT) & PERM.disableClear, PERM.disableClear);
    ok(tpm, clearControl(RH.PLATFORM, false));
    assert.equal(property(tpm, PT.PERMANENT) & PERM.disableClear, 0);
  });

  test('disableClear persists across a new engine; ownerAuth is TPM_RC_VALUE+H1', () => {
    withStateDir((dir) => {
      const a = startedEngine({ store: new FileStateStore(dir) });
      ok(a, clearControl(RH.LOCKOUT, true));
      fails(a, clearControl(RH.OWNER, true), RC.VALUE_H1);
      const b = startedEngine({ store: new FileStateStore(dir) });
      fails(b, clear(RH.LOCKOUT), RC.DISABLED);
    });
  });
});

describe('TPM2_ChangeEPS and TPM2_ChangePPS', () => {
  test('ChangeEPS: new endorsement seed and proof, empty endorsementAuth and policy, ehEnable set; other hierarchies untouched', () => {
    const tpm = startedEngine({ objectSlots: 4 });
    ok(tpm, changeAuth(RH.ENDORSEMENT, 'e'));
    ok(tpm, changeAuth(RH.OWNER, 'o'));
    ok(tpm, setPrimaryPolicy(RH.ENDORSEMENT, Buffer.alloc(32, 1), ALG.SHA256, 'e'));
    const owner = fakeObject(tpm, RH.OWNER);
    const endorsement = fakeObject(tpm, RH.ENDORSEMENT);
    ok(tpm, hierarchyControl(RH.ENDORSEMENT, RH.ENDORSEMENT, false, 'e'));
    const before = structuredClone({ seeds: tpm.nv.hierarchy.seeds, proofs: tpm.nv.hierarchy.proofs });
    ok(tpm, changeEps());
    const h = tpm.nv.hierarchy;
    assert.notDeepEqual(h.seeds.endorsement, before.seeds.endorsement);
    assert.notDeepEqual(h.proofs.endorsement, before.proofs.endorsement);
    assert.deepEqual(h.seeds.owner, Buffer.from(before.seeds.owner));
    assert.deepEqual(h.proofs.owner, Buffer.from(before.proofs.owner));
    assert.deepEqual(h.seeds.platform, Buffer.from(before.seeds.platform));
    assert.equal(h.auth.endorsement.length, 0);
    assert.equal(h.auth.owner.toString(), 'o');
    assert.deepEqual(h.policies.endorsement, { alg: ALG.NULL, digest: Buffer.alloc(0) });
    assert.equal(property(tpm, PT.STARTUP_CLEAR) & STARTUP.eh, STARTUP.eh);
    assert.equal(tpm.objects.get(endorsement), undefined);
    assert.ok(tpm.objects.get(owner));
  });

  test('ChangePPS: new platform seed and proof, platformPolicy emptied, platformAuth kept, platform objects flushed', () => {
    const tpm = startedEngine();
    ok(tpm, changeAuth(RH.PLATFORM, 'p'));
    ok(tpm, setPrimaryPolicy(RH.PLATFORM, Buffer.alloc(32, 1), ALG.SHA256, 'p'));
    const platform = fakeObject(tpm, RH.PLATFORM);
    const owner = fakeObject(tpm, RH.OWNER);
    tpm.nv.persistent.set(0x81800001, Buffer.from('platform'));
    tpm.nv.persistent.set(0x81000001, Buffer.from('owner'));
    const before = structuredClone({ seeds: tpm.nv.hierarchy.seeds, proofs: tpm.nv.hierarchy.proofs });
    ok(tpm, changePps(RH.PLATFORM, 'p'));
    const h = tpm.nv.hierarchy;
    assert.notDeepEqual(h.seeds.platform, before.seeds.platform);
    assert.notDeepEqual(h.proofs.platform, before.proofs.platform);
    assert.deepEqual(h.seeds.endorsement, Buffer.from(before.seeds.endorsement));
    assert.deepEqual(h.seeds.owner, Buffer.from(before.seeds.owner));
    assert.deepEqual(tpm.platformPolicy, { alg: ALG.NULL, digest: Buffer.alloc(0) });
    fails(tpm, changePps(RH.PLATFORM, ''), RC.BAD_AUTH_S1);
    assert.equal(tpm.objects.get(platform), undefined);
    assert.ok(tpm.objects.get(owner));
    assert.deepEqual([...tpm.nv.persistent.keys()], [0x81000001]);
  });

  test('ChangeEPS removes persistent objects by the hierarchy they record, wherever in the owner range they are', () => {
    const tpm = startedEngine({ objectSlots: 4 });
    const owner = sealedPrimary(tpm, RH.OWNER);
    const endorsement = sealedPrimary(tpm, RH.ENDORSEMENT);
    // An owner object in the PC-Client EK range, an endorsement object outside it.
    persist(tpm, owner, 0x81010001);
    persist(tpm, endorsement, 0x81000002);
    ok(tpm, changeEps());
    assert.deepEqual([...tpm.nv.persistent.keys()], [0x81010001]);
    assert.equal(tpm.objects.get(endorsement), undefined);
    assert.ok(tpm.objects.get(owner));
  });

  test('the new seeds persist across a new engine on the same FileStateStore', () => {
    withStateDir((dir) => {
      const a = startedEngine({ store: new FileStateStore(dir) });
      ok(a, changeEps());
      ok(a, changePps());
      const seeds = structuredClone(a.nv.hierarchy.seeds);
      const b = newEngine({ store: new FileStateStore(dir) });
      assert.deepEqual(b.nv.hierarchy.seeds.endorsement, Buffer.from(seeds.endorsement));
      assert.deepEqual(b.nv.hierarchy.seeds.platform, Buffer.from(seeds.platform));
    });
  });

  test('only platformAuth may change a seed: other handles are TPM_RC_VALUE+H1', () => {
    const tpm = startedEngine();
    for (const h of [RH.OWNER, RH.ENDORSEMENT, RH.LOCKOUT]) {
      fails(tpm, changeEps(h), RC.VALUE_H1);
      fails(tpm, changePps(h), RC.VALUE_H1);
    }
  });
});

describe('hierarchy command attributes', () => {
  test('GetCapability(TPM_CAP_COMMANDS) reports nv, extensive and one handle as Part 3 marks them', () => {
    const tpm = startedEngine();
    const caps = parse.getCapability(ok(tpm, getCapability(CAP.COMMANDS, CC.HierarchyControl, 64))).capabilityData as { items: number[] };
    const attrs = new Map(caps.items.map((a) => [a & 0xffff, a >>> 0]));
    const NV = 1 << 22;
    const EXTENSIVE = 1 << 23;
    const ONE_HANDLE = 1 << 25;
    const expected: [number, number][] = [
      [CC.HierarchyControl, NV | EXTENSIVE],
      [CC.ChangeEPS, NV | EXTENSIVE],
      [CC.ChangePPS, NV | EXTENSIVE],
      [CC.Clear, NV | EXTENSIVE],
      [CC.ClearControl, NV],
      [CC.HierarchyChangeAuth, NV],
      [CC.SetPrimaryPolicy, NV],
      [CC.DictionaryAttackLockReset, NV],
      [CC.DictionaryAttackParameters, NV],
    ];
    for (const [cc, flags] of expected) {
      assert.equal(attrs.get(cc), (cc | flags | ONE_HANDLE) >>> 0, `TPMA_CC of 0x${cc.toString(16)}`);
    }
  });

  test('a command tagged TPM_ST_NO_SESSIONS is TPM_RC_AUTH_MISSING', () => {
    const tpm = startedEngine();
    const r = exec(tpm, buildCommand({ cc: CC.Clear, handles: [RH.LOCKOUT] }));
    assert.equal(r.rc, 0x125);
  });
});
