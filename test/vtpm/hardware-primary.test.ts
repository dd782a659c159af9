/**
 * Primary keys of a hardware-backed vTPM — its EK, its SRK, primaries guests make for themselves —
 * are primaries of the chip's storage hierarchy, which the chip derives from a template whose
 * unique value comes from the vTPM's own hierarchy seed: the same template gives the same key for
 * as long as that seed stands, and nobody else can have the chip make it.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Chip } from '../../src/hwtpm/chip.ts';
import { openChipClient } from '../../src/hwtpm/open-chip-client.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { MemoryStateStore } from '../../src/tpm/tpm2/state/store.ts';
import { ekEccTemplate, ekRsaTemplate, eccSigningTemplate, srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { ALG, CC, RH } from '../../src/tpm/tpm2/constants.ts';
import { OBJECT_ATTR as A, type Public } from '../../src/tpm/tpm2/types/public.ts';
import { encode } from '../../src/tpm/wire/codec.ts';
import { publicArea } from '../../src/tpm/tpm2/types/public.ts';
import { makeCredential } from '../../src/vma/make-credential.ts';
import { HardwareKeyService } from '../../src/vtpm/hardware-key-service.ts';
import { Tpm2VtpmModel } from '../../src/vtpm/tpm2-model.ts';
import { commandCodes, setup, signsWith, tapChip } from '../helpers/hardware-vtpm.ts';

const PERSISTENT = 0x81000100;
const sameKey = (a: Public, b: Public) => Buffer.from(encode(publicArea, a)).equals(encode(publicArea, b));


describe('primary keys of a hardware-backed vTPM', () => {
  test('the chip derives them: the same template gives the same key, the chip saw CreatePrimary, and a primary signs and recovers secrets there', async () => {
    const { vtpm, chip } = await setup(8);
    const seen = tapChip(chip);
    const first = await vtpm.createPrimary(RH.ENDORSEMENT, ekRsaTemplate());
    assert.ok(commandCodes(seen).includes(CC.CreatePrimary), 'the chip made the EK');
    const again = await vtpm.createPrimary(RH.ENDORSEMENT, ekRsaTemplate());
    assert.ok(sameKey(first.outPublic, again.outPublic), 'the same template, the same EK');
    assert.ok(!sameKey(first.outPublic, (await vtpm.createPrimary(RH.OWNER, ekRsaTemplate())).outPublic), 'another hierarchy, another key');
    await vtpm.flushContext(again.handle);

    // A credential for a key, activated with the EK (here one a password may authorize, rather
    // than the TCG EK policy): the seed is recovered in the chip.
    const ek = await vtpm.createPrimary(RH.ENDORSEMENT, { ...ekRsaTemplate(), objectAttributes: ekRsaTemplate().objectAttributes | A.userWithAuth });
    await vtpm.flushContext(first.handle);
    const ak = await vtpm.createPrimary(RH.OWNER, eccSigningTemplate(false));
    assert.ok(await signsWith(vtpm, ak.handle, ak.outPublic));
    seen.length = 0;
    const credential = Buffer.from('for the vTPM that holds this EK');
    const made = makeCredential(ek.outPublic, ak.name, credential);
    const r = await vtpm.call(CC.ActivateCredential, [ak.handle, ek.handle], [{}, { password: '' }], { credentialBlob: made.credentialBlob, secret: made.secret });
    assert.deepEqual(r.params.certInfo, credential);
    assert.ok(commandCodes(seen).includes(CC.RSA_Decrypt), 'the EK decrypted the seed in the chip');
  });

  test("each vTPM's seeds make its own keys: another vTPM, or the same one after TPM2_Clear, gets another SRK from the same template", async () => {
    const a = await setup();
    const b = await setup();
    const srkA = await a.vtpm.readPublic(a.vsrk);
    assert.ok(!sameKey(srkA.outPublic, (await b.vtpm.readPublic(b.vsrk)).outPublic));
    await a.vtpm.flushContext(a.vsrk);
    await a.vtpm.call(CC.Clear, [RH.PLATFORM], [{}]);
    const after = await a.vtpm.createPrimary(RH.OWNER, srkTemplate());
    assert.ok(!sameKey(srkA.outPublic, after.outPublic), 'a new storage seed, a new SRK');
    const endorsement = await a.vtpm.createPrimary(RH.ENDORSEMENT, ekEccTemplate());
    assert.ok(sameKey(endorsement.outPublic, (await a.vtpm.createPrimary(RH.ENDORSEMENT, ekEccTemplate())).outPublic), 'the endorsement seed stays');
  });

  test('after a host restart the vTPM derives its SRK again, and what was made under it loads and works', async () => {
    const { vtpm, vsrk, chip, kbk, snapshots } = await setup();
    const srk = await vtpm.readPublic(vsrk);
    const key = await vtpm.create(vsrk, eccSigningTemplate(false));
    // A software child too: wrapped under the SRK's seed, which must come back with the SRK.
    const soft = await vtpm.create(vsrk, { ...eccSigningTemplate(false), objectAttributes: eccSigningTemplate(false).objectAttributes & ~(0x2 | 0x10) });
    await vtpm.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 7) }]);

    // A new host process: the model from its last state, a new key service with no saved contexts.
    const model = Tpm2VtpmModel.restore(async () => undefined, snapshots.at(-1)!, { hardware: { kbk, service: new HardwareKeyService(chip).forVm('vm-a') } });
    const restored = new Tpm2Client((c) => model.execute(c, 0));
    const srk2 = await restored.createPrimary(RH.OWNER, srkTemplate());
    assert.ok(sameKey(srk.outPublic, srk2.outPublic), 'the same SRK');
    for (const child of [key, soft]) {
      const { handle } = await restored.load(srk2.handle, child.outPrivate, child.outPublic);
      assert.ok(await signsWith(restored, handle, child.outPublic));
      await restored.flushContext(handle);
    }
  });

  test('a vTPM loaded again (after an idle unload) gets its primaries from their saved chip contexts: the chip derives nothing again', async () => {
    const { vtpm, vsrk, chip, service, kbk, snapshots } = await setup();
    const srk = await vtpm.readPublic(vsrk);
    const model = Tpm2VtpmModel.restore(async () => undefined, snapshots.at(-1)!, { hardware: { kbk, service: service.forVm('vm-a') } });
    const reloaded = new Tpm2Client((c) => model.execute(c, 0));
    const seen = tapChip(chip);
    const again = await reloaded.createPrimary(RH.OWNER, srkTemplate());
    assert.ok(sameKey(srk.outPublic, again.outPublic));
    assert.ok(commandCodes(seen).includes(CC.ContextLoad));
    assert.ok(!commandCodes(seen).includes(CC.CreatePrimary), 'no derivation on the chip');
  });

  test('if the chip derives another key for a primary (its storage seed changed, or it is another chip), using the primary fails loudly rather than with that key', async () => {
    const { vtpm, kbk, snapshots } = await setup();
    const ak = await vtpm.createPrimary(RH.OWNER, eccSigningTemplate(false));
    await vtpm.evictControl(RH.OWNER, ak.handle, PERSISTENT);
    assert.ok(await signsWith(vtpm, PERSISTENT, ak.outPublic));
    const other = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    await (await openChipClient(other)).takeOwnership();
    const model = Tpm2VtpmModel.restore(async () => undefined, snapshots.at(-1)!, { hardware: { kbk, service: new HardwareKeyService(other).forVm('vm-a') } });
    const moved = new Tpm2Client((c) => model.execute(c, 0));
    await assert.rejects(signsWith(moved, PERSISTENT, ak.outPublic), /no longer derives/);
  });
});
