/**
 * Dictionary-attack protection (Part 1, 19.8) and its commands (Part 3, clause 25):
 * DictionaryAttackLockReset and DictionaryAttackParameters. Recovery is driven by the engine's
 * injected clock; nothing here waits.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CAP, CC, PT, RH, SU } from '../../src/tpm/tpm2/constants.ts';
import { command } from '../../src/tpm/tpm2/command.ts';
import { COMMANDS } from '../../src/tpm/tpm2/commands/index.ts';
import { compileTable, dispatch } from '../../src/tpm/tpm2/dispatcher.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import type { TransientObject } from '../../src/tpm/tpm2/state/objects.ts';
import { DA_DEFAULTS, Lockout } from '../../src/tpm/tpm2/state/lockout.ts';
import { FileStateStore } from '../../src/tpm/tpm2/state/store.ts';
import { dhObject } from '../../src/tpm/tpm2/types/handles.ts';
import { pcrSelectionList } from '../../src/tpm/tpm2/types/pcr.ts';
import { NULL_SCHEME } from '../../src/tpm/tpm2/types/public-parms.ts';
import { OBJECT_ATTR, public2b, sensitiveCreate, type Public } from '../../src/tpm/tpm2/types/public.ts';
import { ALG } from '../../src/tpm/tpm2/constants.ts';
import { buildCommand, clockSet, enc, getCapability, hexRc, params, parse, parseResponse, pw, shutdown, tpm2b, u32b, type Response } from '../helpers/tpm2-commands.ts';
import { fails, manualClock, ok, powerCycle, startedEngine, type ManualClock } from '../helpers/tpm2-engine.ts';

const RC = {
  VALUE_H1: 0x184,
  AUTH_FAIL_S1: 0x98e,
  BAD_AUTH_S1: 0x9a2,
  LOCKOUT: 0x921,
};

/**
 * A vendor-range probe command that needs USER authorization of an object and does nothing
 * else: the entities DA protection is about (keys, NV indices) have no commands of their own yet.
 */
const PROBE_CC = 0x20000001;
const TABLE = compileTable([
  ...COMMANDS,
  command({ cc: PROBE_CC, name: 'Probe', handles: [{ name: 'entity', type: dhObject, auth: 'user' }], params: {}, response: {}, handler: () => ({}) }),
]);
const probe = (handle: number, password: string) => buildCommand({ cc: PROBE_CC, handles: [handle], sessions: [pw(password)] });
function run(tpm: Tpm2Engine, cmd: Buffer): Response {
  return parseResponse(dispatch(tpm, TABLE, cmd, 0));
}
function expectRc(tpm: Tpm2Engine, cmd: Buffer, rc: number): void {
  assert.equal(hexRc(run(tpm, cmd).rc), hexRc(rc));
}

const lockReset = (auth = '') => buildCommand({ cc: CC.DictionaryAttackLockReset, handles: [RH.LOCKOUT], sessions: [pw(auth)] });
const daParameters = (maxTries: number, recoveryTime: number, lockoutRecovery: number, auth = '', handle: number = RH.LOCKOUT) =>
  buildCommand({
    cc: CC.DictionaryAttackParameters,
    handles: [handle],
    sessions: [pw(auth)],
    params: params(u32b(maxTries), u32b(recoveryTime), u32b(lockoutRecovery)),
  });
const changeAuth = (h: number, newAuth: string, auth = '') =>
  buildCommand({ cc: CC.HierarchyChangeAuth, handles: [h], sessions: [pw(auth)], params: tpm2b(newAuth) });

function properties(tpm: Tpm2Engine, first: number, count: number): number[] {
  const data = parse.getCapability(ok(tpm, getCapability(CAP.TPM_PROPERTIES, first, count))).capabilityData as {
    properties: { property: number; value: number }[];
  };
  assert.deepEqual(
    data.properties.map((p) => p.property),
    Array.from({ length: count }, (_, i) => first + i),
  );
  return data.properties.map((p) => p.value);
}
/** TPM_PT_LOCKOUT_COUNTER, _MAX_AUTH_FAIL, _LOCKOUT_INTERVAL, _LOCKOUT_RECOVERY. */
const daProperties = (tpm: Tpm2Engine) => properties(tpm, PT.LOCKOUT_COUNTER, 4);
const inLockoutBit = (tpm: Tpm2Engine) => (properties(tpm, PT.PERMANENT, 1)[0]! >>> 9) & 1;

