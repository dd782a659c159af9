import assert from 'node:assert/strict';
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { ChipClient } from '../../src/hwtpm/chip-client.ts';
import { GVTPM_PCR } from '../../src/hwtpm/host-boot.ts';
import { PssError, PssViolation, type PssCondition } from '../../src/pss/errors.ts';
import { MAX_UNCONFIRMED_COMMITS } from '../../src/pss/establish.ts';
import { ProtectedStorage } from '../../src/pss/protected-storage.ts';
import { KEY } from '../../src/pss/records.ts';
import { encodeDelta, type StateChange } from '../../src/tpm/state-delta.ts';
import { measurementOf, memoryChip, scratchDir, withDatabase } from './helpers.ts';

const MODEL = measurementOf('tpm2-model v1');
const OTHER_MODEL = measurementOf('tpm2-model v2');

const cleanups: (() => void)[] = [];
after(() => cleanups.forEach((c) => c()));

function dbDir(): string {
  const s = scratchDir();
  cleanups.push(s.cleanup);
  return join(s.dir, 'pss');
}

function nvm(vm: string, n: number): Buffer {
  return Buffer.from(`NVM of ${vm}, save ${n}`.padEnd(600, '#'));
}

/** Waits, a turn of the event loop at a time, until `done`; fails rather than hang. */
async function until(done: () => boolean, what: string): Promise<void> {
  for (let turns = 0; !done(); turns++) {
    if (turns > 10_000) assert.fail(`never happened: ${what}`);
    await new Promise((turn) => setImmediate(turn));
  }
}

function isViolation(condition: PssCondition, vmId?: string): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof PssViolation, `expected a PssViolation, got ${String(e)}`);
    assert.equal(e.condition, condition, e.message);
    if (vmId !== undefined) {
      assert.equal(e.vmId, vmId);
      assert.match(e.message, new RegExp(vmId));
    }
    assert.match(e.message, new RegExp(condition));
    return true;
  };
}

/** `client` with a counter whose increments fail while `failing` is set, as a chip that stopped answering. */
function flakyCounter(client: ChipClient): { chip: ChipClient; failing: boolean } {
  const state = { chip: client, failing: false };
  state.chip = Object.create(client, {
    incrementCounter: {
      value: (id: number, auth?: Uint8Array) => (state.failing ? Promise.reject(new Error('the chip stopped answering')) : client.incrementCounter(id, auth)),
    },
  });
  return state;
}

// Making a chip's storage root key is the slow part of a test, so PSSs share one chip (each PSS
// has its own key and counter on it) unless a test changes the chip's PCRs.
let sharedChip: Promise<ChipClient> | undefined;

async function setup(ownChip = false): Promise<{ dir: string; client: ChipClient; open: () => Promise<ProtectedStorage> }> {
  const client = ownChip ? (await memoryChip()).client : await (sharedChip ??= memoryChip().then((c) => c.client));
  const dir = dbDir();
  return { dir, client, open: () => ProtectedStorage.open({ dir, chip: client }) };
}

