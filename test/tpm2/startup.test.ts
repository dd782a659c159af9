import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ALG, CAP, HR, PT, SU } from '../../src/tpm/tpm2/constants.ts';
import {
  buildCommand,
  getCapability,
  getRandom,
  hash,
  hashSequenceStart,
  parse,
  pcrAllocate,
  pcrExtend,
  pcrRead,
  readClock,
  selection,
  selfTest,
  shutdown,
  startup,
  u16b,
} from '../helpers/tpm2-commands.ts';
import { BANKS, H, exec, fails, newEngine, ok, pcrUpdateCounter, powerCycle, readPcr, startedEngine } from '../helpers/tpm2-engine.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';

const RC_INITIALIZE = 0x100;
const RC_VALUE_P1 = 0x1c4;
const RC_TYPE_P1 = 0x1ca;

const ZERO32 = Buffer.alloc(32);
const ONES32 = Buffer.alloc(32, 0xff);

function clockInfo(tpm: Tpm2Engine) {
  return parse.readClock(ok(tpm, readClock())).clockInfo;
}

function extend256(tpm: Tpm2Engine, pcr: number, fill: number, locality = 0): Buffer {
  const d = Buffer.alloc(32, fill);
  ok(tpm, pcrExtend(pcr, [{ hashAlg: ALG.SHA256, digest: d }]), locality);
  return d;
}

function startupClearOrderly(tpm: Tpm2Engine): boolean {
  const caps = parse.getCapability(ok(tpm, getCapability(CAP.TPM_PROPERTIES, PT.STARTUP_CLEAR, 1))).capabilityData;
  assert.equal(caps.capability, CAP.TPM_PROPERTIES);
  const p = (caps as { properties: { property: number; value: number }[] }).properties[0]!;
  assert.equal(p.property, PT.STARTUP_CLEAR);
  return (p.value & 0x80000000) !== 0;
}

