import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GroupCommit } from '../../src/pss/group-commit.ts';

const turn = (): Promise<void> => new Promise((ok) => setImmediate(ok));

describe('group commit', () => {
  test('items submitted in the same turn go into one window', async () => {
    const windows: number[][] = [];
    const gc = new GroupCommit<number>(async (items) => void windows.push([...items]));
    await Promise.all([1, 2, 3, 4].map((i) => gc.submit(`k${i}`, i)));
    assert.deepEqual(windows, [[1, 2, 3, 4]]);
    assert.equal(gc.committed, 1);
  });

  test('items submitted while a commit runs wait for it and share the next window', async () => {
    const windows: number[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((ok) => (release = ok));
    const gc = new GroupCommit<number>(async (items) => {
      windows.push([...items]);
      if (windows.length === 1) await gate;
    });
    const first = gc.submit('k1', 1);
    await turn();
    await turn();
    const later = [2, 3, 4].map((i) => gc.submit(`k${i}`, i));
    assert.deepEqual(windows, [[1]], 'the second window has not started while the first runs');
    release();
    await Promise.all([first, ...later]);
    assert.deepEqual(windows, [[1], [2, 3, 4]]);
  });

  test('a later item for the same key replaces the waiting one, and both waiters are answered', async () => {
    const windows: number[][] = [];
    const gc = new GroupCommit<number>(async (items) => void windows.push([...items]));
    await Promise.all([gc.submit('vm', 1), gc.submit('other', 2), gc.submit('vm', 3)]);
    assert.deepEqual(windows, [[2, 3]]);
  });

  test('a window takes at most maxWindow items, oldest first, and the rest go into the next', async () => {
    const windows: number[][] = [];
    const gc = new GroupCommit<number>(async (items) => void windows.push([...items]), { maxWindow: 2 });
    await Promise.all([1, 2, 3, 4, 5].map((i) => gc.submit(`k${i}`, i)));
    assert.deepEqual(windows, [[1, 2], [3, 4], [5]]);
  });

  test('a window is durable when anyone in it waits, and deferred items alone are not', async () => {
    const durability: boolean[] = [];
    const gc = new GroupCommit<number>(async (_items, durable) => void durability.push(durable));
    gc.defer('a', 1);
    await gc.submit('b', 2);
    gc.defer('c', 3);
    await gc.drain();
    assert.deepEqual(durability, [true, false]);
  });

  test('a failed commit rejects exactly the waiters of its window', async () => {
    let n = 0;
    const gc = new GroupCommit<number>(async () => {
      if (n++ === 0) throw new Error('disk full');
    });
    const a = gc.submit('a', 1);
    const b = gc.submit('b', 2);
    await assert.rejects(a, /disk full/);
    await assert.rejects(b, /disk full/);
    await gc.submit('c', 3);
  });

  test('drain waits for everything, including a window queued behind the running one', async () => {
    const seen: number[] = [];
    const gc = new GroupCommit<number>(async (items) => {
      await turn();
      seen.push(...items);
    });
    gc.defer('a', 1);
    await turn();
    gc.defer('b', 2);
    await gc.drain();
    assert.deepEqual(seen, [1, 2]);
  });

  test('the next window is written while the previous awaits confirmation, and each is answered on its own', async () => {
    const windows: number[][] = [];
    const confirm: (() => void)[] = [];
    const gc = new GroupCommit<number>(
      async (items) => {
        windows.push([...items]);
        return { confirmed: new Promise<void>((ok) => confirm.push(ok)) };
      },
      { maxUnconfirmed: 2 },
    );
    const answered: number[] = [];
    const first = gc.submit('a', 1).then(() => answered.push(1));
    await turn();
    await turn();
    const second = gc.submit('b', 2).then(() => answered.push(2));
    await turn();
    await turn();
    assert.deepEqual(windows, [[1], [2]], 'the second window was written before the first was confirmed');
    const third = gc.submit('c', 3).then(() => answered.push(3));
    await turn();
    await turn();
    assert.deepEqual(windows, [[1], [2]], 'no third window while two await confirmation');
    assert.deepEqual(answered, []);
    confirm[1]!();
    await second;
    assert.deepEqual(answered, [2], 'a confirmed window is answered, whatever the one before it does');
    confirm[0]!();
    await first;
    await turn();
    assert.deepEqual(windows, [[1], [2], [3]], 'the third window is written once a confirmation settles');
    confirm[2]!();
    await third;
    assert.equal(gc.committed, 3);
  });

  test('a failed confirmation rejects exactly its window, and drain waits for confirmations', async () => {
    let n = 0;
    const gc = new GroupCommit<number>(
      async () => {
        const failing = n++ === 0;
        return { confirmed: new Promise<void>((ok, fail) => setImmediate(() => (failing ? fail(new Error('counter stuck')) : ok()))) };
      },
      { maxUnconfirmed: 2 },
    );
    const a = assert.rejects(gc.submit('a', 1), /counter stuck/);
    await turn();
    await turn();
    const b = gc.submit('b', 2);
    await a;
    await b;
    let confirmed = false;
    gc.defer('c', 3);
    const drained = gc.drain().then(() => (confirmed = gc.committed === 2));
    await drained;
    assert.ok(confirmed, 'drain resolved after the deferred window was confirmed');
  });

  test('a large window is answered a slice at a time, a turn of the event loop between slices', async () => {
    const gc = new GroupCommit<number>(async () => undefined, { answerSlice: 2 });
    const answered: number[] = [];
    const all = [1, 2, 3, 4, 5].map((i) => gc.submit(`k${i}`, i).then(() => answered.push(i)));
    await all[0];
    assert.deepEqual(answered, [1, 2], 'the first slice only, until the event loop turns');
    await turn();
    assert.deepEqual(answered, [1, 2, 3, 4]);
    await Promise.all(all);
    assert.deepEqual(answered, [1, 2, 3, 4, 5]);
  });

  test('refuses limits that would stop it', () => {
    const commit = async () => undefined;
    assert.throws(() => new GroupCommit<number>(commit, { maxWindow: 0 }), RangeError);
    assert.throws(() => new GroupCommit<number>(commit, { maxUnconfirmed: 0 }), RangeError);
    assert.throws(() => new GroupCommit<number>(commit, { answerSlice: 0 }), RangeError);
  });
});
