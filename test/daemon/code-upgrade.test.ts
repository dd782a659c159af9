/**
 * Upgrading vtpmd's code: the keys sealed to the GVTPM components' PCRs reach new code only when
 * the running daemon staged it. "New code" is a copy of this checkout's component folders with
 * an edit, measured in place of the running code as a host running it would measure it.
 */
import assert from 'node:assert/strict';
import { createHash, verify } from 'node:crypto';
import { appendFileSync, cpSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { Host, type HostOptions } from '../../src/daemon/host.ts';
import { UpgradeError } from '../../src/daemon/code-upgrade.ts';
import { GVTPM_COMPONENTS, GVTPM_PCR, gvtpmPcrValues } from '../../src/hwtpm/host-boot.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { eccSigningTemplate, srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { PssViolation } from '../../src/pss/errors.ts';
import { openDatabase } from '../../src/pss/database.ts';
import { decodeMeta, encodeMeta, KEY } from '../../src/pss/records.ts';
import { defaultBindPcrs } from '../../src/pss/protected-storage.ts';
import { ALG, CC, RH, ST } from '../../src/tpm/tpm2/constants.ts';
import { publicKeyOf } from '../../src/tpm/tpm2/objects/model.ts';
import { VtpmError } from '../../src/vtpm/manager.ts';
import { tempDirs } from '../helpers/temp-dirs.ts';

const tempDir = tempDirs('vtpmd-upgrade-');
const CHECKOUT = resolve(import.meta.dirname, '..', '..');
const VSRK = 0x81000001;

/** The GVTPM components of this checkout, copied, with `edits` (folder → line appended to one of its files). */
function newCode(edits: Record<string, string>): string {
  const root = tempDir();
  for (const c of GVTPM_COMPONENTS) {
    mkdirSync(join(root, c.folder), { recursive: true });
    cpSync(join(CHECKOUT, c.folder), join(root, c.folder), { recursive: true });
  }
  for (const [folder, line] of Object.entries(edits)) appendFileSync(join(root, folder, 'README.upgrade'), `${line}\n`);
  return root;
}

function open(stateDir: string, codeRoot?: string): Promise<Host> {
  const opts: HostOptions = { stateDir, hostId: 'lab-up', idleUnloadMs: 0, ...(codeRoot ? { measure: { rootDir: codeRoot } } : {}) };
  return Host.open(opts);
}

const vtpm = (host: Host, name: string) => new Tpm2Client((c) => host.manager.device(name).then((d) => d.execute(c, 0)));

async function signs(tpm: Tpm2Client, key: { outPrivate: Buffer; outPublic: Parameters<typeof publicKeyOf>[0] }): Promise<boolean> {
  const h = (await tpm.load(VSRK, key.outPrivate, key.outPublic)).handle;
  try {
    const r = await tpm.call(CC.Sign, [h], [{}], {
      digest: createHash('sha256').update('after the upgrade').digest(),
      inScheme: { scheme: ALG.NULL, hashAlg: ALG.NULL },
      validation: { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: Buffer.alloc(0) },
    });
    const sig = r.params.signature as { r: Buffer; s: Buffer };
    return verify('sha256', Buffer.from('after the upgrade'), { key: publicKeyOf(key.outPublic), dsaEncoding: 'ieee-p1363' }, Buffer.concat([sig.r, sig.s]));
  } finally {
    await tpm.flushContext(h);
  }
}

/** A host with a software and a hardware-backed VM: PCR 16 of each extended, a chip-backed signing key made. */
async function populated(stateDir: string) {
  const host = await open(stateDir);
  await host.manager.create('web', { design: 'software' });
  await host.manager.create('hsm', { design: 'hardware' });
  const pcr16 = new Map<string, Buffer>();
  for (const name of ['web', 'hsm']) {
    const tpm = vtpm(host, name);
    await tpm.startup();
    await tpm.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: createHash('sha256').update(name).digest() }]);
    pcr16.set(name, (await tpm.pcrRead(ALG.SHA256, [16]))[0]!);
  }
  const hsm = vtpm(host, 'hsm');
  const srk = await hsm.createPrimary(RH.OWNER, srkTemplate());
  await hsm.evictControl(RH.OWNER, srk.handle, VSRK);
  await hsm.flushContext(srk.handle);
  const key = await hsm.create(VSRK, eccSigningTemplate(false));
  await host.close();
  return { pcr16, key };
}

const isTcbChanged = (e: unknown) => e instanceof PssViolation && e.condition === 'tcb-changed';