describe('TPM2_Startup and TPM2_Shutdown', () => {
  test('every command before Startup returns TPM_RC_INITIALIZE (0x100)', () => {
    const tpm = newEngine();
    for (const cmd of [
      getRandom(8),
      pcrRead([selection(ALG.SHA256, [0])]),
      getCapability(CAP.ALGS, 0, 1),
      readClock(),
      shutdown(SU.CLEAR),
      selfTest(true),
      hash('abc'),
      pcrExtend(0, [{ hashAlg: ALG.SHA256, digest: ZERO32 }]),
    ]) {
      fails(tpm, cmd, RC_INITIALIZE);
    }
  });

  test('Startup(CLEAR) on a fresh engine succeeds with a 10-byte TPM_ST_NO_SESSIONS response', () => {
    const tpm = newEngine();
    const r = ok(tpm, startup(SU.CLEAR));
    assert.equal(r.tag, 0x8001);
    assert.equal(r.raw.length, 10);
  });

  test('a second Startup returns TPM_RC_INITIALIZE (0x100)', () => {
    const tpm = startedEngine();
    fails(tpm, startup(SU.CLEAR), RC_INITIALIZE);
    fails(tpm, startup(SU.STATE), RC_INITIALIZE);
  });

  test('Startup with a startupType other than CLEAR or STATE returns TPM_RC_VALUE + P1 (0x1C4)', () => {
    const tpm = newEngine();
    fails(tpm, startup(2), RC_VALUE_P1);
    fails(tpm, startup(0x8000), RC_VALUE_P1);
    ok(tpm, startup(SU.CLEAR));
  });

  test('Startup(STATE) on a freshly manufactured TPM returns TPM_RC_VALUE + P1 (0x1C4)', () => {
    const tpm = newEngine();
    fails(tpm, startup(SU.STATE), RC_VALUE_P1);
    ok(tpm, startup(SU.CLEAR));
  });

  test('Startup(STATE) after Shutdown(CLEAR) returns TPM_RC_VALUE + P1 and Startup(CLEAR) then succeeds', () => {
    const tpm = startedEngine();
    ok(tpm, shutdown(SU.CLEAR));
    tpm.powerOn();
    fails(tpm, startup(SU.STATE), RC_VALUE_P1);
    ok(tpm, startup(SU.CLEAR));
  });

  test('Startup(STATE) after a power loss without Shutdown returns TPM_RC_VALUE + P1 (0x1C4)', () => {
    const tpm = startedEngine();
    extend256(tpm, 0, 1);
    tpm.powerOff();
    tpm.powerOn();
    fails(tpm, startup(SU.STATE), RC_VALUE_P1);
    ok(tpm, startup(SU.CLEAR));
  });

  test('Shutdown with a shutdownType other than CLEAR or STATE returns TPM_RC_VALUE + P1 (0x1C4)', () => {
    const tpm = startedEngine();
    fails(tpm, shutdown(7), RC_VALUE_P1);
  });

  test('Shutdown(STATE), power cycle and Startup(STATE) restore PCRs 0-15 in every bank', () => {
    const tpm = startedEngine();
    const expected = new Map<number, Buffer>();
    for (let pcr = 0; pcr < 16; pcr++) {
      const d = extend256(tpm, pcr, pcr + 1);
      expected.set(pcr, H(ALG.SHA256, ZERO32, d));
    }
    // A SHA-384 extend of PCR 7 checks that other banks are saved too.
    const d384 = Buffer.alloc(48, 0x77);
    ok(tpm, pcrExtend(7, [{ hashAlg: ALG.SHA384, digest: d384 }]));
    ok(tpm, shutdown(SU.STATE));
    powerCycle(tpm, SU.STATE);
    for (let pcr = 0; pcr < 16; pcr++) assert.deepEqual(readPcr(tpm, pcr), expected.get(pcr), `PCR ${pcr}`);
    assert.deepEqual(readPcr(tpm, 7, ALG.SHA384), H(ALG.SHA384, Buffer.alloc(48), d384));
  });

  test('TPM Resume resets PCR 16 and 23 and returns PCR 17-22 to all ones', () => {
    const tpm = startedEngine();
    extend256(tpm, 16, 0x16);
    extend256(tpm, 23, 0x23);
    extend256(tpm, 17, 0x17, 4);
    ok(tpm, shutdown(SU.STATE));
    powerCycle(tpm, SU.STATE);
    assert.deepEqual(readPcr(tpm, 16), ZERO32);
    assert.deepEqual(readPcr(tpm, 23), ZERO32);
    for (let pcr = 17; pcr <= 22; pcr++) assert.deepEqual(readPcr(tpm, pcr), ONES32, `PCR ${pcr}`);
  });

  test('TPM Resume restores the pcrUpdateCounter saved by Shutdown(STATE)', () => {
    const tpm = startedEngine();
    extend256(tpm, 1, 1);
    extend256(tpm, 2, 2);
    const before = pcrUpdateCounter(tpm);
    ok(tpm, shutdown(SU.STATE));
    powerCycle(tpm, SU.STATE);
    assert.equal(pcrUpdateCounter(tpm), before);
  });

  test('TPM Resume increments restartCount and leaves resetCount unchanged', () => {
    const tpm = startedEngine();
    const before = clockInfo(tpm);
    ok(tpm, shutdown(SU.STATE));
    powerCycle(tpm, SU.STATE);
    const after = clockInfo(tpm);
    assert.equal(after.restartCount, before.restartCount + 1);
    assert.equal(after.resetCount, before.resetCount);
  });

  test('Shutdown(STATE) then Startup(CLEAR) is a TPM Restart: PCRs reset, restartCount increments, resetCount unchanged', () => {
    const tpm = startedEngine();
    extend256(tpm, 0, 1);
    const before = clockInfo(tpm);
    ok(tpm, shutdown(SU.STATE));
    powerCycle(tpm, SU.CLEAR);
    assert.deepEqual(readPcr(tpm, 0), ZERO32);
    const after = clockInfo(tpm);
    assert.equal(after.restartCount, before.restartCount + 1);
    assert.equal(after.resetCount, before.resetCount);
  });

  test('Shutdown(CLEAR) then Startup(CLEAR) is a TPM Reset: PCRs reset, resetCount increments, restartCount returns to zero', () => {
    const tpm = startedEngine();
    ok(tpm, shutdown(SU.STATE));
    powerCycle(tpm, SU.STATE); // restartCount 1
    for (const b of BANKS) ok(tpm, pcrExtend(3, [{ hashAlg: b.alg, digest: Buffer.alloc(b.size, 3) }]));
    const before = clockInfo(tpm);
    assert.equal(before.restartCount, 1);
    ok(tpm, shutdown(SU.CLEAR));
    powerCycle(tpm, SU.CLEAR);
    for (const b of BANKS) assert.deepEqual(readPcr(tpm, 3, b.alg), Buffer.alloc(b.size), `bank 0x${b.alg.toString(16)}`);
    const after = clockInfo(tpm);
    assert.equal(after.resetCount, before.resetCount + 1);
    assert.equal(after.restartCount, 0);
  });

  test('TPM Reset clears the pcrUpdateCounter to zero', () => {
    const tpm = startedEngine();
    extend256(tpm, 5, 5);
    assert.ok(pcrUpdateCounter(tpm) > 0);
    ok(tpm, shutdown(SU.CLEAR));
    powerCycle(tpm, SU.CLEAR);
    assert.equal(pcrUpdateCounter(tpm), 0);
  });

  test('a power cycle flushes transient objects (hash sequences)', () => {
    const tpm = startedEngine();
    const h = ok(tpm, hashSequenceStart('', ALG.SHA256)).handle!;
    assert.equal(h >>> 24, 0x80);
    ok(tpm, shutdown(SU.STATE));
    powerCycle(tpm, SU.STATE);
    const caps = parse.getCapability(ok(tpm, getCapability(CAP.HANDLES, HR.TRANSIENT, 16))).capabilityData;
    assert.deepEqual((caps as { items: number[] }).items, []);
  });

  test('TPMA_STARTUP_CLEAR.orderly is SET after an orderly shutdown and CLEAR after a power loss', () => {
    const tpm = startedEngine();
    assert.equal(startupClearOrderly(tpm), true, 'first start after manufacture');
    tpm.powerOn(); // power lost: no Shutdown
    ok(tpm, startup(SU.CLEAR));
    assert.equal(startupClearOrderly(tpm), false, 'after a power loss');
    ok(tpm, shutdown(SU.CLEAR));
    powerCycle(tpm, SU.CLEAR);
    assert.equal(startupClearOrderly(tpm), true, 'after Shutdown(CLEAR)');
  });

  test('Shutdown(STATE) after PCR_Allocate returns TPM_RC_TYPE + P1 (0x1CA): a CLEAR state save is required', () => {
    // Part 3 §9.4 TPM2_Shutdown: TPM_RC_TYPE "if PCR bank has been re-configured, a CLEAR StateSave is required".
    const tpm = startedEngine();
    const r = parse.pcrAllocate(ok(tpm, pcrAllocate([selection(ALG.SHA1, [])])));
    assert.equal(r.allocationSuccess, true);
    fails(tpm, shutdown(SU.STATE), RC_TYPE_P1);
  });

  test('Startup(CLEAR) at locality 3 initializes PCR 0 to 0…03 in every bank (startup locality)', () => {
    // PC-Client PTP "PCR Initial and Reset Values": PCR[0] ends in the locality of TPM2_Startup;
    // Part 4 PCRStartup sets pcrData[size-1] = locality for the H-CRTM PCR.
    const tpm = newEngine();
    ok(tpm, startup(SU.CLEAR), 3);
    for (const b of BANKS) {
      const expected = Buffer.alloc(b.size);
      expected[b.size - 1] = 3;
      assert.deepEqual(readPcr(tpm, 0, b.alg), expected, `bank 0x${b.alg.toString(16)}`);
    }
  });

  test('a Startup with trailing bytes returns TPM_RC_SIZE and leaves the TPM unstarted', () => {
    const tpm = newEngine();
    fails(tpm, buildCommand({ cc: 0x144, params: Buffer.concat([u16b(SU.CLEAR), Buffer.from([0])]) }), 0x095);
    fails(tpm, getRandom(1), RC_INITIALIZE);
    assert.equal(exec(tpm, startup(SU.CLEAR)).rc, 0);
  });
});
