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
    const gc = new GroupCommit<number>(async (items) => void windows.push([...items]), 2);
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
});