describe('upgrading vtpmd', () => {
  test('code the running daemon staged gets the vTPMs, software and hardware-backed; other code does not, and staging cannot be undone by a downgrade', async () => {
    const stateDir = tempDir();
    const { pcr16, key } = await populated(stateDir);
    const v2 = newCode({ 'src/pss': '// v2 of the PSS', 'src/vtpm': '// v2 of the manager' });

    // Unstaged, the new code is refused both keys, and refusing it costs the old code nothing.
    let host = await open(stateDir, v2);
    assert.equal(host.pss.refusal?.condition, 'tcb-changed');
    await assert.rejects(vtpm(host, 'web').pcrRead(ALG.SHA256, [16]), isTcbChanged);
    await assert.rejects(host.manager.device('hsm'), (e: unknown) => e instanceof VtpmError && e.code === 'tcb-changed');
    await host.close();

    host = await open(stateDir);
    assert.equal(host.pss.refusal, undefined);
    const staged = await host.stageUpgrade(v2);
    assert.deepEqual(Object.keys(staged.pcrs).map(Number).sort(), [GVTPM_PCR.MANAGER, GVTPM_PCR.PSS], 'the edited components move their PCRs, the vMA keeps its own');
    const predicted = await gvtpmPcrValues('sha256', { rootDir: v2 });
    assert.equal(staged.pcrs[GVTPM_PCR.PSS], predicted.get(GVTPM_PCR.PSS)!.toString('hex'));
    assert.equal(staged.keyBindingKey, 'staged');
    assert.equal(host.pss.status().upgradeStagedAt, staged.stagedAt);
    await host.close();

    // Staged but not yet run: the running code keeps working, and the staging waits.
    host = await open(stateDir);
    assert.equal(host.pss.refusal, undefined);
    assert.equal(host.pss.status().upgradeStagedAt, staged.stagedAt);
    assert.deepEqual((await vtpm(host, 'web').pcrRead(ALG.SHA256, [16]))[0], pcr16.get('web'));
    await host.close();

    host = await open(stateDir, v2);
    assert.equal(host.pss.refusal, undefined, 'the new code gets the storage key');
    assert.equal(host.pss.status().upgradeStagedAt, undefined, 'the staged binding became the only one');
    for (const name of ['web', 'hsm']) assert.deepEqual((await vtpm(host, name).pcrRead(ALG.SHA256, [16]))[0], pcr16.get(name), `${name}: PCR 16 as it was`);
    assert.ok(await signs(vtpm(host, 'hsm'), key), 'the hardware-backed key loads and signs under the new code');
    await host.close();

    host = await open(stateDir);
    assert.equal(host.pss.refusal?.condition, 'tcb-changed', 'going back to the old code needs staging as well');
    await host.close();

    host = await open(stateDir, v2);
    assert.equal(host.pss.refusal, undefined);
    assert.ok(await signs(vtpm(host, 'hsm'), key));
    await host.close();
  });

  test('staging refuses a folder that is not vtpmd, code that measures as the running code, and a cancelled staging releases nothing', async () => {
    const stateDir = tempDir();
    await populated(stateDir);
    const host = await open(stateDir);
    try {
      const empty = tempDir();
      await assert.rejects(host.stageUpgrade(empty), (e: unknown) => e instanceof UpgradeError && e.code === 'bad-code' && /no src\/vtpm folder/.test(e.message));
      await assert.rejects(host.stageUpgrade(newCode({})), (e: unknown) => e instanceof UpgradeError && e.code === 'unchanged');
      assert.equal(host.pss.status().upgradeStagedAt, undefined, 'nothing was staged');
      assert.equal(await host.cancelUpgrade(), false);
    } finally {
      await host.close();
    }

    const v2 = newCode({ 'src/vma': '// v2 of the vMA', 'src/pss': '// v2' });
    let h = await open(stateDir);
    await h.stageUpgrade(v2);
    assert.equal(await h.cancelUpgrade(), true);
    assert.equal(h.pss.status().upgradeStagedAt, undefined);
    await h.close();
    h = await open(stateDir, v2);
    assert.equal(h.pss.refusal?.condition, 'tcb-changed', 'the cancelled staging no longer opens anything');
    await h.close();
  });

  test('a staged binding that releases another key is refused, and the binding in use stays', async () => {
    const stateDir = tempDir();
    await populated(stateDir);
    const v2 = newCode({ 'src/pss': '// v2' });

    // Someone with the disk and the chip seals a key of their own to the new code's PCR values.
    let host = await open(stateDir);
    const pcrs = [...Array(24).keys()];
    const expected = new Map((await host.chipClient.readPcrs(pcrs)).map((v, i) => [pcrs[i]!, v]));
    for (const [pcr, value] of await gvtpmPcrValues('sha256', { rootDir: v2 })) expected.set(pcr, value);
    const forged = await host.chipClient.seal(Buffer.alloc(32, 7), defaultBindPcrs(), expected);
    await host.close();
    const pssDir = join(stateDir, 'pss');
    const db = await openDatabase(pssDir);
    const meta = decodeMeta((await db.get(KEY.meta)) as Buffer);
    await db.put(KEY.meta, encodeMeta({ ...meta, staged: { sealedKey: forged, expected, stagedAt: '2026-01-01T00:00:00.000Z' } }), { sync: true });
    await db.close();

    host = await open(stateDir, v2);
    assert.equal(host.pss.refusal?.condition, 'modified', 'the forged key does not prove the database');
    await host.close();
    const after = await openDatabase(pssDir);
    const kept = decodeMeta((await after.get(KEY.meta)) as Buffer);
    await after.close();
    assert.deepEqual(kept.sealedKey, meta.sealedKey, 'the binding in use was not replaced');

    host = await open(stateDir);
    assert.equal(host.pss.refusal, undefined, 'the running code still opens the PSS');
    await host.close();
  });
});
