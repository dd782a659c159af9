import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { GvtpmManager, VtpmError, type ModelStorage } from '../../src/vtpm/manager.ts';
import { ModelMeasurer } from '../../src/vtpm/model-measurement.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { eccSigningTemplate, srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { bootLabHost } from '../../src/hwtpm/lab-host.ts';
import { openChipClient } from '../../src/hwtpm/open-chip-client.ts';
import { openManufacturerCa } from '../../src/hwtpm/credentials/manufacturer-ca.ts';
import { VmRegistry } from '../../src/vtpm/registry.ts';
import { readSrk } from '../../src/hwtpm/tpm2-provisioning.ts';
import { Tpm12Client } from '../../src/tpm/tpm12/client/index.ts';
import { ALG, RH } from '../../src/tpm/tpm2/constants.ts';
import { NV_ATTR } from '../../src/tpm/tpm2/types/nv.ts';
import { tempDirs } from '../helpers/temp-dirs.ts';
import type { StateChange } from '../../src/tpm/state-delta.ts';

const tempDir = tempDirs('vtpmd-manager-');

/** Storage that keeps the latest blob per VM and checks the measurement, as the PSS does. */
class MemoryStorage implements ModelStorage {
  readonly blobs = new Map<string, { measurement: Buffer; nvm: Buffer }>();
  saves = 0;
  async save(vmId: string, measurement: Buffer, nvm: Buffer | StateChange): Promise<void> {
    this.saves++;
    // Holding no image to patch, it takes a change's whole image, as a PSS that released the VM does.
    this.blobs.set(vmId, { measurement: Buffer.from(measurement), nvm: Buffer.from(Buffer.isBuffer(nvm) ? nvm : nvm.image()) });
  }
  async load(vmId: string, measurement: Buffer): Promise<Buffer | undefined> {
    const b = this.blobs.get(vmId);
    if (b && !b.measurement.equals(measurement)) throw new Error('wrong measurement');
    return b?.nvm;
  }
  async remove(vmId: string): Promise<void> {
    this.blobs.delete(vmId);
  }
  readonly released: string[] = [];
  release(vmId: string): void {
    this.released.push(vmId);
  }
}

const measurer = new ModelMeasurer();
const client = (d: { execute(c: Uint8Array, l: number): Promise<Uint8Array> }) => new Tpm2Client((c) => d.execute(c, 0));

