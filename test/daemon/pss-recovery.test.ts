import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { PssRecovery } from '../../src/daemon/pss-recovery.ts';
import type { ProtectedStorage } from '../../src/pss/protected-storage.ts';
import type { GvtpmManager } from '../../src/vtpm/manager.ts';

/** A PSS that fails when told to and recovers once `healthy` is set, recording when it was asked. */
class FakePss {
  failure: string | undefined;
  healthy = false;
  readonly attempts: number[] = [];
  private listener: ((cause: string) => void) | undefined;
  private readonly started = performance.now();

  onFailure(listener: (cause: string) => void): void {
    this.listener = listener;
  }
  fail(cause: string): void {
    this.failure = cause;
    this.listener?.(cause);
  }
  async recover(): Promise<boolean> {
    this.attempts.push(performance.now() - this.started);
    if (this.healthy) this.failure = undefined;
    return this.failure === undefined;
  }
  status() {
    return { failure: this.failure, recoveryError: this.failure && 'still failing' };
  }
}

async function until(what: string, done: () => boolean): Promise<void> {
  for (let i = 0; !done(); i++) {
    if (i > 400) assert.fail(`never happened: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('PSS recovery', () => {
  test('tries again at doubling intervals up to the longest, then has the loaded vTPMs save again once', async () => {
    const pss = new FakePss();
    let saves = 0;
    const manager = { saveLoadedAgain: async () => (saves++, 0) };
    const recovery = new PssRecovery(pss as unknown as ProtectedStorage, manager as unknown as GvtpmManager, undefined, { firstMs: 20, maxMs: 80 });
    assert.equal(recovery.nextDelayMs, 20);
    pss.fail('the disk stopped answering');
    pss.fail('the same failure reported again');
    await until('five attempts', () => pss.attempts.length >= 5);
    const gaps = pss.attempts.map((t, i) => t - (pss.attempts[i - 1] ?? 0));
    // 20, 40, 80, 80, 80 ms (timers fire late, never early)
    for (const [i, least] of [20, 40, 80, 80, 80].entries()) assert.ok(gaps[i]! >= least - 2, `attempt ${i + 1} after ${gaps[i]} ms, not before ${least}`);
    assert.ok(gaps[1]! < 80 + 40, 'one timer at a time: a second failure report did not add attempts');
    assert.equal(recovery.nextDelayMs, 80);
    assert.equal(saves, 0);

    pss.healthy = true;
    await until('recovered', () => saves === 1);
    assert.equal(pss.failure, undefined);
    assert.equal(recovery.nextDelayMs, 20, 'the next failure starts from the shortest wait again');
    const attempts = pss.attempts.length;
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(pss.attempts.length, attempts, 'no attempts while the PSS works');
    await recovery.close();
  });

  test('a PSS that fails again while the vTPMs save again is tried again; close stops the attempts', async () => {
    const pss = new FakePss();
    const manager = {
      saveLoadedAgain: async () => {
        if (pss.attempts.length === 1) pss.fail('failed again at once');
        return 0;
      },
    };
    pss.healthy = true;
    const recovery = new PssRecovery(pss as unknown as ProtectedStorage, manager as unknown as GvtpmManager, undefined, { firstMs: 10, maxMs: 10 });
    pss.fail('the host TPM went away');
    await until('a second attempt', () => pss.attempts.length >= 2);
    await until('recovered', () => pss.failure === undefined);
    pss.healthy = false;
    pss.fail('and again');
    await recovery.close();
    const attempts = pss.attempts.length;
    await new Promise((r) => setTimeout(r, 60));
    assert.equal(pss.attempts.length, attempts, 'closed: no more attempts');
  });
});
