/**
 * Upgrading vtpmd's code: the keys sealed to the GVTPM components' PCRs reach new code only when
 * the running daemon staged it. "New code" is a copy of this checkout's component folders with
 * an edit, measured in place of the running code as a host running it would measure it.
 */
import assert from 'node:assert/strict';
import { createHash, verify } from 'node:crypto';
import { appendFileSync, cpSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { Host, type HostOptions } from '../../src/daemon/host.ts';
import { UpgradeError } from '../../src/daemon/code-upgrade.ts';
import { GVTPM_COMPONENTS, GVTPM_PCR, gvtpmPcrValues, hostProfile, measureHostBoot } from '../../src/hwtpm/host-boot.ts';
import { encodeEventLog } from '../../src/hwtpm/event-log.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { eccSigningTemplate, srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { PssViolation } from '../../src/pss/errors.ts';
import { openDatabase } from '../../src/pss/database.ts';
import { decodeMeta, encodeMeta, KEY } from '../../src/pss/records.ts';
import { defaultBindPcrs } from '../../src/pss/protected-storage.ts';
import { ALG, CC, RH, ST } from '../../src/tpm/tpm2/constants.ts';
import { publicKeyOf } from '../../src/tpm/tpm2/objects/model.ts';
import { VtpmError } from '../../src/vtpm/manager.ts';
import { modelCodeFolders } from '../../src/vtpm/model-measurement.ts';
import { tempDirs } from '../helpers/temp-dirs.ts';

const tempDir = tempDirs('vtpmd-upgrade-');
const CHECKOUT = resolve(import.meta.dirname, '..', '..');
const VSRK = 0x81000001;

/** The measured code of this checkout (GVTPM components, device models), copied, with `edits` (folder → a line in a new file there). */
function newCode(edits: Record<string, string>): string {
  const root = tempDir();
  for (const folder of new Set([...GVTPM_COMPONENTS.map((c) => c.folder), ...modelCodeFolders()])) {
    mkdirSync(join(root, folder), { recursive: true });
    cpSync(join(CHECKOUT, folder), join(root, folder), { recursive: true });
  }
  for (const [folder, line] of Object.entries(edits)) appendFileSync(join(root, folder, 'README.upgrade'), `${line}\n`);
  return root;
}

/** The host as `codeRoot`'s vtpmd (default this checkout) opens it; another `hostId` boots another firmware and boot chain. */
function open(stateDir: string, codeRoot?: string, hostId = 'lab-up'): Promise<Host> {
  const opts: HostOptions = { stateDir, hostId, idleUnloadMs: 0, ...(codeRoot ? { measure: { rootDir: codeRoot } } : {}) };
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
    const staged = await host.stageUpgrade({ code: v2 });
    assert.deepEqual(Object.keys(staged.pcrs).map(Number).sort(), [GVTPM_PCR.MANAGER, GVTPM_PCR.PSS], 'the edited components move their PCRs, the vMA keeps its own');
    const predicted = await gvtpmPcrValues('sha256', { rootDir: v2 });
    assert.equal(staged.pcrs[GVTPM_PCR.PSS], predicted.get(GVTPM_PCR.PSS)!.toString('hex'));
    assert.equal(staged.keyBindingKey, 'staged');
    assert.deepEqual(staged.models.length, 2, 'src/vtpm is model code of both TPM versions');
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
      await assert.rejects(host.stageUpgrade({ code: empty }), (e: unknown) => e instanceof UpgradeError && e.code === 'bad-code' && /no src\/vtpm folder/.test(e.message));
      await assert.rejects(host.stageUpgrade({ code: newCode({}) }), (e: unknown) => e instanceof UpgradeError && e.code === 'unchanged');
      assert.equal(host.pss.status().upgradeStagedAt, undefined, 'nothing was staged');
      assert.equal(await host.cancelUpgrade(), false);
    } finally {
      await host.close();
    }

    const v2 = newCode({ 'src/vma': '// v2 of the vMA', 'src/pss': '// v2' });
    let h = await open(stateDir);
    await h.stageUpgrade({ code: v2 });
    assert.equal(await h.cancelUpgrade(), true);
    assert.equal(h.pss.status().upgradeStagedAt, undefined);
    await h.close();
    h = await open(stateDir, v2);
    assert.equal(h.pss.refusal?.condition, 'tcb-changed', 'the cancelled staging no longer opens anything');
    await h.close();
  });

  test('new device model code is refused a vTPM state until staged; staged, it continues the state, which is then its own', async () => {
    const stateDir = tempDir();
    const { pcr16 } = await populated(stateDir);
    const engine2 = newCode({ 'src/tpm/tpm2': '// v2 of the TPM 2.0 engine' });
    const isWrongModel = (e: unknown) => e instanceof PssViolation && e.condition === 'wrong-measurement';

    let host = await open(stateDir, engine2);
    assert.equal(host.pss.refusal, undefined, 'the GVTPM components are unchanged: the PSS opens');
    await assert.rejects(vtpm(host, 'web').pcrRead(ALG.SHA256, [16]), isWrongModel);
    await host.close();

    host = await open(stateDir);
    const staged = await host.stageUpgrade({ code: engine2 });
    assert.deepEqual(staged.pcrs, {}, 'no PCR moves');
    assert.match(staged.keyBindingKey, /^unchanged/);
    assert.equal(staged.models.length, 1, 'only the TPM 2.0 model code changed');
    assert.equal(host.pss.status().upgradeStagedAt, undefined, 'no key binding waits');
    assert.deepEqual((await vtpm(host, 'web').pcrRead(ALG.SHA256, [16]))[0], pcr16.get('web'), 'the running code keeps its vTPMs');
    await host.close();

    host = await open(stateDir, engine2);
    const web = vtpm(host, 'web');
    assert.deepEqual((await web.pcrRead(ALG.SHA256, [16]))[0], pcr16.get('web'), 'the new model continues the state');
    await web.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 2) }]);
    await host.close();

    // Saved by the new model, the state is the new model's: the old code is refused it, and
    // still opens a vTPM the new code has not saved.
    host = await open(stateDir);
    await assert.rejects(vtpm(host, 'web').pcrRead(ALG.SHA256, [16]), isWrongModel);
    assert.deepEqual((await vtpm(host, 'hsm').pcrRead(ALG.SHA256, [16]))[0], pcr16.get('hsm'));
    // Cancelled from the old code, the transition to the new model is gone: the new code keeps
    // the state it saved itself and is refused the rest.
    assert.equal(await host.cancelUpgrade(), true);
    assert.equal(await host.cancelUpgrade(), false);
    await host.close();
    host = await open(stateDir, engine2);
    assert.notDeepEqual((await vtpm(host, 'web').pcrRead(ALG.SHA256, [16]))[0], pcr16.get('web'), 'web as the new model extended it');
    await assert.rejects(vtpm(host, 'hsm').pcrRead(ALG.SHA256, [16]), isWrongModel);
    await host.close();
  });

  test('a second staging replaces the first: only the code staged last opens the vTPMs', async () => {
    const stateDir = tempDir();
    const { pcr16 } = await populated(stateDir);
    const v2 = newCode({ 'src/pss': '// v2' });
    const v3 = newCode({ 'src/tpm/tpm2': '// v3' });
    let host = await open(stateDir);
    await host.stageUpgrade({ code: v2 });
    const second = await host.stageUpgrade({ code: v3 });
    assert.deepEqual(second.pcrs, {});
    assert.equal(host.pss.status().upgradeStagedAt, undefined, "v2's binding is gone");
    await host.close();
    host = await open(stateDir, v2);
    assert.equal(host.pss.refusal?.condition, 'tcb-changed');
    await host.close();
    host = await open(stateDir, v3);
    assert.deepEqual((await vtpm(host, 'web').pcrRead(ALG.SHA256, [16]))[0], pcr16.get('web'));
    await host.close();
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
    await db.put(KEY.meta, encodeMeta({ ...meta, staged: { sealedKey: forged, stagedAt: '2026-01-01T00:00:00.000Z' } }), { sync: true });
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

  test('a code transition added to the database without the storage key refuses the PSS as modified', async () => {
    const stateDir = tempDir();
    await populated(stateDir);
    let host = await open(stateDir);
    await host.stageUpgrade({ code: newCode({ 'src/tpm/tpm2': '// v2' }) });
    await host.close();
    const db = await openDatabase(join(stateDir, 'pss'));
    const meta = decodeMeta((await db.get(KEY.meta)) as Buffer);
    const { pairs, mac } = meta.codeTransitions!;
    const sneaked = [...pairs, [createHash('sha256').update('other code').digest(), pairs[0]![1]] as const];
    await db.put(KEY.meta, encodeMeta({ ...meta, codeTransitions: { pairs: sneaked, mac } }), { sync: true });
    await db.close();
    host = await open(stateDir);
    assert.equal(host.pss.refusal?.condition, 'modified');
    assert.match(host.pss.refusal!.message, /code transitions .* fail their integrity check/);
    await host.close();
  });

  test('a boot chain update staged with the log of its boot opens the vTPMs; without it, it is refused', async () => {
    const stateDir = tempDir();
    const { pcr16, key } = await populated(stateDir);
    // The updated host boots the firmware and boot chain of another profile; its log as firmware writes it.
    const bootLog = join(tempDir(), 'binary_bios_measurements');
    writeFileSync(bootLog, encodeEventLog(await measureHostBoot(() => undefined, [ALG.SHA256], hostProfile('lab-up-updated'))));

    let host = await open(stateDir, undefined, 'lab-up-updated');
    assert.equal(host.pss.refusal?.condition, 'tcb-changed');
    await assert.rejects(host.manager.device('hsm'), (e: unknown) => e instanceof VtpmError && e.code === 'tcb-changed');
    await host.close();

    host = await open(stateDir);
    const notALog = join(tempDir(), 'not-a-log');
    writeFileSync(notALog, 'firmware');
    await assert.rejects(host.stageUpgrade({ bootLog: notALog }), (e: unknown) => e instanceof UpgradeError && e.code === 'bad-boot-log');
    const staged = await host.stageUpgrade({ bootLog });
    const moved = Object.keys(staged.pcrs).map(Number);
    assert.ok(moved.length > 0 && moved.every((pcr) => pcr <= 9), `the boot chain moves host TCB PCRs only: ${moved}`);
    assert.deepEqual(staged.models, []);
    assert.equal(staged.keyBindingKey, 'staged');
    await host.close();

    host = await open(stateDir, undefined, 'lab-up-updated');
    assert.equal(host.pss.refusal, undefined, 'the updated host gets the storage key');
    assert.deepEqual((await vtpm(host, 'web').pcrRead(ALG.SHA256, [16]))[0], pcr16.get('web'));
    assert.ok(await signs(vtpm(host, 'hsm'), key), 'and the key-binding key');
    await host.close();
  });
});