/** A started engine with a manual clock and one DA-protected and one noDA object loaded. */
function setup(opts: { store?: FileStateStore } = {}): { tpm: Tpm2Engine; clock: ManualClock; key: number; noDaKey: number } {
  const clock = manualClock();
  const tpm = startedEngine({ now: clock.now, objectSlots: 5, ...opts });
  const key = tpm.objects.add({ kind: 'object', auth: Buffer.from('secret'), noDA: false } as TransientObject);
  const noDaKey = tpm.objects.add({ kind: 'object', auth: Buffer.from('secret'), noDA: true } as TransientObject);
  return { tpm, clock, key, noDaKey };
}

/** A sealed-data primary in the owner hierarchy with userAuth 'secret' (a real DA-protected entity unless noDA). */
function sealedPrimary(tpm: Tpm2Engine, noDA: boolean): number {
  const template: Public = {
    type: ALG.KEYEDHASH,
    nameAlg: ALG.SHA256,
    objectAttributes: OBJECT_ATTR.fixedTPM | OBJECT_ATTR.fixedParent | OBJECT_ATTR.userWithAuth | (noDA ? OBJECT_ATTR.noDA : 0),
    authPolicy: Buffer.alloc(0),
    parameters: { type: ALG.KEYEDHASH, scheme: NULL_SCHEME },
    unique: { digest: Buffer.alloc(0) },
  };
  const cmd = buildCommand({
    cc: CC.CreatePrimary,
    handles: [RH.OWNER],
    sessions: [pw('')],
    params: params(enc(sensitiveCreate, { userAuth: Buffer.from('secret'), data: Buffer.from('sealed') }), enc(public2b, template), tpm2b(''), enc(pcrSelectionList, [])),
  });
  return ok(tpm, cmd).handle!;
}
const unseal = (h: number, password: string) => buildCommand({ cc: CC.Unseal, handles: [h], sessions: [pw(password)] });

const SECOND = 1000;

