import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Hypervisor } from '../../src/hypervisor/hypervisor.ts';
import { Tpm2Device } from '../../src/tpm/tpm2/device.ts';
import { ALG, SU } from '../../src/tpm/tpm2/constants.ts';
import { getRandom, pcrExtend, pcrRead, pcrReset, selection, startup } from '../helpers/tpm2-commands.ts';
import { newEngine } from '../helpers/tpm2-engine.ts';

describe('TPM 2.0 commands through the guest CRB path', () => {
  test('Startup, PCR_Extend, PCR_Read and GetRandom answer byte for byte as direct execution does', async () => {
    const direct = new Tpm2Device(newEngine());
    const viaGuest = new Tpm2Device(newEngine());
    const hv = await Hypervisor.start();
    await hv.createPartition('vm', { device: viaGuest });
    await hv.startPartition('vm');
    const commands = [
      startup(SU.CLEAR),
      pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 0xaa) }]),
      pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 0xbb) }]),
      pcrRead([selection(ALG.SHA256, [16])]),
      getRandom(16),
      getRandom(48),
    ];
    for (const cmd of commands) {
      const expected = Buffer.from(await direct.execute(cmd, 0));
      const got = Buffer.from(await hv.guest('vm').transmit(cmd));
      assert.equal(got.toString('hex'), expected.toString('hex'));
      assert.equal(got.readUInt32BE(6), 0, `rc of command 0x${Buffer.from(cmd).readUInt32BE(6).toString(16)}`);
    }
    const random = Buffer.from(await hv.guest('vm').transmit(getRandom(32)));
    assert.equal(random.readUInt16BE(10), 32, 'GetRandom returns the bytes asked for');
    assert.equal(random.length, 12 + 32);
  });

  test('the vTPM sees the locality the guest used', async () => {
    const hv = await Hypervisor.start();
    await hv.createPartition('vm', { device: new Tpm2Device(newEngine()) });
    await hv.startPartition('vm');
    await hv.guest('vm').transmit(startup(SU.CLEAR));
    const reset = pcrReset(17);
    // PCR 17 is resettable from locality 4 only (D-RTM); locality 0 is refused.
    const at0 = Buffer.from(await hv.guest('vm').transmit(reset, 0));
    const at4 = Buffer.from(await hv.guest('vm').transmit(reset, 4));
    assert.notEqual(at0.readUInt32BE(6), 0);
    assert.equal(at4.readUInt32BE(6), 0);
  });
});
