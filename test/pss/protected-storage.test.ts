import assert from 'node:assert/strict';
import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import type { ChipClient } from '../../src/hwtpm/chip-client.ts';
import { GVTPM_PCR } from '../../src/hwtpm/host-boot.ts';
import { PssError, PssViolation, type PssCondition } from '../../src/pss/errors.ts';
import { ProtectedStorage } from '../../src/pss/protected-storage.ts';
import { KEY } from '../../src/pss/records.ts';
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

  test('a commit whose counter increment failed stops the PSS, and the reopened PSS recovers that commit', async () => {
    const { dir, client } = await setup();
    let failing = false;
    const flaky: ChipClient = Object.create(client, {
      incrementCounter: {
        value: (id: number) => (failing ? Promise.reject(new Error('the chip stopped answering')) : client.incrementCounter(id)),
      },
    });
    let pss = await ProtectedStorage.open({ dir, chip: flaky });
    await pss.save('vm-a', MODEL, nvm('vm-a', 1));
    failing = true;
    await assert.rejects(pss.save('vm-a', MODEL, nvm('vm-a', 2)), (e: unknown) => e instanceof PssError && e.code === 'commit-failed' && /reopen/.test(e.message));
    await assert.rejects(pss.save('vm-b', MODEL, nvm('vm-b', 1)), (e: unknown) => e instanceof PssError && e.code === 'commit-failed');
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