describe('protected storage', () => {
  test('each of several VMs gets back exactly the NVM it saved, also after a reopen', async () => {
    const { open } = await setup();
    let pss = await open();
    const vms = ['vm-a', 'vm-b', 'vm-c', 'vm-ü'];
    for (const vm of vms) await pss.save(vm, MODEL, nvm(vm, 1));
    for (const vm of vms) assert.deepEqual(await pss.load(vm, MODEL), nvm(vm, 1));
    assert.equal(await pss.load('never-saved', MODEL), undefined);
    assert.deepEqual(pss.list(), [...vms].sort());
    await pss.close();
    pss = await open();
    for (const vm of vms) assert.deepEqual(await pss.load(vm, MODEL), nvm(vm, 1));
    await pss.close();
  });

  test('versions increase by one per save and continue after a reopen', async () => {
    const { open } = await setup();
    let pss = await open();
    for (let i = 1; i <= 3; i++) {
      await pss.save('vm-a', MODEL, nvm('vm-a', i));
      assert.equal(pss.version('vm-a'), i);
    }
    await pss.close();
    pss = await open();
    assert.equal(pss.version('vm-a'), 3);
    await pss.save('vm-a', MODEL, nvm('vm-a', 4));
    assert.equal(pss.version('vm-a'), 4);
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 4));
    await pss.close();
  });

  test('an older copy of a blob put back in place of the latest is refused as not-latest', async () => {
    const { dir, open } = await setup();
    let pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    await pss.save('vm-b', MODEL, nvm('vm-b', 1));
    await pss.close();
    const old = await withDatabase(dir, (db) => db.get(KEY.blob('vm-a')));
    pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 2));
    await pss.close();
    await withDatabase(dir, (db) => db.put(KEY.blob('vm-a'), old!));
    pss = await open();
    await assert.rejects(pss.load('vm-a', MODEL), isViolation('not-latest', 'vm-a'));
    assert.deepEqual(await pss.load('vm-b', MODEL), nvm('vm-b', 1), 'the other VM keeps working');
    await pss.close();
  });

  for (const [what, damage] of [
    ['a flipped byte in the ciphertext', (b: Buffer) => Buffer.from(b.map((x, i) => (i === b.length - 40 ? x ^ 1 : x)))],
    ['a flipped byte in the version field of the header', (b: Buffer) => Buffer.from(b.map((x, i) => (i === 22 + 1 + 4 + 1 + 32 + 7 ? x ^ 1 : x)))],
    ['a flipped tag byte', (b: Buffer) => Buffer.from(b.map((x, i) => (i === b.length - 1 ? x ^ 0x80 : x)))],
    ['a blob truncated inside the ciphertext', (b: Buffer) => b.subarray(0, b.length - 100)],
    ['a blob truncated inside the header', (b: Buffer) => b.subarray(0, 30)],
    ['an empty blob', () => Buffer.alloc(0)],
  ] as const) {
    test(`${what} is refused as modified, and only that VM is refused`, async () => {
      const { dir, open } = await setup();
      let pss = await open();
      await pss.save('vm-a', MODEL, nvm('vm-a', 1));
      await pss.save('vm-b', MODEL, nvm('vm-b', 1));
      await pss.close();
      await withDatabase(dir, async (db) => db.put(KEY.blob('vm-a'), damage((await db.get(KEY.blob('vm-a')))!)));
      pss = await open();
      await assert.rejects(pss.load('vm-a', MODEL), isViolation('modified', 'vm-a'));
      assert.deepEqual(await pss.load('vm-b', MODEL), nvm('vm-b', 1));
      await pss.save('vm-b', MODEL, nvm('vm-b', 2));
      assert.deepEqual(await pss.load('vm-b', MODEL), nvm('vm-b', 2));
      await pss.close();
    });
  }

  test("a missing blob is refused as modified", async () => {
    const { dir, open } = await setup();
    let pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    await pss.close();
    await withDatabase(dir, (db) => db.del(KEY.blob('vm-a')));
    pss = await open();
    await assert.rejects(pss.load('vm-a', MODEL), isViolation('modified', 'vm-a'));
    await pss.close();
  });

  test("two VMs' blobs swapped are each refused as wrong-owner", async () => {
    const { dir, open } = await setup();
    let pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    await pss.save('vm-b', MODEL, nvm('vm-b', 1));
    await pss.save('vm-c', MODEL, nvm('vm-c', 1));
    await pss.close();
    await withDatabase(dir, async (db) => {
      const a = (await db.get(KEY.blob('vm-a')))!;
      const b = (await db.get(KEY.blob('vm-b')))!;
      await db.batch([
        { type: 'put', key: KEY.blob('vm-a'), value: b },
        { type: 'put', key: KEY.blob('vm-b'), value: a },
      ]);
    });
    pss = await open();
    await assert.rejects(pss.load('vm-a', MODEL), isViolation('wrong-owner', 'vm-a'));
    await assert.rejects(pss.load('vm-b', MODEL), isViolation('wrong-owner', 'vm-b'));
    assert.deepEqual(await pss.load('vm-c', MODEL), nvm('vm-c', 1));
    await pss.close();
  });

  test('a model with a different measurement is refused as wrong-measurement', async () => {
    const { open } = await setup();
    const pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    await assert.rejects(pss.load('vm-a', OTHER_MODEL), isViolation('wrong-measurement', 'vm-a'));
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 1), 'the right model still loads it');
    await pss.close();
  });

  test('a blob made by another PSS on another chip is refused as foreign', async () => {
    const here = await setup();
    const there = await setup(true);
    const pssHere = await here.open();
    const pssThere = await there.open();
    await pssHere.save('vm-a', MODEL, nvm('vm-a', 1));
    await pssHere.save('vm-b', MODEL, nvm('vm-b', 1));
    await pssThere.save('vm-a', MODEL, nvm('vm-a', 7));
    await pssHere.close();
    await pssThere.close();
    const theirs = await withDatabase(there.dir, (db) => db.get(KEY.blob('vm-a')));
    await withDatabase(here.dir, (db) => db.put(KEY.blob('vm-a'), theirs!));
    const pss = await here.open();
    await assert.rejects(pss.load('vm-a', MODEL), isViolation('foreign', 'vm-a'));
    assert.deepEqual(await pss.load('vm-b', MODEL), nvm('vm-b', 1));
    await pss.close();
  });

  test('a whole database moved to another chip refuses every VM as foreign', async () => {
    const { dir, open } = await setup();
    const pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    await pss.close();
    const elsewhere = await memoryChip();
    const moved = await ProtectedStorage.open({ dir, chip: elsewhere.client });
    assert.equal(moved.refusal?.condition, 'foreign');
    await assert.rejects(moved.load('vm-a', MODEL), isViolation('foreign', 'vm-a'));
    await moved.close();
  });

  for (const laterCommits of [1, 5]) {
    test(`the database copied and put back after ${laterCommits} more durable commit(s) is refused as rollback, naming both numbers`, async () => {
      const { dir, open } = await setup();
      let pss = await open();
      await pss.save('vm-a', MODEL, nvm('vm-a', 1));
      await pss.save('vm-b', MODEL, nvm('vm-b', 1));
      await pss.close();
      const copy = `${dir}-copy`;
      cpSync(dir, copy, { recursive: true });
      pss = await open();
      for (let i = 0; i < laterCommits; i++) await pss.save('vm-a', MODEL, nvm('vm-a', 2 + i));
      const { epoch } = pss.status();
      await pss.close();
      rmSync(dir, { recursive: true });
      cpSync(copy, dir, { recursive: true });
      pss = await open();
      assert.equal(pss.refusal?.condition, 'rollback');
      assert.match(pss.refusal!.message, new RegExp(`epoch ${epoch! - BigInt(laterCommits)}.*counter is at ${epoch}`));
      await assert.rejects(pss.load('vm-a', MODEL), isViolation('rollback', 'vm-a'));
      await assert.rejects(pss.load('vm-b', MODEL), isViolation('rollback', 'vm-b'));
      await assert.rejects(pss.save('vm-c', MODEL, nvm('vm-c', 1)), isViolation('rollback', 'vm-c'));
      await pss.close();
    });
  }

  test("one VM's record and blob rolled back together, under the current head, is refused as rollback", async () => {
    const { dir, open } = await setup();
    let pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    await pss.close();
    const old = await withDatabase(dir, async (db) => ({ rec: (await db.get(KEY.record('vm-a')))!, blob: (await db.get(KEY.blob('vm-a')))! }));
    pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 2));
    await pss.close();
    await withDatabase(dir, (db) =>
      db.batch([
        { type: 'put', key: KEY.record('vm-a'), value: old.rec },
        { type: 'put', key: KEY.blob('vm-a'), value: old.blob },
      ]),
    );
    pss = await open();
    assert.equal(pss.refusal?.condition, 'rollback');
    await assert.rejects(pss.load('vm-a', MODEL), isViolation('rollback', 'vm-a'));
    await pss.close();
  });

  test('an edited database head is refused as modified', async () => {
    const { dir, open } = await setup();
    let pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    await pss.close();
    await withDatabase(dir, async (db) => {
      const head = JSON.parse((await db.get(KEY.head))!.toString());
      head.epoch = String(BigInt(head.epoch) + 1n);
      await db.put(KEY.head, Buffer.from(JSON.stringify(head)));
    });
    pss = await open();
    assert.equal(pss.refusal?.condition, 'modified');
    await pss.close();
  });

  for (const pcr of [0, 9, GVTPM_PCR.MANAGER, GVTPM_PCR.PSS]) {
    test(`a measurement into bound PCR ${pcr} refuses every VM as tcb-changed at the next open`, async () => {
      const { client, open } = await setup(true);
      let pss = await open();
      await pss.save('vm-a', MODEL, nvm('vm-a', 1));
      await pss.close();
      await client.measure(pcr, Buffer.from('an unapproved component'));
      pss = await open();
      assert.equal(pss.refusal?.condition, 'tcb-changed');
      await assert.rejects(pss.load('vm-a', MODEL), isViolation('tcb-changed', 'vm-a'));
      await assert.rejects(pss.save('vm-a', MODEL, nvm('vm-a', 2)), isViolation('tcb-changed', 'vm-a'));
      await pss.close();
    });
  }

  test('a measurement into an unbound PCR (the vMA) leaves the PSS working', async () => {
    const { client, open } = await setup(true);
    let pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    await pss.close();
    await client.measure(GVTPM_PCR.VMA, Buffer.from('vma'));
    pss = await open();
    assert.equal(pss.refusal, undefined);
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 1));
    await pss.close();
  });

  test('200 concurrent saves share far fewer chip counter increments than saves, and all land', async () => {
    const { client, open } = await setup();
    let pss = await open();
    const { counterId } = pss.status();
    const before = await client.readCounter(counterId!);
    const saves: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) saves.push(pss.save(`vm-${i % 50}`, MODEL, nvm(`vm-${i % 50}`, Math.floor(i / 50) + 1)));
    await Promise.all(saves);
    const increments = Number((await client.readCounter(counterId!)) - before);
    assert.ok(increments >= 1 && increments <= 5, `${increments} counter increments for 200 saves`);
    assert.equal(pss.status().epoch, before + BigInt(increments), 'the epoch follows the counter');
    for (let vm = 0; vm < 50; vm++) assert.equal(pss.version(`vm-${vm}`), 4);
    await pss.close();
    pss = await open();
    for (let vm = 0; vm < 50; vm++) assert.deepEqual(await pss.load(`vm-${vm}`, MODEL), nvm(`vm-${vm}`, 4));
    await pss.close();
  });

  test('a non-durable save is visible at once, costs no counter increment alone, and lands by close', async () => {
    const { client, open } = await setup();
    let pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    const { counterId } = pss.status();
    const before = await client.readCounter(counterId!);
    await pss.save('vm-a', MODEL, nvm('vm-a', 2), { durable: false });
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 2));
    await pss.flush();
    assert.equal(await client.readCounter(counterId!), before);
    await pss.save('vm-a', MODEL, nvm('vm-a', 3), { durable: false });
    await pss.close();
    pss = await open();
    assert.equal(pss.refusal, undefined);
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 3));
    assert.equal(pss.version('vm-a'), 3);
    await pss.close();
  });

  test('remove forgets a VM durably and a later save starts it again', async () => {
    const { open } = await setup();
    let pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    await pss.save('vm-b', MODEL, nvm('vm-b', 1));
    await pss.remove('vm-a');
    assert.deepEqual(pss.list(), ['vm-b']);
    await pss.close();
    pss = await open();
    assert.equal(pss.refusal, undefined);
    assert.equal(await pss.load('vm-a', MODEL), undefined);
    await pss.save('vm-a', MODEL, nvm('vm-a', 9));
    assert.equal(pss.version('vm-a'), 1);
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 9));
    await pss.close();
  });

  test('a released VM leaves only its digest in memory; its record is read back and checked when it loads again', async () => {
    const { open } = await setup();
    const pss = await open();
    for (const vm of ['vm-a', 'vm-b']) for (let n = 1; n <= 3; n++) await pss.save(vm, MODEL, nvm(vm, n));
    assert.equal(pss.status().held, 2, 'saved images are held for deltas');
    pss.release('vm-a');
    pss.release('vm-b');
    assert.equal(pss.status().held, 0);
    assert.deepEqual(pss.list(), ['vm-a', 'vm-b']);
    assert.equal(pss.status().vms, 2);
    assert.equal(pss.version('vm-a'), 3);
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 3));
    assert.equal(pss.status().held, 1, 'a load holds the record again');
    await pss.save('vm-a', MODEL, nvm('vm-a', 4));
    assert.equal(pss.version('vm-a'), 4);
    // A record only on disk: removal still deletes its whole chain, and the VM is gone.
    await pss.remove('vm-b');
    assert.deepEqual(pss.list(), ['vm-a']);
    assert.equal(await pss.load('vm-b', MODEL), undefined);
    await pss.close();
    const again = await open();
    assert.equal(again.refusal, undefined);
    assert.deepEqual(await again.load('vm-a', MODEL), nvm('vm-a', 4));
    assert.equal(await again.load('vm-b', MODEL), undefined);
    await again.close();
  });

  test('a record changed in the database under the running PSS is refused as modified for that VM only', async () => {
    const { open } = await setup();
    const pss = await open();
    // What another writer of its files could do to the running PSS's database.
    const db = (pss as unknown as { db: { get(k: string): Promise<Buffer | undefined>; put(k: string, v: Buffer): Promise<void>; del(k: string): Promise<void> } }).db;
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    const first = (await db.get(KEY.record('vm-a')))!;
    for (const vm of ['vm-a', 'vm-b']) {
      await pss.save(vm, MODEL, nvm(vm, 2));
      pss.release(vm);
    }
    // vm-a's first record put back: a valid record under this PSS's key, just not the latest.
    await db.put(KEY.record('vm-a'), first);
    await assert.rejects(pss.load('vm-a', MODEL), isViolation('modified', 'vm-a'));
    assert.deepEqual(await pss.load('vm-b', MODEL), nvm('vm-b', 2), 'the other VM loads');
    pss.release('vm-b');
    await db.del(KEY.record('vm-b'));
    await assert.rejects(pss.load('vm-b', MODEL), (e: unknown) => isViolation('modified', 'vm-b')(e) && /removed/.test((e as Error).message));
    await pss.close();
  });

  test('a commit whose counter increment failed stops the PSS, and the reopened PSS recovers that commit', async () => {
    const { dir, client } = await setup();
    const flaky = flakyCounter(client);
    let pss = await ProtectedStorage.open({ dir, chip: flaky.chip });
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    flaky.failing = true;
    await assert.rejects(pss.save('vm-a', MODEL, nvm('vm-a', 2)), (e: unknown) => e instanceof PssError && e.code === 'commit-failed' && /until it recovers/.test(e.message));
    await assert.rejects(pss.save('vm-b', MODEL, nvm('vm-b', 1)), (e: unknown) => e instanceof PssError && e.code === 'commit-failed');
    assert.equal(pss.status().failure, 'the chip stopped answering');
    await pss.close();
    pss = await ProtectedStorage.open({ dir, chip: client });
    assert.equal(pss.refusal, undefined, 'a database one commit ahead of the counter is the cut-off commit, not a rollback');
    assert.equal(await client.readCounter(pss.status().counterId!), pss.status().epoch, 'the counter caught up');
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 2));
    await pss.save('vm-a', MODEL, nvm('vm-a', 3));
    await pss.close();
    pss = await ProtectedStorage.open({ dir, chip: client });
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 3));
    await pss.close();
  });

  test('recover() brings a PSS back from a failed commit once the chip answers again, keeping what reached the disk', async () => {
    const { dir, client } = await setup();
    const flaky = flakyCounter(client);
    const pss = await ProtectedStorage.open({ dir, chip: flaky.chip });
    const causes: string[] = [];
    pss.onFailure((cause) => causes.push(cause));
    assert.equal(await pss.recover(), true, 'a PSS that has not failed is working');
    assert.equal(pss.status().recoveries, 0);
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    await pss.save('vm-b', MODEL, nvm('vm-b', 1));
    pss.release('vm-b');
    // A batched save shares the next window, whose increment fails.
    await pss.save('vm-c', MODEL, nvm('vm-c', 1), { durable: false });

    flaky.failing = true;
    await assert.rejects(pss.save('vm-a', MODEL, nvm('vm-a', 2)), (e: unknown) => e instanceof PssError && e.code === 'commit-failed' && /until it recovers/.test(e.message));
    assert.deepEqual(causes, ['the chip stopped answering'], 'told once');
    assert.equal(await pss.recover(), false, 'the chip still fails: catching the counter up fails');
    assert.equal(pss.status().failure, 'the chip stopped answering');
    assert.equal(pss.status().recoveryError, 'the chip stopped answering');
    await assert.rejects(pss.load('vm-b', MODEL), (e: unknown) => e instanceof PssError && e.code === 'commit-failed');

    flaky.failing = false;
    const [first, second] = await Promise.all([pss.recover(), pss.recover()]);
    assert.ok(first && second, 'concurrent calls share one attempt');
    assert.equal(pss.status().failure, undefined);
    assert.equal(pss.status().recoveryError, undefined);
    assert.equal(pss.status().recoveries, 1);
    assert.equal(await client.readCounter(pss.status().counterId!), pss.status().epoch, 'the counter caught up with the written commit');
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 2), 'the commit written before its increment failed is kept');
    assert.deepEqual(await pss.load('vm-b', MODEL), nvm('vm-b', 1), 'a VM on disk only loads');
    assert.deepEqual(await pss.load('vm-c', MODEL), nvm('vm-c', 1), 'so is the batched save written with it');
    await pss.save('vm-a', MODEL, nvm('vm-a', 3));
    await pss.save('vm-c', MODEL, nvm('vm-c', 2));
    assert.deepEqual(pss.list(), ['vm-a', 'vm-b', 'vm-c']);
    await pss.close();

    const again = await ProtectedStorage.open({ dir, chip: client });
    assert.equal(again.refusal, undefined);
    for (const [vm, n] of [['vm-a', 3], ['vm-b', 1], ['vm-c', 2]] as const) assert.deepEqual(await again.load(vm, MODEL), nvm(vm, n));
    await again.close();
  });

  test('recover() after a write that failed opens the database again, since LevelDB takes no write after one failed', async () => {
    const { dir, client } = await setup();
    const pss = await ProtectedStorage.open({ dir, chip: client });
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    const inner = pss as unknown as { db: { close(): Promise<void> } };
    const broken = inner.db;
    // A database that takes no more writes, as LevelDB is after a failed sync.
    await broken.close();
    await assert.rejects(pss.save('vm-a', MODEL, nvm('vm-a', 2)), (e: unknown) => e instanceof PssError && e.code === 'commit-failed');
    assert.ok(pss.status().failure, 'the failed write is the PSS failing, not one save');
    await assert.rejects(pss.save('vm-b', MODEL, nvm('vm-b', 1)), (e: unknown) => e instanceof PssError && e.code === 'commit-failed');
    assert.equal(await pss.recover(), true, pss.status().recoveryError);
    assert.notEqual(inner.db, broken, 'a database opened afresh');
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 1), 'the save whose write failed is not there');
    await pss.save('vm-a', MODEL, nvm('vm-a', 3));
    await pss.close();
    const again = await ProtectedStorage.open({ dir, chip: client });
    assert.deepEqual(await again.load('vm-a', MODEL), nvm('vm-a', 3));
    await again.close();
  });

  test('recover() refuses a database that changed while the commit had failed, and keeps failing', async () => {
    const { dir, client } = await setup();
    const flaky = flakyCounter(client);
    const pss = await ProtectedStorage.open({ dir, chip: flaky.chip });
    const db = (pss as unknown as { db: { get(k: string): Promise<Buffer | undefined>; put(k: string, v: Buffer): Promise<void> } }).db;
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    const older = (await db.get(KEY.head))!;
    await pss.save('vm-a', MODEL, nvm('vm-a', 2));
    flaky.failing = true;
    await assert.rejects(pss.save('vm-a', MODEL, nvm('vm-a', 3)));
    flaky.failing = false;
    // The head of two commits back: the database rolled back under the failed PSS.
    await db.put(KEY.head, older);
    assert.equal(await pss.recover(), false);
    assert.match(pss.status().recoveryError!, /^the database cannot be trusted after the failed commit \(rollback\): /);
    await assert.rejects(pss.save('vm-a', MODEL, nvm('vm-a', 4)), (e: unknown) => e instanceof PssError && e.code === 'commit-failed');
    await pss.close();
  });

  for (const ahead of [MAX_UNCONFIRMED_COMMITS, MAX_UNCONFIRMED_COMMITS + 1]) {
    test(`a database ${ahead} durable commits ahead of the chip counter is ${ahead <= MAX_UNCONFIRMED_COMMITS ? 'caught up' : 'refused: no crash leaves it that far ahead'}`, async () => {
      const { dir, client } = await setup();
      let pss = await ProtectedStorage.open({ dir, chip: client });
      await pss.save('vm-a', MODEL, nvm('vm-a', 1));
      const start = await client.readCounter(pss.status().counterId!);
      // A chip whose increments never reach its NV: what a crash before them leaves behind.
      let unsaved = 0n;
      const forgetful: ChipClient = Object.create(client, {
        incrementCounter: { value: async () => start + ++unsaved },
      });
      await pss.close();
      pss = await ProtectedStorage.open({ dir, chip: forgetful });
      for (let n = 2; n < 2 + ahead; n++) await pss.save('vm-a', MODEL, nvm('vm-a', n));
      await pss.close();
      pss = await ProtectedStorage.open({ dir, chip: client });
      if (ahead <= MAX_UNCONFIRMED_COMMITS) {
        assert.equal(pss.refusal, undefined);
        assert.equal(await client.readCounter(pss.status().counterId!), start + BigInt(ahead), 'the counter caught up');
        assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 1 + ahead), 'the unacknowledged commits are intact');
      } else {
        assert.equal(pss.refusal?.condition, 'rollback');
        assert.match(pss.refusal!.message, new RegExp(`epoch ${start + BigInt(ahead)}.*counter is at ${start}`));
        assert.equal(await client.readCounter(pss.status().counterId!), start, 'the counter was left alone');
      }
      await pss.close();
    });
  }

  test('a commit is written while the one before it waits for its counter increment, but answered only after its own', async () => {
    const { dir, client } = await setup();
    const held: (() => void)[] = [];
    const slow: ChipClient = Object.create(client, {
      incrementCounter: { value: (id: number, auth?: Uint8Array) => new Promise<void>((go) => held.push(go)).then(() => client.incrementCounter(id, auth)) },
    });
    const pss = await ProtectedStorage.open({ dir, chip: slow });
    const answered: string[] = [];
    const a = pss.save('vm-a', MODEL, nvm('vm-a', 1)).then(() => answered.push('vm-a'));
    await until(() => held.length === 1, 'the first increment is asked for');
    const b = pss.save('vm-b', MODEL, nvm('vm-b', 1)).then(() => answered.push('vm-b'));
    const counted = await client.readCounter(pss.status().counterId!);
    await until(() => pss.status().epoch === counted + 2n, 'the second window is written');
    assert.deepEqual(answered, [], 'both windows are written, neither answered before its increment');
    assert.equal(held.length, 1, "the second window's increment waits for the first's");
    held[0]!();
    await a;
    assert.deepEqual(answered, ['vm-a']);
    await until(() => held.length === 2, 'the second increment is asked for');
    held[1]!();
    await b;
    assert.equal(await client.readCounter(pss.status().counterId!), pss.status().epoch);
    await pss.close();
  });

  test('only the PSS moves its chip counter: an increment without its key is refused, so nobody else can make the database look rolled back', async () => {
    const { client, open } = await setup();
    let pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    const id = pss.status().counterId!;
    const before = await client.readCounter(id);
    await assert.rejects(client.incrementCounter(id));
    await assert.rejects(client.incrementCounter(id, Buffer.from('a guess')));
    assert.equal(await client.readCounter(id), before);
    await pss.save('vm-a', MODEL, nvm('vm-a', 2));
    await pss.close();
    pss = await open();
    assert.equal(pss.refusal, undefined);
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 2));
    await pss.close();
  });

  test('a database made before counters had a key goes on with its counter as it was made', async () => {
    const { dir, client, open } = await setup();
    // What the PSS made then: a counter anyone may increment, and no counterAuth in the meta.
    const unkeyed: ChipClient = Object.create(client, {
      createCounter: { value: () => client.createCounter() },
      incrementCounter: { value: (id: number) => client.incrementCounter(id) },
    });
    let pss = await ProtectedStorage.open({ dir, chip: unkeyed });
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    await pss.close();
    await withDatabase(dir, async (db) => {
      const meta = JSON.parse((await db.get(KEY.meta))!.toString());
      assert.equal(meta.counterAuth, true);
      delete meta.counterAuth;
      await db.put(KEY.meta, Buffer.from(JSON.stringify(meta)));
    });
    pss = await open();
    assert.equal(pss.refusal, undefined);
    await pss.save('vm-a', MODEL, nvm('vm-a', 2));
    await pss.close();
    pss = await open();
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 2));
    await pss.close();
  });

  test('violation messages name the VM and condition but never the NVM or key material', async () => {
    const { dir, open } = await setup();
    let pss = await open();
    const secret = Buffer.from('TOP-SECRET-NVM-CONTENT'.repeat(10));
    await pss.save('vm-a', MODEL, secret);
    await pss.close();
    const meta = await withDatabase(dir, async (db) => {
      const blob = (await db.get(KEY.blob('vm-a')))!;
      blob[blob.length - 3]! ^= 1;
      await db.put(KEY.blob('vm-a'), blob);
      return JSON.parse((await db.get(KEY.meta))!.toString());
    });
    pss = await open();
    const err = await pss.load('vm-a', MODEL).then(
      () => assert.fail('the damaged blob loaded'),
      (e: unknown) => e as PssViolation,
    );
    assert.equal(err.condition, 'modified');
    assert.doesNotMatch(err.message, /TOP-SECRET/);
    assert.ok(!err.message.includes(meta.sealedKey));
    await pss.close();
  });

  test('operations after close fail with a PssError that says to reopen', async () => {
    const { open } = await setup();
    const pss = await open();
    await pss.close();
    await assert.rejects(pss.save('vm-a', MODEL, nvm('vm-a', 1)), (e: unknown) => e instanceof PssError && e.code === 'closed' && /open it again/.test(e.message));
    await assert.rejects(pss.load('vm-a', MODEL), (e: unknown) => e instanceof PssError && e.code === 'closed');
  });
});

