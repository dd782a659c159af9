import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CC, CLOCK_ADJUST, RH, SU } from '../../src/tpm/tpm2/constants.ts';
import { buildCommand, clockRateAdjust, clockSet, parse, readClock, shutdown, startup } from '../helpers/tpm2-commands.ts';
import { fails, manualClock, ok, powerCycle, startedEngine } from '../helpers/tpm2-engine.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { encode, u64 } from '../../src/tpm/wire/codec.ts';

const RC = { VALUE_P1: 0x1c4, VALUE_H1: 0x184, AUTH_MISSING: 0x125, BAD_AUTH_S1: 0x9a2 };
const CLOCK_MAX = 0xffff000000000000n;

function timeInfo(tpm: Tpm2Engine) {
  return parse.readClock(ok(tpm, readClock()));
}

function setup() {
  const clock = manualClock(10_000);
  const tpm = startedEngine({ now: clock.now });
  return { clock, tpm };
}

describe('TPM2_ReadClock', () => {
  test('ReadClock reports time and Clock advancing in milliseconds with the injected now', () => {
    const { clock, tpm } = setup();
    const a = timeInfo(tpm);
    clock.advance(5_000);
    const b = timeInfo(tpm);
    assert.equal(b.time - a.time, 5_000n);
    assert.equal(b.clockInfo.clock - a.clockInfo.clock, 5_000n);
    clock.advance(1);
    assert.equal(timeInfo(tpm).time - b.time, 1n);
  });

  test('ReadClock reports resetCount, restartCount and safe YES on a freshly started TPM', () => {
    const { tpm } = setup();
    const t = timeInfo(tpm);
    assert.equal(t.clockInfo.restartCount, 0);
    assert.equal(t.clockInfo.safe, true);
  });

  test('after a power cycle time restarts at zero while Clock continues from the value saved at Shutdown', () => {
    const { clock, tpm } = setup();
    clock.advance(5_000);
    const before = timeInfo(tpm).clockInfo.clock;
    ok(tpm, shutdown(SU.CLEAR));
    clock.advance(3_600_000); // an hour without power: Clock does not count it
    powerCycle(tpm, SU.CLEAR);
    const after = timeInfo(tpm);
    assert.equal(after.time, 0n);
    assert.equal(after.clockInfo.clock, before);
    clock.advance(250);
    const later = timeInfo(tpm);
    assert.equal(later.time, 250n);
    assert.equal(later.clockInfo.clock, before + 250n);
  });

  test('ReadClock reports safe NO after a Startup(CLEAR) that followed a power loss', () => {
    const { clock, tpm } = setup();
    clock.advance(1_000);
    tpm.powerOff();
    tpm.powerOn();
    ok(tpm, startup(SU.CLEAR));
    assert.equal(timeInfo(tpm).clockInfo.safe, false);
  });
});