describe('dictionary-attack lockout of protected entities', () => {
  test('maxTries failures are TPM_RC_AUTH_FAIL+S1; then even the right authValue is TPM_RC_LOCKOUT and TPMA_PERMANENT.inLockout is set', () => {
    const { tpm, key } = setup();
    assert.deepEqual(daProperties(tpm), [0, 3, 1000, 1000]);
    for (let i = 1; i <= 3; i++) {
      expectRc(tpm, probe(key, 'wrong'), RC.AUTH_FAIL_S1);
      assert.equal(daProperties(tpm)[0], i);
    }
    assert.equal(inLockoutBit(tpm), 1);
    expectRc(tpm, probe(key, 'secret'), RC.LOCKOUT);
    expectRc(tpm, probe(key, 'wrong'), RC.LOCKOUT);
    assert.equal(daProperties(tpm)[0], 3, 'refused attempts are not counted');
  });

  test('DictionaryAttackLockReset with lockoutAuth ends the lockout', () => {
    const { tpm, key } = setup();
    for (let i = 0; i < 3; i++) expectRc(tpm, probe(key, 'wrong'), RC.AUTH_FAIL_S1);
    expectRc(tpm, probe(key, 'secret'), RC.LOCKOUT);
    ok(tpm, lockReset());
    assert.equal(daProperties(tpm)[0], 0);
    assert.equal(inLockoutBit(tpm), 0);
    expectRc(tpm, probe(key, 'secret'), 0);
  });

  test('entities with noDA are outside DA protection: TPM_RC_BAD_AUTH+S1, not counted, usable in lockout', () => {
    const { tpm, key, noDaKey } = setup();
    for (let i = 0; i < 5; i++) expectRc(tpm, probe(noDaKey, 'wrong'), RC.BAD_AUTH_S1);
    assert.equal(daProperties(tpm)[0], 0);
    for (let i = 0; i < 3; i++) expectRc(tpm, probe(key, 'wrong'), RC.AUTH_FAIL_S1);
    expectRc(tpm, probe(noDaKey, 'secret'), 0);
  });

  test('one failure is forgiven per recoveryTime seconds without failures; each failure restarts that time', () => {
    const { tpm, clock, key } = setup();
    ok(tpm, daParameters(3, 10, 0));
    expectRc(tpm, probe(key, 'wrong'), RC.AUTH_FAIL_S1);
    clock.advance(9 * SECOND);
    expectRc(tpm, probe(key, 'wrong'), RC.AUTH_FAIL_S1);
    assert.equal(daProperties(tpm)[0], 2);
    // 9 s after the first failure but only 0 s after the second: nothing forgiven yet.
    clock.advance(10 * SECOND - 1);
    assert.equal(daProperties(tpm)[0], 2);
    clock.advance(1);
    assert.equal(daProperties(tpm)[0], 1);
    clock.advance(10 * SECOND);
    assert.equal(daProperties(tpm)[0], 0);
  });

  test('lockout ends by itself after recoveryTime seconds', () => {
    const { tpm, clock, key } = setup();
    ok(tpm, daParameters(2, 60, 0));
    expectRc(tpm, probe(key, 'wrong'), RC.AUTH_FAIL_S1);
    expectRc(tpm, probe(key, 'wrong'), RC.AUTH_FAIL_S1);
    expectRc(tpm, probe(key, 'secret'), RC.LOCKOUT);
    clock.advance(60 * SECOND - 1);
    expectRc(tpm, probe(key, 'secret'), RC.LOCKOUT);
    clock.advance(1);
    assert.equal(inLockoutBit(tpm), 0);
    expectRc(tpm, probe(key, 'secret'), 0);
    assert.equal(daProperties(tpm)[0], 1);
  });

  test('a sealed object without noDA: Unseal with wrong passwords counts to TPM_RC_LOCKOUT; DictionaryAttackLockReset lets it unseal again', () => {
    const { tpm } = setup();
    const sealed = sealedPrimary(tpm, false);
    const sealedNoDa = sealedPrimary(tpm, true);
    fails(tpm, unseal(sealedNoDa, 'wrong'), RC.BAD_AUTH_S1);
    for (let i = 0; i < 3; i++) fails(tpm, unseal(sealed, 'wrong'), RC.AUTH_FAIL_S1);
    fails(tpm, unseal(sealed, 'secret'), RC.LOCKOUT);
    ok(tpm, unseal(sealedNoDa, 'secret'));
    ok(tpm, lockReset());
    const out = ok(tpm, unseal(sealed, 'secret'));
    assert.equal(out.params.subarray(2).toString(), 'sealed');
  });

  test('the failure count persists across a new engine on the same FileStateStore', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vtpmd-da-'));
    try {
      const a = setup({ store: new FileStateStore(dir) });
      for (let i = 0; i < 3; i++) expectRc(a.tpm, probe(a.key, 'wrong'), RC.AUTH_FAIL_S1);
      const b = setup({ store: new FileStateStore(dir) });
      assert.equal(daProperties(b.tpm)[0], 3);
      expectRc(b.tpm, probe(b.key, 'secret'), RC.LOCKOUT);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('lockoutAuth', () => {
  test('a wrong lockoutAuth is TPM_RC_AUTH_FAIL+S1; lockoutAuth is then TPM_RC_LOCKOUT for lockoutRecovery seconds', () => {
    const { tpm, clock } = setup();
    ok(tpm, changeAuth(RH.LOCKOUT, 'lk'));
    fails(tpm, lockReset('wrong'), RC.AUTH_FAIL_S1);
    fails(tpm, lockReset('lk'), RC.LOCKOUT);
    clock.advance(1000 * SECOND - 1);
    fails(tpm, lockReset('lk'), RC.LOCKOUT);
    clock.advance(1);
    ok(tpm, lockReset('lk'));
  });

  test('lockoutAuth failures do not count in failedTries, and lockoutAuth works while in lockout', () => {
    const { tpm, clock, key } = setup();
    fails(tpm, lockReset('wrong'), RC.AUTH_FAIL_S1);
    assert.equal(daProperties(tpm)[0], 0);
    for (let i = 0; i < 3; i++) expectRc(tpm, probe(key, 'wrong'), RC.AUTH_FAIL_S1);
    clock.advance(1000 * SECOND);
    // Both recovery times passed, but the failures above restarted the self-healing timer.
    assert.equal(inLockoutBit(tpm), 0);
    assert.equal(daProperties(tpm)[0], 2);
    expectRc(tpm, probe(key, 'wrong'), RC.AUTH_FAIL_S1);
    assert.equal(inLockoutBit(tpm), 1);
    ok(tpm, lockReset(''));
    expectRc(tpm, probe(key, 'secret'), 0);
  });

  test('with lockoutRecovery 0, a failed lockoutAuth stays blocked until the next TPM Reset', () => {
    const { tpm, clock } = setup();
    ok(tpm, daParameters(3, 1000, 0));
    fails(tpm, lockReset('wrong'), RC.AUTH_FAIL_S1);
    clock.advance(100_000 * SECOND);
    fails(tpm, lockReset(''), RC.LOCKOUT);
    ok(tpm, shutdown(SU.CLEAR));
    powerCycle(tpm, SU.CLEAR);
    ok(tpm, lockReset(''));
  });

  test('a TPM Reset does not end a block that has a recovery time; the time counts again from the Startup', () => {
    const { tpm, clock } = setup();
    ok(tpm, daParameters(3, 1000, 100));
    fails(tpm, lockReset('wrong'), RC.AUTH_FAIL_S1);
    clock.advance(50 * SECOND);
    ok(tpm, shutdown(SU.CLEAR));
    powerCycle(tpm, SU.CLEAR);
    fails(tpm, lockReset(''), RC.LOCKOUT);
    clock.advance(100 * SECOND - 1);
    fails(tpm, lockReset(''), RC.LOCKOUT);
    clock.advance(1);
    ok(tpm, lockReset(''));
  });
});

describe('TPM2_DictionaryAttackParameters', () => {
  test('sets maxTries, recoveryTime and lockoutRecovery, reported by TPM_PT_MAX_AUTH_FAIL, _LOCKOUT_INTERVAL, _LOCKOUT_RECOVERY; persists', () => {
    const dir = mkdtempSync(join(tmpdir(), 'vtpmd-da-'));
    try {
      const a = setup({ store: new FileStateStore(dir) });
      ok(a.tpm, daParameters(3, 100, 200));
      assert.deepEqual(daProperties(a.tpm), [0, 3, 100, 200]);
      ok(a.tpm, daParameters(32, 7200, 86400));
      const b = setup({ store: new FileStateStore(dir) });
      assert.deepEqual(daProperties(b.tpm), [0, 32, 7200, 86400]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('it leaves failedTries as it is: a maxTries at or below it means lockout at once', () => {
    const { tpm, key } = setup();
    ok(tpm, daParameters(5, 1000, 1000));
    expectRc(tpm, probe(key, 'wrong'), RC.AUTH_FAIL_S1);
    expectRc(tpm, probe(key, 'wrong'), RC.AUTH_FAIL_S1);
    ok(tpm, daParameters(2, 1000, 1000));
    assert.equal(daProperties(tpm)[0], 2);
    expectRc(tpm, probe(key, 'secret'), RC.LOCKOUT);
  });

  test('newMaxTries 0 puts DA-protected entities in lockout at once', () => {
    const { tpm, key } = setup();
    ok(tpm, daParameters(0, 1000, 1000));
    assert.equal(inLockoutBit(tpm), 1);
    expectRc(tpm, probe(key, 'secret'), RC.LOCKOUT);
  });

  test('newRecoveryTime 0 turns DA protection off: failures are still TPM_RC_AUTH_FAIL but nothing is counted', () => {
    const { tpm, key } = setup();
    expectRc(tpm, probe(key, 'wrong'), RC.AUTH_FAIL_S1);
    ok(tpm, daParameters(3, 0, 1000));
    assert.equal(daProperties(tpm)[0], 0, 'counted failures are dropped');
    for (let i = 0; i < 5; i++) expectRc(tpm, probe(key, 'wrong'), RC.AUTH_FAIL_S1);
    assert.equal(daProperties(tpm)[0], 0);
    expectRc(tpm, probe(key, 'secret'), 0);
  });

  test('needs lockoutAuth: a wrong one is TPM_RC_AUTH_FAIL+S1 and changes nothing; other handles are TPM_RC_VALUE+H1', () => {
    const { tpm } = setup();
    ok(tpm, changeAuth(RH.LOCKOUT, 'lk'));
    fails(tpm, daParameters(10, 10, 10, 'wrong'), RC.AUTH_FAIL_S1);
    assert.deepEqual(daProperties(tpm), [0, 3, 1000, 1000]);
    for (const h of [RH.OWNER, RH.PLATFORM, RH.ENDORSEMENT]) fails(tpm, daParameters(10, 10, 10, '', h), RC.VALUE_H1);
  });
});

describe('TPM2_DictionaryAttackLockReset', () => {
  test('only lockoutAuth: other handles are TPM_RC_VALUE+H1', () => {
    const { tpm } = setup();
    for (const h of [RH.OWNER, RH.PLATFORM, RH.ENDORSEMENT, RH.NULL]) {
      fails(tpm, buildCommand({ cc: CC.DictionaryAttackLockReset, handles: [h], sessions: [pw('')] }), RC.VALUE_H1);
    }
  });

  test('a wrong lockoutAuth leaves the lockout in place', () => {
    const { tpm, key } = setup();
    ok(tpm, changeAuth(RH.LOCKOUT, 'lk'));
    for (let i = 0; i < 3; i++) expectRc(tpm, probe(key, 'wrong'), RC.AUTH_FAIL_S1);
    fails(tpm, lockReset('nope'), RC.AUTH_FAIL_S1);
    assert.equal(daProperties(tpm)[0], 3);
    expectRc(tpm, probe(key, 'secret'), RC.LOCKOUT);
  });
});

describe('the Lockout timers', () => {
  test('when the clock goes back (Clear zeroes Clock; Time restarts at power-on) the timers restart from there: no block is shortened', () => {
    const da = { failedTries: 0, maxTries: 3, recoveryTime: 10, lockoutRecovery: 20 };
    let t = 100_000n;
    const l = new Lockout(() => da, () => t, () => {});
    const OBJECT = 0x80000000;
    l.recordFailure(RH.LOCKOUT, true);
    l.recordFailure(OBJECT, true);
    l.recordFailure(OBJECT, true);
    t = 5_000n;
    assert.equal(l.lockoutAuthAvailable, false);
    assert.equal(l.failedTries, 2);
    t = 5_000n + 10_000n;
    assert.equal(l.failedTries, 1);
    t = 5_000n + 20_000n - 1n;
    assert.equal(l.lockoutAuthAvailable, false);
    t += 1n;
    assert.equal(l.lockoutAuthAvailable, true);
    assert.equal(l.failedTries, 0);
  });

  test('restoreDefaults (TPM2_Clear) sets the manufacturer parameters, no failures and lockoutAuth usable', () => {
    const da = { failedTries: 2, maxTries: 9, recoveryTime: 1, lockoutRecovery: 0 };
    const l = new Lockout(() => da, () => 0n, () => {});
    l.recordFailure(RH.LOCKOUT, true);
    assert.equal(l.lockoutAuthAvailable, false);
    l.restoreDefaults();
    assert.deepEqual(da, DA_DEFAULTS);
    assert.equal(l.lockoutAuthAvailable, true);
  });

  test('ClockSet moving Clock forward does not end a lockoutAuth block', () => {
    const { tpm } = setup();
    ok(tpm, changeAuth(RH.LOCKOUT, 'lk'));
    fails(tpm, lockReset('guess'), RC.AUTH_FAIL_S1);
    ok(tpm, clockSet(10_000_000_000n, ''));
    fails(tpm, lockReset('guess'), RC.LOCKOUT);
  });
});
