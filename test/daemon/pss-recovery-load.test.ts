/**
 * Recovery under load: many vTPMs keep changing state while the chip's counter fails again and
 * again. Every change a guest saw acknowledged is there afterwards, in the running vTPMs and on
 * disk, and no vTPM holds a change it never made.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { join } from 'node:path';
import { PssRecovery } from '../../src/daemon/pss-recovery.ts';
import type { ChipClient } from '../../src/hwtpm/chip-client.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { ProtectedStorage } from '../../src/pss/protected-storage.ts';
import { ALG, RH } from '../../src/tpm/tpm2/constants.ts';
import { NT, NV_ATTR } from '../../src/tpm/tpm2/types/nv.ts';
import { GvtpmManager } from '../../src/vtpm/manager.ts';
import { memoryChip, scratchDir } from '../pss/helpers.ts';

const COUNTER = 0x01000300;
const VMS = 12;
const RUN_MS = 2_500;

const scratch = scratchDir('vtpmd-recovery-load-');
after(() => scratch.cleanup());

describe('PSS recovery under load', () => {
  test('vTPMs incrementing NV counters while the chip counter keeps failing lose no acknowledged increment and gain none they did not make', async () => {
    const { client } = await memoryChip();
    let failing = false;
    const flaky: ChipClient = Object.create(client, {
      incrementCounter: {
        value: (id: number, auth?: Uint8Array) => (failing ? Promise.reject(new Error('the chip stopped answering')) : client.incrementCounter(id, auth)),
      },
    });
    const dirs = { pss: join(scratch.dir, 'pss'), registry: join(scratch.dir, 'vms') };
    let pss = await ProtectedStorage.open({ dir: dirs.pss, chip: flaky });
    let manager = await GvtpmManager.open({ registryDir: dirs.registry, storage: pss, idleUnloadMs: 0 });
    const recovery = new PssRecovery(pss, manager, undefined, { firstMs: 5, maxMs: 20 });
    const names = Array.from({ length: VMS }, (_, i) => `vm-${i}`);
    const tpmOf = (m: GvtpmManager, name: string) => new Tpm2Client(async (c) => (await m.device(name)).execute(c, 0));
    for (const name of names) {
      await manager.create(name);
      const tpm = tpmOf(manager, name);
      await tpm.startup();
      await tpm.nvDefineSpace(RH.OWNER, { nvIndex: COUNTER, nameAlg: ALG.SHA256, attributes: NV_ATTR.AUTHWRITE | NV_ATTR.AUTHREAD | (NT.COUNTER << 4), authPolicy: Buffer.alloc(0), dataSize: 8 });
    }
    const read = async (m: GvtpmManager, name: string) => {
      try {
        return (await tpmOf(m, name).nvRead(COUNTER, COUNTER, 8)).readBigUInt64BE(0);
      } catch {
        return 0n; // not written yet: a counter has no value before its first increment
      }
    };

    // Outages of 30 ms every 120 ms.
    const outages = setInterval(() => {
      failing = true;
      setTimeout(() => (failing = false), 30);
    }, 120);
    const acked = new Map(names.map((n) => [n, 0n]));
    const failed = new Map(names.map((n) => [n, 0n]));
    const until = performance.now() + RUN_MS;
    try {
      await Promise.all(
        names.map(async (name) => {
          const tpm = tpmOf(manager, name);
          while (performance.now() < until) {
            try {
              await tpm.nvIncrement(COUNTER, COUNTER);
              acked.set(name, acked.get(name)! + 1n);
            } catch {
              failed.set(name, failed.get(name)! + 1n);
              await new Promise((r) => setTimeout(r, 2));
            }
          }
        }),
      );
    } finally {
      clearInterval(outages);
    }
    failing = false;
    for (let i = 0; pss.status().failure; i++) {
      if (i > 500) assert.fail(`the PSS did not recover: ${pss.status().recoveryError}`);
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(pss.status().recoveries >= 3, `the run went through several outages (${pss.status().recoveries} recoveries)`);
    let failures = 0n;
    for (const f of failed.values()) failures += f;
    assert.ok(failures > 0n, 'guests saw failures');

    const live = new Map<string, bigint>();
    for (const name of names) {
      const value = await read(manager, name);
      live.set(name, value);
      assert.ok(value >= acked.get(name)!, `${name}: ${value} increments, ${acked.get(name)} acknowledged`);
      assert.ok(value <= acked.get(name)! + failed.get(name)!, `${name}: ${value} increments, only ${acked.get(name)} acknowledged and ${failed.get(name)} failed`);
    }
    await recovery.close();
    await manager.close();
    await pss.close();

    // What the running vTPMs held is what the disk holds.
    pss = await ProtectedStorage.open({ dir: dirs.pss, chip: client });
    assert.equal(pss.refusal, undefined);
    manager = await GvtpmManager.open({ registryDir: dirs.registry, storage: pss, idleUnloadMs: 0 });
    for (const name of names) assert.equal(await read(manager, name), live.get(name), `${name} after a reopen`);
    await manager.close();
    await pss.close();
  });
});