describe('protected storage: delta chains', () => {
  /** A vTPM image in which one save changes a few bytes, as a PCR_Extend does. */
  const image = (n: number) => {
    const b = Buffer.alloc(4000, 0x5a);
    b.writeUInt32BE(n, 100);
    b.writeUInt32BE(n * 7919, 2500);
    return b;
  };
  const deltaKeysIn = (dir: string, vm: string) =>
    withDatabase(dir, async (db) => {
      const prefix = KEY.delta(vm, 0).slice(0, -16);
      const keys: string[] = [];
      for await (const k of db.keys({ gte: prefix, lt: `${prefix}g` })) keys.push(k);
      return keys;
    });

  test('small changes are stored as deltas, whole images come back after a reopen, and MAX_CHAIN saves start a new image', async () => {
    const { dir, open } = await setup();
    let pss = await open();
    for (let i = 1; i <= 10; i++) await pss.save('vm-a', MODEL, image(i));
    await pss.save('vm-b', MODEL, image(1));
    await pss.close();
    const deltas = await deltaKeysIn(dir, 'vm-a');
    assert.equal(deltas.length, 9, 'versions 2–10 are deltas');
    assert.deepEqual(await deltaKeysIn(dir, 'vm-b'), []);
    const biggest = await withDatabase(dir, async (db) => Math.max(...(await db.getMany(deltas)).map((b) => b!.length)));
    assert.ok(biggest < 300, `a delta blob is small (${biggest} bytes)`);
    pss = await open();
    assert.deepEqual(await pss.load('vm-a', MODEL), image(10));
    // Loading gives the PSS the image again: the next saves are deltas on the same chain.
    for (let i = 11; i <= 70; i++) await pss.save('vm-a', MODEL, image(i));
    assert.deepEqual(await pss.load('vm-a', MODEL), image(70));
    await pss.close();
    const after = await deltaKeysIn(dir, 'vm-a');
    assert.ok(after.length < 64, `a new whole image replaced the long chain (${after.length} deltas left)`);
    pss = await open();
    assert.deepEqual(await pss.load('vm-a', MODEL), image(70));
    assert.deepEqual(await pss.load('vm-b', MODEL), image(1));
    await pss.close();
  });

  test('saves still queued while others commit merge into one chain', async () => {
    const { open } = await setup();
    const pss = await open();
    await pss.save('vm-a', MODEL, image(1));
    await Promise.all([1, 2, 3, 4, 5].map((i) => pss.save('vm-a', MODEL, image(1 + i), { durable: i % 2 === 0 })));
    await pss.flush();
    pss.release('vm-a');
    assert.deepEqual(await pss.load('vm-a', MODEL), image(6));
    await pss.close();
    const again = await open();
    assert.deepEqual(await again.load('vm-a', MODEL), image(6));
    await again.close();
  });

  test('a changed image length, a released image or a new model measurement stores a whole image', async () => {
    const { dir, open } = await setup();
    const pss = await open();
    await pss.save('vm-a', MODEL, image(1));
    await pss.save('vm-a', MODEL, image(2));
    await pss.save('vm-a', MODEL, Buffer.concat([image(3), Buffer.from('more')]));
    pss.release('vm-a');
    await pss.save('vm-a', MODEL, Buffer.concat([image(4), Buffer.from('more')]));
    await pss.save('vm-a', OTHER_MODEL, Buffer.concat([image(5), Buffer.from('more')]));
    await pss.close();
    assert.deepEqual(await deltaKeysIn(dir, 'vm-a'), [], 'every save after the first delta started a new image');
  });

  test("a model's changes are patched into the image held for it and stored as deltas; a change it cannot place takes the model's whole image", async () => {
    const { dir, open } = await setup();
    let pss = await open();
    let wholeAsked = 0;
    const change = (after: object, from: number, to: number, delta = encodeDelta(image(from), image(to), Infinity)!): StateChange => ({
      after,
      id: {},
      delta,
      image: () => {
        wholeAsked++;
        return image(to);
      },
    });
    const first = image(1);
    await pss.save('vm-a', MODEL, first);
    let last: object = first;
    for (let i = 2; i <= 6; i++) {
      const c = change(last, i - 1, i);
      await pss.save('vm-a', MODEL, c);
      last = c.id;
    }
    assert.equal(wholeAsked, 0, 'each change followed the state the PSS held');
    assert.deepEqual(first, image(1), 'the image the model handed over was patched in a copy, not in place');
    // Following a state the PSS never got (as after a save it refused), or not fitting the image.
    const stray = change({}, 6, 7);
    await pss.save('vm-a', MODEL, stray);
    assert.equal(wholeAsked, 1);
    await pss.save('vm-a', MODEL, change(stray.id, 7, 8, Buffer.from([0, 0, 0, 1])));
    assert.equal(wholeAsked, 2);
    pss.release('vm-a');
    const loaded = await pss.load('vm-a', MODEL);
    assert.deepEqual(loaded, image(8));
    // What a load returns is what the next change follows.
    const nine = change(loaded!, 8, 9);
    await pss.save('vm-a', MODEL, nine);
    assert.equal(wholeAsked, 2);
    assert.deepEqual(loaded, image(8), 'the buffer a load returned is patched in a copy');
    // Batched saves patch the image held, then the image waiting for its window.
    last = nine.id;
    for (let i = 10; i <= 14; i++) {
      const c = change(last, i - 1, i);
      await pss.save('vm-a', MODEL, c, { durable: false });
      last = c.id;
    }
    assert.equal(wholeAsked, 2, 'batched changes that follow the state held are patched in');
    assert.deepEqual(await pss.load('vm-a', MODEL), image(14));
    await pss.save('vm-a', MODEL, change({}, 14, 15), { durable: false });
    assert.equal(wholeAsked, 3, 'a stray batched change takes the whole image');
    await pss.close();
    assert.ok((await deltaKeysIn(dir, 'vm-a')).length >= 9, 'versions 2 to 9 are deltas, and the batched windows after them');
    pss = await open();
    assert.deepEqual(await pss.load('vm-a', MODEL), image(15));
    await pss.close();
  });

  for (const [what, damage, condition] of [
    ['a flipped byte in a delta', (blobs: Map<string, Buffer>, keys: string[]) => blobs.get(keys[3]!)!.writeUInt8(blobs.get(keys[3]!)![60]! ^ 1, 60), 'modified'],
    ['a missing delta', (blobs: Map<string, Buffer>, keys: string[]) => blobs.delete(keys[3]!), 'modified'],
    ['an older delta in a later one\'s place', (blobs: Map<string, Buffer>, keys: string[]) => blobs.set(keys[4]!, blobs.get(keys[3]!)!), 'not-latest'],
  ] as const) {
    test(`${what} is refused as ${condition}, and only for that VM`, async () => {
      const { dir, open } = await setup();
      let pss = await open();
      for (let i = 1; i <= 8; i++) await pss.save('vm-a', MODEL, image(i));
      await pss.save('vm-b', MODEL, image(1));
      await pss.close();
      const keys = await deltaKeysIn(dir, 'vm-a');
      await withDatabase(dir, async (db) => {
        const stored = await db.getMany(keys);
        const blobs = new Map<string, Buffer>(keys.map((k, i) => [k, stored[i]!]));
        damage(blobs, keys);
        await db.batch([...keys.map((k) => ({ type: 'del' as const, key: k })), ...[...blobs].map(([key, value]) => ({ type: 'put' as const, key, value }))]);
      });
      pss = await open();
      await assert.rejects(pss.load('vm-a', MODEL), isViolation(condition, 'vm-a'));
      assert.deepEqual(await pss.load('vm-b', MODEL), image(1));
      await pss.close();
    });
  }

  test('removing a VM removes its whole chain', async () => {
    const { dir, open } = await setup();
    const pss = await open();
    for (let i = 1; i <= 5; i++) await pss.save('vm-a', MODEL, image(i));
    await pss.remove('vm-a');
    await pss.close();
    assert.deepEqual(await deltaKeysIn(dir, 'vm-a'), []);
    assert.equal(await withDatabase(dir, (db) => db.get(KEY.blob('vm-a'))), undefined);
  });
});

