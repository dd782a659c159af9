import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { FileStateStore, MemoryStateStore, type StateStore } from '../../src/tpm/tpm2/state/store.ts';
import { NvStateError } from '../../src/tpm/tpm2/state/nv-state.ts';
import { ALG, RH, SU } from '../../src/tpm/tpm2/constants.ts';
import { getRandom, hash, parse, pcrAllocate, pcrExtend, pcrRead, readClock, selection, shutdown, startup } from '../helpers/tpm2-commands.ts';
import { H, exec, fails, manualClock, newEngine, ok, pinnedEntropy, readPcr } from '../helpers/tpm2-engine.ts';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vtpmd-tpm2-test-'));
  dirs.push(d);
  return d;
}
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function clockInfo(tpm: Tpm2Engine) {
  return parse.readClock(ok(tpm, readClock())).clockInfo;
}

describe('NV persistence', () => {
  test('a fresh state directory manufactures a TPM and writes its state file', () => {
    const dir = tempDir();
    const store = new FileStateStore(dir);
    assert.equal(existsSync(store.path), false);
    newEngine({ store });
    assert.equal(existsSync(store.path), true);
    assert.ok(readFileSync(store.path).length > 0);
  });

  test('Clock persists across a power cycle of the same engine', () => {
    const clock = manualClock(0);
    const tpm = newEngine({ now: clock.now });
    ok(tpm, startup(SU.CLEAR));
    clock.advance(123_456);
    ok(tpm, shutdown(SU.CLEAR));
    tpm.powerOn();
    ok(tpm, startup(SU.CLEAR));
    assert.equal(clockInfo(tpm).clock, 123_456n);
  });

  test('Clock, resetCount and restartCount persist across a new engine on the same FileStateStore', () => {
    const dir = tempDir();
    const c1 = manualClock(0);
    const a = newEngine({ store: new FileStateStore(dir), now: c1.now });
    ok(a, startup(SU.CLEAR));
    c1.advance(50_000);
    const before = clockInfo(a);
    ok(a, shutdown(SU.STATE));

    const c2 = manualClock(999_999); // another process, another monotonic origin
    const b = newEngine({ store: new FileStateStore(dir), now: c2.now });
    ok(b, startup(SU.CLEAR));
    const afterStart = clockInfo(b);
    assert.equal(afterStart.clock, before.clock);
    assert.equal(afterStart.resetCount, before.resetCount);
    assert.equal(afterStart.restartCount, before.restartCount + 1);
    c2.advance(10);
    assert.equal(clockInfo(b).clock, before.clock + 10n);
  });

  test('Shutdown(STATE) survives a process restart: a new engine accepts Startup(STATE) and restores PCR 0-15', () => {
    const dir = tempDir();
    const a = newEngine({ store: new FileStateStore(dir) });
    ok(a, startup(SU.CLEAR));
    const d = Buffer.alloc(32, 0x42);
    ok(a, pcrExtend(7, [{ hashAlg: ALG.SHA256, digest: d }]));
    ok(a, pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: d }]));
    ok(a, shutdown(SU.STATE));

    const b = newEngine({ store: new FileStateStore(dir) });
    ok(b, startup(SU.STATE));
    assert.deepEqual(readPcr(b, 7), H(ALG.SHA256, Buffer.alloc(32), d));
    assert.deepEqual(readPcr(b, 16), Buffer.alloc(32));
  });

  test('a pending PCR allocation persists and applies at the next engine’s Startup(CLEAR)', () => {
    const dir = tempDir();
    const a = newEngine({ store: new FileStateStore(dir) });
    ok(a, startup(SU.CLEAR));
    ok(a, pcrAllocate([selection(ALG.SHA1, [])]));
    const b = newEngine({ store: new FileStateStore(dir) });
    ok(b, startup(SU.CLEAR));
    const out = parse.pcrRead(ok(b, pcrRead([selection(ALG.SHA1, [0])])));
    assert.deepEqual(out.pcrValues, []);
  });

  test('hierarchy proofs persist: two engines on the same store issue the same hash ticket', () => {
    const dir = tempDir();
    const a = newEngine({ store: new FileStateStore(dir), entropy: pinnedEntropy('a') });
    ok(a, startup(SU.CLEAR));
    const ta = parse.hash(ok(a, hash('ticket me', ALG.SHA256, RH.OWNER))).validation;
    const b = newEngine({ store: new FileStateStore(dir), entropy: pinnedEntropy('b') });
    ok(b, startup(SU.CLEAR));
    const tb = parse.hash(ok(b, hash('ticket me', ALG.SHA256, RH.OWNER))).validation;
    assert.deepEqual(tb, ta);
    const c = newEngine({ entropy: pinnedEntropy('c') });
    ok(c, startup(SU.CLEAR));
    assert.notDeepEqual(parse.hash(ok(c, hash('ticket me', ALG.SHA256, RH.OWNER))).validation.digest, ta.digest);
  });

  test('the state file is replaced atomically: no temporary file remains after commands', () => {
    const dir = tempDir();
    const tpm = newEngine({ store: new FileStateStore(dir) });
    ok(tpm, startup(SU.CLEAR));
    ok(tpm, shutdown(SU.CLEAR));
    assert.deepEqual(readdirSync(dir), ['tpm2-nv.json']);
  });

  test('a corrupted (non-JSON) state file makes the constructor throw NvStateError', () => {
    const dir = tempDir();
    const store = new FileStateStore(dir);
    newEngine({ store });
    writeFileSync(store.path, readFileSync(store.path).subarray(0, 17));
    assert.throws(() => newEngine({ store: new FileStateStore(dir) }), NvStateError);
    writeFileSync(store.path, Buffer.from([0xff, 0x00, 0x13]));
    assert.throws(() => newEngine({ store: new FileStateStore(dir) }), NvStateError);
  });

  test('a state file of another format or version makes the constructor throw NvStateError', () => {
    const dir = tempDir();
    const store = new FileStateStore(dir);
    newEngine({ store });
    const json = JSON.parse(readFileSync(store.path, 'utf8'));
    writeFileSync(store.path, JSON.stringify({ ...json, format: 'something-else' }));
    assert.throws(() => newEngine({ store: new FileStateStore(dir) }), NvStateError);
    writeFileSync(store.path, JSON.stringify({ ...json, version: 999 }));
    assert.throws(() => newEngine({ store: new FileStateStore(dir) }), NvStateError);
    writeFileSync(store.path, 'null');
    assert.throws(() => newEngine({ store: new FileStateStore(dir) }), NvStateError);
  });

  test('a state file with a malformed field makes the constructor throw NvStateError, not another error', () => {
    const dir = tempDir();
    const store = new FileStateStore(dir);
    newEngine({ store });
    const json = JSON.parse(readFileSync(store.path, 'utf8'));
    for (const broken of [{ ...json, clock: 'not-a-number' }, { ...json, clock: undefined }]) {
      writeFileSync(store.path, JSON.stringify(broken));
      assert.throws(() => newEngine({ store: new FileStateStore(dir) }), NvStateError);
    }
  });

  test('a new engine from a MemoryStateStore blob continues the saved state', () => {
    const store = new MemoryStateStore();
    const a = newEngine({ store });
    ok(a, startup(SU.CLEAR));
    ok(a, shutdown(SU.CLEAR));
    const resetCount = clockInfo(a).resetCount;
    const blob = store.load()!;
    const b = newEngine({ store: new MemoryStateStore(blob) });
    ok(b, startup(SU.CLEAR));
    assert.equal(clockInfo(b).resetCount, resetCount + 1);
    assert.deepEqual(b.nv.hierarchy.proofs, a.nv.hierarchy.proofs);
  });

  test('a store that cannot be written turns the command into TPM_RC_FAILURE (0x101) and reports it', () => {
    let failing = false;
    const inner = new MemoryStateStore();
    const store: StateStore = {
      load: () => inner.load(),
      save: (d) => {
        if (failing) throw new Error('disk full');
        inner.save(d);
      },
    };
    const reported: unknown[] = [];
    const tpm = newEngine({ store, onInternalError: (e) => reported.push(e) });
    failing = true;
    fails(tpm, startup(SU.CLEAR), 0x101);
    assert.equal(reported.length, 1);
    assert.match(String((reported[0] as Error).message), /disk full/);
    failing = false;
    // Whatever state the failed command left, the engine keeps answering with well-formed responses.
    exec(tpm, getRandom(1));
    exec(tpm, startup(SU.CLEAR));
  });
});