describe('GVTPM manager', () => {
  test('three VMs get three independent vTPMs that survive a restart of the manager', async () => {
    const storage = new MemoryStorage();
    const registryDir = tempDir();
    let m = await GvtpmManager.open({ registryDir, storage, measurer, idleUnloadMs: 0 });
    const names = ['web', 'db', 'cache'];
    for (const [i, name] of names.entries()) {
      await m.create(name);
      const tpm = client(await m.device(name));
      await tpm.startup();
      await tpm.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, i + 1) }]);
      await tpm.nvDefineSpace(RH.OWNER, { nvIndex: 0x01000010, nameAlg: ALG.SHA256, attributes: NV_ATTR.AUTHWRITE | NV_ATTR.AUTHREAD, authPolicy: Buffer.alloc(0), dataSize: name.length });
      await tpm.nvWrite(0x01000010, 0x01000010, Buffer.from(name));
    }
    const pcrs = new Map<string, Buffer>();
    for (const name of names) pcrs.set(name, (await client(await m.device(name)).pcrRead(ALG.SHA256, [16]))[0]!);
    assert.equal(new Set([...pcrs.values()].map((v) => v.toString('hex'))).size, 3, 'each VM has its own PCRs');
    await m.close();

    m = await GvtpmManager.open({ registryDir, storage, measurer, idleUnloadMs: 0 });
    assert.deepEqual((await m.list()).map((r) => r.name).sort(), [...names].sort());
    for (const name of names) {
      const tpm = client(await m.device(name));
      assert.deepEqual((await tpm.pcrRead(ALG.SHA256, [16]))[0], pcrs.get(name), `${name}: PCRs as they were, no Startup needed`);
      assert.equal((await tpm.nvRead(0x01000010, 0x01000010, name.length)).toString(), name);
    }
    await m.close();
  });

  test('a TPM 1.2 VM gets a TPM 1.2 vTPM that survives a manager restart', async () => {
    const storage = new MemoryStorage();
    const registryDir = tempDir();
    let m = await GvtpmManager.open({ registryDir, storage, measurer, idleUnloadMs: 0 });
    await m.create('legacy', { tpm: '1.2' });
    const dev = await m.device('legacy');
    assert.equal(dev.family, 'tpm12');
    let tpm = new Tpm12Client((c) => dev.execute(c, 0));
    await tpm.startup(1);
    await tpm.extend(10, Buffer.alloc(20, 3));
    const value = await tpm.pcrRead(10);
    await m.close();
    m = await GvtpmManager.open({ registryDir, storage, measurer, idleUnloadMs: 0 });
    const again = await m.device('legacy');
    tpm = new Tpm12Client((c) => again.execute(c, 0));
    assert.deepEqual(await tpm.pcrRead(10), value);
    await assert.rejects(m.create('bad', { tpm: '1.2', design: 'hardware' }), (e) => e instanceof VtpmError && e.code === 'unsupported');
    await m.close();
  });

  test('an idle vTPM is unloaded and comes back on its next command', async () => {
    const storage = new MemoryStorage();
    const m = await GvtpmManager.open({ registryDir: tempDir(), storage, measurer, idleUnloadMs: 0 });
    await m.create('idle');
    const dev = await m.device('idle');
    const tpm = client(dev);
    await tpm.startup();
    await tpm.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 9) }]);
    const before = await tpm.pcrRead(ALG.SHA256, [16]);
    await m.unload('idle');
    assert.equal(dev.loaded, false);
    assert.equal(m.loadedCount(), 0);
    assert.deepEqual(storage.released, ['idle'], 'the storage may forget what it kept for the loaded model');
    assert.deepEqual(await tpm.pcrRead(ALG.SHA256, [16]), before);
    assert.equal(dev.loaded, true);
    await m.close();
  });

  test('a vTPM whose save failed leaves memory and continues from the stored state; saveLoadedAgain hands loaded vTPMs to storage that lost them', async () => {
    class FailingStorage extends MemoryStorage {
      failing = false;
      override save(vmId: string, measurement: Buffer, nvm: Buffer | StateChange): Promise<void> {
        return this.failing ? Promise.reject(new Error('the disk stopped answering')) : super.save(vmId, measurement, nvm);
      }
    }
    const storage = new FailingStorage();
    const m = await GvtpmManager.open({ registryDir: tempDir(), storage, measurer, idleUnloadMs: 0 });
    const extend = (tpm: Tpm2Client, n: number) => tpm.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, n) }]);
    const pcr16 = async (tpm: Tpm2Client) => (await tpm.pcrRead(ALG.SHA256, [16]))[0]!;
    await m.create('failed');
    await m.create('bystander');
    const failed = await m.device('failed');
    const bystander = await m.device('bystander');
    const [a, b] = [client(failed), client(bystander)];
    await a.startup();
    await b.startup();
    await extend(a, 1);
    await extend(b, 1);
    const acknowledged = await pcr16(a);

    storage.failing = true;
    await assert.rejects(extend(a, 2), /the disk stopped answering/);
    assert.equal(failed.loaded, false, 'the model whose save failed is gone from memory');
    assert.equal(bystander.loaded, true, 'a vTPM that did not save stays');
    assert.ok(storage.released.includes('failed'));

    storage.failing = false;
    assert.deepEqual(await pcr16(a), acknowledged, 'the stored state: the extend whose save failed is not there');
    // Storage that lost what it held (a PSS recovered from a failed window) gets every loaded vTPM's state again.
    storage.blobs.clear();
    assert.equal(await m.saveLoadedAgain(), 0);
    assert.deepEqual([...storage.blobs.keys()].sort(), ['bystander', 'failed']);
    const bystanderPcr = await pcr16(b);
    await m.unload('bystander');
    assert.deepEqual(await pcr16(b), bystanderPcr, 'reloaded from what was saved again');
    storage.failing = true;
    assert.equal(await m.saveLoadedAgain(), 2, 'saves that fail are counted, and their models leave memory');
    assert.equal(m.loadedCount(), 0);
    storage.failing = false;
    await m.close();
  });

  test('an idle timer unloads models nobody uses', async () => {
    const m = await GvtpmManager.open({ registryDir: tempDir(), storage: new MemoryStorage(), measurer, idleUnloadMs: 20 });
    await m.create('sleepy');
    const dev = await m.device('sleepy');
    await client(dev).startup();
    while (dev.loaded) await new Promise((ok) => setTimeout(ok, 10));
    assert.equal(m.loadedCount(), 0);
    await m.close();
  });

  test('the idle timer leaves a vTPM holding a loaded object in memory, as a powered chip keeps it; once flushed it goes', async () => {
    const m = await GvtpmManager.open({ registryDir: tempDir(), storage: new MemoryStorage(), measurer, idleUnloadMs: 20 });
    await m.create('busy');
    const dev = await m.device('busy');
    const tpm = client(dev);
    await tpm.startup();
    const key = await tpm.createPrimary(RH.OWNER, eccSigningTemplate(false));
    await new Promise((ok) => setTimeout(ok, 150));
    assert.equal(dev.loaded, true);
    assert.deepEqual((await tpm.readPublic(key.handle)).name, key.name);
    await tpm.flushContext(key.handle);
    while (dev.loaded) await new Promise((ok) => setTimeout(ok, 10));
    await m.close();
  });

  test('names are unique and validated; unknown VMs and unsupported designs are clear errors', async () => {
    const m = await GvtpmManager.open({ registryDir: tempDir(), storage: new MemoryStorage(), measurer, idleUnloadMs: 0 });
    await m.create('one');
    await assert.rejects(m.create('one'), (e) => e instanceof VtpmError && e.code === 'duplicate-vm');
    await assert.rejects(m.create('../etc'), (e) => e instanceof VtpmError && e.code === 'bad-config');
    await assert.rejects(m.create('big', { pcrCount: 8 }), (e) => e instanceof VtpmError && e.code === 'bad-config');
    await assert.rejects(m.get('nobody'), (e) => e instanceof VtpmError && e.code === 'unknown-vm');
    await assert.rejects(m.destroy('nobody'), (e) => e instanceof VtpmError && e.code === 'unknown-vm');
    await m.close();
  });

  test('destroy removes the VM and its stored state', async () => {
    const storage = new MemoryStorage();
    const m = await GvtpmManager.open({ registryDir: tempDir(), storage, measurer, idleUnloadMs: 0 });
    await m.create('gone');
    assert.ok(storage.blobs.has('gone'));
    await m.destroy('gone');
    assert.equal(storage.blobs.has('gone'), false);
    assert.deepEqual(await m.list(), []);
    await m.close();
  });

  test('the model measurement covers the configuration', async () => {
    const a = await measurer.measure({ design: 'software', tpm: '2.0', pcrCount: 24, durability: 'per-command', migratable: false });
    const b = await measurer.measure({ design: 'software', tpm: '2.0', pcrCount: 32, durability: 'per-command', migratable: false });
    const c = await measurer.measure({ design: 'software', tpm: '2.0', pcrCount: 24, durability: 'per-command', migratable: false });
    assert.notDeepEqual(a, b);
    assert.deepEqual(a, c);
  });
});