describe('protected storage: batched saves', () => {
  const batched = { durable: false } as const;

  test('a burst of batched saves seals only the newest image of each VM, once per window', async () => {
    const { open } = await setup();
    let pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    await pss.save('vm-b', MODEL, nvm('vm-b', 1));
    const commits = pss.status().commits;
    for (let i = 2; i <= 50; i++) {
      await pss.save('vm-a', MODEL, nvm('vm-a', i), batched);
      await pss.save('vm-b', MODEL, nvm('vm-b', i), batched);
    }
    await pss.flush();
    assert.equal(pss.status().commits, commits + 1, 'one window took the whole burst');
    assert.equal(pss.version('vm-a'), 2, 'one sealed version for 49 saves');
    assert.equal(pss.version('vm-b'), 2);
    await pss.close();
    pss = await open();
    assert.equal(pss.refusal, undefined);
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 50));
    assert.deepEqual(await pss.load('vm-b', MODEL), nvm('vm-b', 50));
    await pss.close();
  });

  test('loads, versions and the VM list see a batched save before its window', async () => {
    const { open } = await setup();
    const pss = await open();
    await pss.save('vm-new', MODEL, nvm('vm-new', 1), batched);
    assert.deepEqual(pss.list(), ['vm-new']);
    assert.equal(pss.status().vms, 1);
    assert.deepEqual(await pss.load('vm-new', MODEL), nvm('vm-new', 1));
    await pss.save('vm-new', MODEL, nvm('vm-new', 2), batched);
    assert.equal(pss.version('vm-new'), 2);
    await pss.save('vm-new', MODEL, nvm('vm-new', 3), batched);
    pss.release('vm-new');
    assert.deepEqual(await pss.load('vm-new', MODEL), nvm('vm-new', 3));
    await pss.close();
  });

  test('a durable save supersedes a batched one still waiting, and a removal drops it', async () => {
    const { open } = await setup();
    let pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    await pss.save('vm-a', MODEL, nvm('vm-a', 2), batched);
    await pss.save('vm-a', MODEL, nvm('vm-a', 3));
    await pss.save('vm-b', MODEL, nvm('vm-b', 1));
    await pss.save('vm-b', MODEL, nvm('vm-b', 2), batched);
    await pss.remove('vm-b');
    await pss.save('vm-c', MODEL, nvm('vm-c', 1), batched);
    await pss.remove('vm-c');
    assert.deepEqual(pss.list(), ['vm-a']);
    await pss.close();
    pss = await open();
    assert.equal(pss.refusal, undefined);
    assert.deepEqual(pss.list(), ['vm-a']);
    assert.deepEqual(await pss.load('vm-a', MODEL), nvm('vm-a', 3));
    assert.equal(pss.version('vm-a'), 2, 'the superseded batched image was never sealed');
    assert.equal(await pss.load('vm-b', MODEL), undefined);
    await pss.close();
  });

  test('a batched save with a new model measurement is sealed under it', async () => {
    const { open } = await setup();
    let pss = await open();
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    await pss.save('vm-a', OTHER_MODEL, nvm('vm-a', 2), batched);
    await pss.close();
    pss = await open();
    await assert.rejects(pss.load('vm-a', MODEL), isViolation('wrong-measurement', 'vm-a'));
    assert.deepEqual(await pss.load('vm-a', OTHER_MODEL), nvm('vm-a', 2));
    await pss.close();
  });
});