describe('TPM2_ClockSet', () => {
  test('ClockSet moves Clock forward and ReadClock then counts on from the new value', () => {
    const { clock, tpm } = setup();
    const target = timeInfo(tpm).clockInfo.clock + 86_400_000n;
    ok(tpm, clockSet(target));
    assert.equal(timeInfo(tpm).clockInfo.clock, target);
    clock.advance(10);
    assert.equal(timeInfo(tpm).clockInfo.clock, target + 10n);
  });

  test('ClockSet to the current Clock value succeeds', () => {
    const { tpm } = setup();
    const now = timeInfo(tpm).clockInfo.clock;
    ok(tpm, clockSet(now));
    assert.equal(timeInfo(tpm).clockInfo.clock, now);
  });

  test('ClockSet backwards returns TPM_RC_VALUE + P1 (0x1C4) and leaves Clock unchanged', () => {
    const { clock, tpm } = setup();
    clock.advance(10_000);
    const now = timeInfo(tpm).clockInfo.clock;
    fails(tpm, clockSet(now - 1n), RC.VALUE_P1);
    fails(tpm, clockSet(0n), RC.VALUE_P1);
    assert.equal(timeInfo(tpm).clockInfo.clock, now);
  });

  test('ClockSet accepts 0xFFFF000000000000 and refuses anything above with TPM_RC_VALUE + P1 (0x1C4)', () => {
    const { tpm } = setup();
    fails(tpm, clockSet(CLOCK_MAX + 1n), RC.VALUE_P1);
    fails(tpm, clockSet(0xffffffffffffffffn), RC.VALUE_P1);
    ok(tpm, clockSet(CLOCK_MAX));
    assert.equal(timeInfo(tpm).clockInfo.clock, CLOCK_MAX);
  });

  test('ClockSet authorized by the platform hierarchy succeeds', () => {
    const { tpm } = setup();
    ok(tpm, clockSet(1_000_000_000n, '', RH.PLATFORM));
  });

  test('ClockSet authorized by TPM_RH_ENDORSEMENT returns TPM_RC_VALUE + H1 (0x184)', () => {
    const { tpm } = setup();
    fails(tpm, clockSet(1_000_000_000n, '', RH.ENDORSEMENT), RC.VALUE_H1);
  });

  test('ClockSet without an authorization session returns TPM_RC_AUTH_MISSING (0x125)', () => {
    const { tpm } = setup();
    const cmd = buildCommand({ cc: CC.ClockSet, handles: [RH.OWNER], params: Buffer.from(encode(u64, 1_000_000_000n)) });
    fails(tpm, cmd, RC.AUTH_MISSING);
  });

  test('ClockSet with a wrong owner password returns TPM_RC_BAD_AUTH + S1 (0x9A2): ownerAuth is not DA-protected', () => {
    // Part 4 IsDAExempted: every permanent handle except TPM_RH_LOCKOUT is exempt from DA protection;
    // a failed password for a DA-exempt entity is TPM_RC_BAD_AUTH, not TPM_RC_AUTH_FAIL.
    const { tpm } = setup();
    fails(tpm, clockSet(1_000_000_000n, 'wrong'), RC.BAD_AUTH_S1);
  });

  test('ClockSet with an owner password of only zero octets matches the empty ownerAuth', () => {
    // Part 4 CheckPWAuthSession: trailing zeros are stripped from the password before comparison.
    const { tpm } = setup();
    ok(tpm, clockSet(1_000_000_000n, Buffer.from([0, 0])));
  });
});

describe('TPM2_ClockRateAdjust', () => {
  function advanceBy(adjust: number): bigint {
    const { clock, tpm } = setup();
    ok(tpm, clockRateAdjust(adjust));
    const a = timeInfo(tpm).clockInfo.clock;
    clock.advance(100_000);
    return timeInfo(tpm).clockInfo.clock - a;
  }

  test('ClockRateAdjust(COARSE_FASTER) makes Clock run faster than the injected time and COARSE_SLOWER slower', () => {
    assert.ok(advanceBy(CLOCK_ADJUST.COARSE_FASTER) > 100_000n);
    assert.ok(advanceBy(CLOCK_ADJUST.COARSE_SLOWER) < 100_000n);
    assert.ok(advanceBy(CLOCK_ADJUST.FINE_FASTER) >= 100_000n);
    assert.ok(advanceBy(CLOCK_ADJUST.FINE_SLOWER) <= 100_000n);
  });

  test('ClockRateAdjust(NO_CHANGE) leaves the rate nominal', () => {
    assert.equal(advanceBy(CLOCK_ADJUST.NO_CHANGE), 100_000n);
  });

  test('ClockRateAdjust outside -3..3 returns TPM_RC_VALUE + P1 (0x1C4)', () => {
    const { tpm } = setup();
    for (const v of [4, -4, 127, -128]) fails(tpm, clockRateAdjust(v), RC.VALUE_P1);
  });

  test('ClockRateAdjust authorized by TPM_RH_ENDORSEMENT returns TPM_RC_VALUE + H1 (0x184)', () => {
    const { tpm } = setup();
    fails(tpm, clockRateAdjust(1, '', RH.ENDORSEMENT), RC.VALUE_H1);
  });
});
