import assert from 'node:assert/strict';
import { createHash, verify } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Host } from '../../src/daemon/host.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { eccSigningTemplate, sealedTemplate, srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { ALG, CC, RH, ST } from '../../src/tpm/tpm2/constants.ts';
import { publicKeyOf } from '../../src/tpm/tpm2/objects/model.ts';
import { NV_ATTR } from '../../src/tpm/tpm2/types/nv.ts';
import { OBJECT_ATTR as A, type Public } from '../../src/tpm/tpm2/types/public.ts';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const VSRK = 0x81000001;
const NV_INDEX = 0x01000100;

interface Kept {
  pcr16: Buffer;
  sealed: { outPrivate: Buffer; outPublic: Public };
  key?: { outPrivate: Buffer; outPublic: Public };
  /** A key the guest may duplicate: wrapped by the model under the vSRK's seed. */
  movable?: { outPrivate: Buffer; outPublic: Public };
}

/** A sealed data object readable with the (empty) authValue. */
function sealedData(): Public {
  return { ...sealedTemplate(Buffer.alloc(0)), objectAttributes: A.fixedTPM | A.fixedParent | A.noDA | A.userWithAuth };
}

async function sign(tpm: Tpm2Client, handle: number, message: string) {
  const r = await tpm.call(CC.Sign, [handle], [{}], {
    digest: createHash('sha256').update(message).digest(),
    inScheme: { scheme: ALG.NULL, hashAlg: ALG.NULL },
    validation: { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: Buffer.alloc(0) },
  });
  return r.params.signature as { r: Buffer; s: Buffer };
}

describe('a lab host with three VMs', () => {
  test('PCRs, NV, persistent keys and sealed data of software and hardware-backed vTPMs survive a host restart', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'vtpmd-host-'));
    dirs.push(stateDir);
    const vms = { web: 'software', db: 'software', hsm: 'hardware' } as const;
    const kept = new Map<string, Kept>();

    let host = await Host.open({ stateDir, hostId: 'lab-a', idleUnloadMs: 0 });
    for (const [name, design] of Object.entries(vms)) {
      await host.manager.create(name, { design });
      const tpm = new Tpm2Client((c) => host.manager.device(name).then((d) => d.execute(c, 0)));
      await tpm.startup();
      await tpm.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: createHash('sha256').update(name).digest() }]);
      await tpm.nvDefineSpace(RH.OWNER, { nvIndex: NV_INDEX, nameAlg: ALG.SHA256, attributes: NV_ATTR.AUTHWRITE | NV_ATTR.AUTHREAD, authPolicy: Buffer.alloc(0), dataSize: name.length });
      await tpm.nvWrite(NV_INDEX, NV_INDEX, Buffer.from(name));
      const srk = await tpm.createPrimary(RH.OWNER, srkTemplate());
      await tpm.evictControl(RH.OWNER, srk.handle, VSRK);
      await tpm.flushContext(srk.handle);
      const sealed = await tpm.create(VSRK, sealedData(), { data: Buffer.from(`secret of ${name}`) });
      const k: Kept = { pcr16: (await tpm.pcrRead(ALG.SHA256, [16]))[0]!, sealed };
      if (design === 'hardware') {
        k.key = await tpm.create(VSRK, eccSigningTemplate(false));
        assert.equal(k.key.outPrivate.subarray(0, 4).toString('latin1'), 'vHK3');
        // The vSRK is a primary the chip derives; a key the guest may duplicate is wrapped by the model
        // under the vSRK's seed, which must come back with the persistent vSRK.
        const t = eccSigningTemplate(false);
        k.movable = await tpm.create(VSRK, { ...t, objectAttributes: t.objectAttributes & ~(A.fixedTPM | A.fixedParent) });
      }
      kept.set(name, k);
    }
    await host.close();

    host = await Host.open({ stateDir, hostId: 'lab-a', idleUnloadMs: 0 });
    assert.deepEqual((await host.manager.list()).map((r) => r.name).sort(), Object.keys(vms).sort());
    for (const name of Object.keys(vms)) {
      const k = kept.get(name)!;
      const tpm = new Tpm2Client((c) => host.manager.device(name).then((d) => d.execute(c, 0)));
      assert.deepEqual((await tpm.pcrRead(ALG.SHA256, [16]))[0], k.pcr16, `${name}: PCR 16, without a new Startup`);
      assert.equal((await tpm.nvRead(NV_INDEX, NV_INDEX, name.length)).toString(), name);
      const s = await tpm.load(VSRK, k.sealed.outPrivate, k.sealed.outPublic);
      assert.equal((await tpm.unseal(s.handle)).toString(), `secret of ${name}`);
      await tpm.flushContext(s.handle);
      if (k.key) {
        const h = (await tpm.load(VSRK, k.key.outPrivate, k.key.outPublic)).handle;
        const sig = await sign(tpm, h, 'after restart');
        const ok = verify('sha256', Buffer.from('after restart'), { key: publicKeyOf(k.key.outPublic), dsaEncoding: 'ieee-p1363' }, Buffer.concat([sig.r, sig.s]));
        assert.ok(ok, 'the hardware-backed key signs after the restart');
        await tpm.flushContext(h);
      }
      if (k.movable) {
        const h = (await tpm.load(VSRK, k.movable.outPrivate, k.movable.outPublic)).handle;
        const sig = await sign(tpm, h, 'moved');
        assert.ok(verify('sha256', Buffer.from('moved'), { key: publicKeyOf(k.movable.outPublic), dsaEncoding: 'ieee-p1363' }, Buffer.concat([sig.r, sig.s])), 'a software child of the chip-derived vSRK loads after the restart');
        await tpm.flushContext(h);
      }
    }
    await host.close();
  });

  test('a VM with batched saves keeps every extend across a clean host restart, sealed once per commit window', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'vtpmd-host-'));
    dirs.push(stateDir);
    let host = await Host.open({ stateDir, hostId: 'lab-a', idleUnloadMs: 0 });
    await host.manager.create('fast', { durability: 'batched' });
    const tpm = new Tpm2Client((c) => host.manager.device('fast').then((d) => d.execute(c, 0)));
    await tpm.startup();
    const before = host.pss.version('fast')!;
    let expected = Buffer.alloc(32);
    for (let i = 0; i < 200; i++) {
      const digest = createHash('sha256').update(`event ${i}`).digest();
      expected = createHash('sha256').update(expected).update(digest).digest();
      await tpm.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest }]);
    }
    assert.deepEqual((await tpm.pcrRead(ALG.SHA256, [16]))[0], expected);
    await host.pss.flush();
    const sealed = host.pss.version('fast')! - before;
    assert.ok(sealed >= 1 && sealed < 200, `${sealed} sealed versions for 200 extends`);
    await host.close();

    host = await Host.open({ stateDir, hostId: 'lab-a', idleUnloadMs: 0 });
    const again = new Tpm2Client((c) => host.manager.device('fast').then((d) => d.execute(c, 0)));
    assert.deepEqual((await again.pcrRead(ALG.SHA256, [16]))[0], expected, 'the last extend is there');
    await host.close();
  });
});