describe('protected storage sealing on a worker thread', () => {
  test('saves of many VMs at once, deltas and batched saves among them, load back exactly, also after a reopen', async () => {
    const { dir, client } = await setup();
    let pss = await ProtectedStorage.open({ dir, chip: client, sealThread: 'always' });
    const vms = Array.from({ length: 40 }, (_, i) => `vm-${i}`);
    for (let round = 1; round <= 4; round++) await Promise.all(vms.map((vm) => pss.save(vm, MODEL, nvm(vm, round))));
    for (const vm of vms) assert.equal(pss.version(vm), 4);
    assert.equal(pss.status().sealingThread, true);
    // A load right behind a save that is still being sealed gets that save.
    const saving = pss.save('vm-0', MODEL, nvm('vm-0', 5));
    assert.deepEqual(await pss.load('vm-0', MODEL), nvm('vm-0', 5));
    await saving;
    // Batched saves: sealed when their window takes them, in the worker; loads see the newest.
    for (let n = 6; n <= 8; n++) await pss.save('vm-1', MODEL, nvm('vm-1', n), { durable: false });
    assert.deepEqual(await pss.load('vm-1', MODEL), nvm('vm-1', 8));
    await pss.save('vm-1', MODEL, nvm('vm-1', 9));
    await pss.close();

    pss = await ProtectedStorage.open({ dir, chip: client });
    assert.equal(pss.refusal, undefined);
    assert.deepEqual(await pss.load('vm-0', MODEL), nvm('vm-0', 5));
    assert.deepEqual(await pss.load('vm-1', MODEL), nvm('vm-1', 9));
    for (const vm of vms.slice(2)) assert.deepEqual(await pss.load(vm, MODEL), nvm(vm, 4));
    await pss.close();
  });

  test('by default the thread starts with the first crowded commit window, not before', async () => {
    const { open } = await setup();
    const pss = await open();
    const vms = Array.from({ length: 40 }, (_, i) => `vm-${i}`);
    for (const vm of vms.slice(0, 8)) await pss.save(vm, MODEL, nvm(vm, 1));
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(pss.status().sealingThread, false, 'saves one at a time');
    let round = 1;
    for (let waited = 0; !pss.status().sealingThread; waited++) {
      assert.ok(waited < 400, 'the sealing thread never started');
      round++;
      await Promise.all(vms.map((vm) => pss.save(vm, MODEL, nvm(vm, round))));
      await new Promise((r) => setTimeout(r, 10));
    }
    await Promise.all(vms.map((vm) => pss.save(vm, MODEL, nvm(vm, round + 1))));
    for (const vm of vms) assert.deepEqual(await pss.load(vm, MODEL), nvm(vm, round + 1));
    await pss.close();
  });

  test('a blob sealed on the worker and then altered on disk is refused as modified', async () => {
    const { dir, client } = await setup();
    let pss = await ProtectedStorage.open({ dir, chip: client, sealThread: 'always' });
    await Promise.all(['vm-a', 'vm-b'].map((vm) => pss.save(vm, MODEL, nvm(vm, 1))));
    await pss.save('vm-a', MODEL, nvm('vm-a', 2));
    await pss.close();
    await withDatabase(dir, async (db) => {
      const delta = await db.get(KEY.delta('vm-a', 2));
      delta![delta!.length - 1]! ^= 1;
      await db.put(KEY.delta('vm-a', 2), delta!);
    });
    pss = await ProtectedStorage.open({ dir, chip: client });
    await assert.rejects(pss.load('vm-a', MODEL), isViolation('modified', 'vm-a'));
    assert.deepEqual(await pss.load('vm-b', MODEL), nvm('vm-b', 1));
    await pss.close();
  });
});
