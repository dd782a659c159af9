import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { Chip } from '../../src/hwtpm/chip.ts';
import { Tpm2Client, Tpm2CommandError } from '../../src/hwtpm/tpm2-client.ts';
import { sealedTemplate, srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { CC, RH } from '../../src/tpm/tpm2/constants.ts';
import { RC } from '../../src/tpm/tpm2/rc.ts';
import { MemoryStateStore } from '../../src/tpm/tpm2/state/store.ts';

describe('TPM2_PolicyPhysicalPresence on the chip', () => {
  test('a policy that requires physical presence is satisfied only while the platform asserts it', async () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    const tpm = new Tpm2Client((c) => chip.execute(c, 0));
    await tpm.startup();
    const trial = await tpm.startPolicySession(true);
    await tpm.call(CC.PolicyPhysicalPresence, [trial], []);
    const policy = await tpm.policyGetDigest(trial);
    await tpm.flushContext(trial);
    const cc = Buffer.alloc(4);
    cc.writeUInt32BE(CC.PolicyPhysicalPresence);
    assert.deepEqual(policy, createHash('sha256').update(Buffer.alloc(32)).update(cc).digest(), 'policyDigest = H(0 || TPM_CC_PolicyPhysicalPresence)');

    const srk = await tpm.createPrimary(RH.OWNER, srkTemplate());
    const { outPrivate, outPublic } = await tpm.create(srk.handle, sealedTemplate(policy), { data: Buffer.from('present') });
    const { handle } = await tpm.load(srk.handle, outPrivate, outPublic);
    const unseal = async () => {
      const s = await tpm.startPolicySession();
      await tpm.call(CC.PolicyPhysicalPresence, [s], []);
      try {
        return await tpm.unseal(handle, { policySession: s });
      } finally {
        await tpm.flushContext(s).catch(() => undefined);
      }
    };
    await assert.rejects(unseal(), (e) => e instanceof Tpm2CommandError && (e.rc & 0x0bf) === RC.PP);
    chip.setPhysicalPresence(true);
    assert.equal((await unseal()).toString(), 'present');
    chip.setPhysicalPresence(false);
    await assert.rejects(unseal(), (e) => e instanceof Tpm2CommandError && (e.rc & 0x0bf) === RC.PP);
  });
});
