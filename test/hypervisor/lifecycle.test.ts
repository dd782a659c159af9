import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Host } from '../../src/daemon/host.ts';
import { Hypervisor } from '../../src/hypervisor/hypervisor.ts';
import { ALG, SU } from '../../src/tpm/tpm2/constants.ts';
import { pcrExtend, pcrRead, selection, shutdown, startup } from '../helpers/tpm2-commands.ts';
import { GatedDevice, settle, taggedCommand } from './helpers.ts';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

describe('partition lifecycle', () => {
  test('the TPM partition is reserved as partition 0 before any guest, and guests number from 1', async () => {
    const hv = await Hypervisor.start();
    assert.equal(hv.tpmPartition.id, 0);
    assert.equal(hv.tpmPartition.hosted.size, 0);
    const a = await hv.createPartition('a', { device: new GatedDevice() });
    assert.equal(a.id, 1);
    assert.equal(a.state, 'created');
    assert.deepEqual([...hv.tpmPartition.hosted], ['a']);
  });

  test('a partition runs only after start, and its vTPM sees a platform reset then', async () => {
    const hv = await Hypervisor.start();
    const device = new GatedDevice();
    await hv.createPartition('vm', { device });
    assert.throws(() => hv.guest('vm').mmioRead(0), { name: 'HypervisorError', code: 'bad-state' });
    await hv.startPartition('vm');
    assert.equal(device.poweredOn, 1);
    assert.equal(hv.get('vm').state, 'running');
    await assert.rejects(hv.startPartition('vm'), { code: 'bad-state' });
  });

  test('terminate drops queued commands, lets the running one finish, and fails the guest’s waiters', async () => {
    const hv = await Hypervisor.start();
    const device = new GatedDevice();
    await hv.createPartition('vm', { device }, 'keep', { channels: 3 });
    await hv.startPartition('vm');
    const sent = [1, 2, 3].map((t) => hv.guest('vm').transmit(taggedCommand(t)));
    const outcomes = Promise.allSettled(sent);
    await settle();
    const terminated = hv.terminate('vm');
    await settle();
    device.releaseNext();
    const info = await terminated;
    assert.equal(info.state, 'terminated');
    assert.equal(info.counters.withdrawn, 2);
    for (const s of await outcomes) assert.equal(s.status === 'rejected' && (s.reason as { code?: string }).code, 'terminated');
    assert.equal(device.started.length, 1);
    assert.equal(device.flushed, 1, "policy 'keep' flushes the device");
    assert.equal(device.poweredOff, 0);
    assert.equal(hv.tpmPartition.hosted.size, 0);
  });

  test("policy 'destroy' powers a caller-owned device off; names are unique until terminated", async () => {
    const hv = await Hypervisor.start();
    const device = new GatedDevice();
    await hv.createPartition('vm', { device }, 'destroy');
    await assert.rejects(hv.createPartition('vm', { device: new GatedDevice() }), { code: 'duplicate-partition' });
    await hv.startPartition('vm');
    await hv.terminate('vm');
    assert.equal(device.poweredOff, 1);
    const again = await hv.createPartition('vm', { device: new GatedDevice() });
    assert.equal(again.state, 'created');
    await assert.rejects(hv.createPartition('bad name', { device }), { code: 'bad-config' });
    await assert.rejects(hv.createPartition('x', { vtpm: { name: 'x' } }), { code: 'bad-config' });
  });

  test("on a lab host, a partition instantiates its vTPM in the manager; 'keep' preserves its PCRs for the next boot, 'destroy' removes it", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'vtpmd-hv-'));
    dirs.push(stateDir);
    const host = await Host.open({ stateDir, hostId: 'hv-lab', idleUnloadMs: 0 });
    try {
      const hv = await Hypervisor.start({ manager: host.manager });
      await hv.createPartition('web', { vtpm: { name: 'web' } }, 'keep');
      await hv.createPartition('tmp', { vtpm: { name: 'tmp' } }, 'destroy');
      assert.deepEqual((await host.manager.list()).map((r) => r.name).sort(), ['tmp', 'web']);
      for (const name of ['web', 'tmp']) await hv.startPartition(name);

      let current = hv.guest('web');
      const ok = async (cmd: Uint8Array) => {
        const r = Buffer.from(await current.transmit(cmd));
        assert.equal(r.readUInt32BE(6), 0, `rc 0x${r.readUInt32BE(6).toString(16)}`);
        return r;
      };
      await ok(startup(SU.CLEAR));
      await ok(pcrExtend(10, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 7) }]));
      const before = await ok(pcrRead([selection(ALG.SHA256, [10])]));
      await ok(shutdown(SU.STATE));
      assert.equal(Buffer.from(await hv.guest('tmp').transmit(startup(SU.CLEAR))).readUInt32BE(6), 0);

      await hv.terminate('web');
      await hv.terminate('tmp');
      assert.deepEqual((await host.manager.list()).map((r) => r.name), ['web']);
      assert.equal(host.manager.loadedCount(), 0, "a kept vTPM is unloaded; its state is in the PSS");

      // The kept vTPM boots in a new partition and resumes with the PCR it had.
      await hv.createPartition('web', { vtpm: { name: 'web' } }, 'keep');
      await hv.startPartition('web');
      current = hv.guest('web');
      await ok(startup(SU.STATE));
      const after = await ok(pcrRead([selection(ALG.SHA256, [10])]));
      assert.equal(after.subarray(14).toString('hex'), before.subarray(14).toString('hex'));
      assert.notEqual(after.subarray(-32).toString('hex'), '00'.repeat(32));
      await hv.stop();
    } finally {
      await host.close();
    }
  });
});
