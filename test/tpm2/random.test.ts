import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { CC } from '../../src/tpm/tpm2/constants.ts';
import { buildCommand, getRandom, parse, stirRandom } from '../helpers/tpm2-commands.ts';
import { fails, ok, pinnedEntropy, startedEngine } from '../helpers/tpm2-engine.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { bufferedEntropy } from '../../src/tpm/crypto/random.ts';

const RC = { SIZE_P1: 0x1d5, INSUFFICIENT_P1: 0x1da };

function random(tpm: Tpm2Engine, n: number): Buffer {
  return parse.getRandom(ok(tpm, getRandom(n)));
}

describe('TPM2_GetRandom and TPM2_StirRandom', () => {
  test('GetRandom returns exactly the number of octets requested up to the largest digest', () => {
    const tpm = startedEngine();
    for (const n of [1, 16, 20, 32, 48, 64]) assert.equal(random(tpm, n).length, n);
  });

  test('GetRandom of 100 octets returns 64 (sizeof(TPMU_HA))', () => {
    const tpm = startedEngine();
    assert.equal(random(tpm, 100).length, 64);
    assert.equal(random(tpm, 0xffff).length, 64);
  });

  test('GetRandom of zero octets returns an empty buffer', () => {
    const tpm = startedEngine();
    assert.equal(random(tpm, 0).length, 0);
  });

  test('successive GetRandom calls return different octets', () => {
    const tpm = startedEngine();
    assert.notDeepEqual(random(tpm, 32), random(tpm, 32));
  });

  test('two engines with the same pinned entropy source return the same random stream', () => {
    const a = startedEngine({ entropy: pinnedEntropy('same') });
    const b = startedEngine({ entropy: pinnedEntropy('same') });
    for (let i = 0; i < 4; i++) assert.deepEqual(random(a, 32), random(b, 32));
    const c = startedEngine({ entropy: pinnedEntropy('other') });
    assert.notDeepEqual(random(c, 32), random(startedEngine({ entropy: pinnedEntropy('same') }), 32));
  });

  test('StirRandom changes the GetRandom output under a pinned entropy source', () => {
    const plain = startedEngine({ entropy: pinnedEntropy('stir') });
    const stirred = startedEngine({ entropy: pinnedEntropy('stir') });
    ok(stirred, stirRandom('additional input'));
    for (let i = 0; i < 3; i++) assert.notDeepEqual(random(stirred, 32), random(plain, 32));
  });

  test('StirRandom with different inputs leads to different output, with the same input to the same output', () => {
    const run = (input: string) => {
      const tpm = startedEngine({ entropy: pinnedEntropy('stir2') });
      ok(tpm, stirRandom(input));
      return random(tpm, 64);
    };
    assert.notDeepEqual(run('one'), run('two'));
    assert.deepEqual(run('one'), run('one'));
  });

  test('StirRandom accepts 128 octets and refuses 129 with TPM_RC_SIZE + P1 (0x1D5)', () => {
    const tpm = startedEngine();
    ok(tpm, stirRandom(Buffer.alloc(128, 1)));
    fails(tpm, stirRandom(Buffer.alloc(129, 1)), RC.SIZE_P1);
  });

  test('GetRandom with a truncated bytesRequested returns TPM_RC_INSUFFICIENT + P1 (0x1DA)', () => {
    const tpm = startedEngine();
    fails(tpm, buildCommand({ cc: CC.GetRandom, params: Buffer.from([0x10]) }), RC.INSUFFICIENT_P1);
  });
});

describe('bufferedEntropy', () => {
  test('hands out the source bytes in order, each once, reading a chunk at a time', () => {
    let calls = 0;
    let next = 0;
    const source = (n: number) => {
      calls++;
      return Buffer.from(Array.from({ length: n }, () => next++ & 0xff));
    };
    const e = bufferedEntropy(source, 64);
    const out = Buffer.concat([e(10), e(30), e(24), e(5), e(100)]);
    assert.equal(calls, 3, 'two chunks, and a request larger than a chunk straight from the source');
    assert.deepEqual([...out.subarray(0, 64)], Array.from({ length: 64 }, (_, i) => i));
    assert.deepEqual([...out.subarray(64, 69)], [64, 65, 66, 67, 68]);
    assert.equal(out.length, 169);
  });
});