describe('the GVTPM manager and the chip it is given', () => {
  test("proves the chip's hwSRK against the manufacturer roots before pinning it: an unproven chip refuses hardware-backed vTPMs (untrusted-chip) and pins nothing, software vTPMs run", async () => {
    const lab = await bootLabHost({ stateDir: tempDir(), hostId: 'manager-srk' });
    const chipClient = await openChipClient(lab.chip);
    await chipClient.takeOwnership();
    const registryDir = tempDir();
    const storage = new MemoryStorage();
    const stranger = await openManufacturerCa(tempDir(), { manufacturer: 'Elsewhere' });
    let m = await GvtpmManager.open({ registryDir, storage, measurer, idleUnloadMs: 0, hardware: { chip: lab.chip, client: chipClient, ekRoots: [stranger.certificate] } });
    await assert.rejects(m.create('hsm', { design: 'hardware' }), (e) => e instanceof VtpmError && e.code === 'untrusted-chip' && /does not chain/.test(e.message));
    await m.create('web');
    await client(await m.device('web')).startup();
    await m.close();
    const pinned = async () => {
      const registry = await VmRegistry.open(registryDir);
      try {
        return await registry.getMeta('hwsrk-name');
      } finally {
        await registry.close();
      }
    };
    assert.equal(await pinned(), undefined, 'nothing pinned');

    m = await GvtpmManager.open({ registryDir, storage, measurer, idleUnloadMs: 0, hardware: { chip: lab.chip, client: chipClient, ekRoots: [lab.ca.certificate] } });
    await m.create('hsm', { design: 'hardware' });
    const hsm = client(await m.device('hsm'));
    await hsm.startup();
    const srk = await hsm.createPrimary(RH.OWNER, srkTemplate());
    await hsm.create(srk.handle, eccSigningTemplate(false));
    await m.close();
    assert.deepEqual(await pinned(), (await readSrk(new Tpm2Client((c) => lab.chip.execute(c, 0)))).name, 'the proven Name pinned');
  });
});
