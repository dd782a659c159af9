import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ALG, CC } from '../../src/tpm/tpm2/constants.ts';
import { buildCommand, getTestResult, incrementalSelfTest, parse, selfTest, u32b } from '../helpers/tpm2-commands.ts';
import { fails, ok, startedEngine } from '../helpers/tpm2-engine.ts';

const RC = { VALUE_P1: 0x1c4, SIZE_P1: 0x1d5 };

describe('TPM2_SelfTest, TPM2_IncrementalSelfTest and TPM2_GetTestResult', () => {
  test('SelfTest(YES) and SelfTest(NO) succeed', () => {
    const tpm = startedEngine();
    ok(tpm, selfTest(true));
    ok(tpm, selfTest(false));
  });

  test('SelfTest with fullTest other than YES or NO returns TPM_RC_VALUE + P1 (0x1C4)', () => {
    const tpm = startedEngine();
    fails(tpm, buildCommand({ cc: CC.SelfTest, params: Buffer.from([2]) }), RC.VALUE_P1);
  });

  test('IncrementalSelfTest returns an empty toDoList: every algorithm is already tested', () => {
    const tpm = startedEngine();
    assert.deepEqual(parse.incrementalSelfTest(ok(tpm, incrementalSelfTest([ALG.SHA256, ALG.RSA, ALG.AES]))), []);
    assert.deepEqual(parse.incrementalSelfTest(ok(tpm, incrementalSelfTest([]))), []);
  });

  test('IncrementalSelfTest with more than MAX_ALG_LIST_SIZE (64) algorithms returns TPM_RC_SIZE + P1 (0x1D5)', () => {
    const tpm = startedEngine();
    const p = Buffer.concat([u32b(65), Buffer.alloc(65 * 2)]);
    fails(tpm, buildCommand({ cc: CC.IncrementalSelfTest, params: p }), RC.SIZE_P1);
  });

  test('GetTestResult returns TPM_RC_SUCCESS as testResult with empty outData', () => {
    const tpm = startedEngine();
    const r = parse.getTestResult(ok(tpm, getTestResult()));
    assert.equal(r.testResult, 0);
    assert.equal(r.outData.length, 0);
  });
});
