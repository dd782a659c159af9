import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { describe, test } from 'node:test';
import { Chip } from '../../src/hwtpm/chip.ts';
import { createManufacturerCa } from '../../src/hwtpm/credentials/manufacturer-ca.ts';
import { manufactureTpm2 } from '../../src/hwtpm/manufacture-tpm2.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { HANDLES, ekRsaTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { ALG, RH } from '../../src/tpm/tpm2/constants.ts';
import { NV_ATTR } from '../../src/tpm/tpm2/types/nv.ts';
import { MemoryStateStore } from '../../src/tpm/tpm2/state/store.ts';

const ca = createManufacturerCa({ manufacturer: 'Test Fab' });
const caCert = new X509Certificate(ca.certificatePem);

describe('TPM 2.0 manufacturing', () => {
  test('a fresh chip gets both EKs at their standard handles with certificates of their public keys', async () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    const eks = await manufactureTpm2(chip, { ca });
    assert.deepEqual(eks.map((e) => e.handle), [HANDLES.EK_RSA, HANDLES.EK_ECC]);
    for (const ek of eks) {
      const cert = new X509Certificate(ek.certificate);
      assert.ok(cert.verify(caCert.publicKey), 'signed by the manufacturer');
      assert.ok(cert.publicKey.equals(ek.publicKey), 'certifies the EK the chip holds');
    }
  });

  test('manufacturing twice changes nothing: the same EKs and the same certificates', async () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    const first = await manufactureTpm2(chip, { ca });
    const second = await manufactureTpm2(chip, { ca });
    assert.deepEqual(second.map((e) => e.certificate), first.map((e) => e.certificate));
  });

  test('a production run cut off half way is finished on the next power-on', async () => {
    const store = new MemoryStateStore();
    const chip = Chip.open({ personality: 'tpm2', store });
    await chip.exclusive(async (exec) => {
      const tpm = new Tpm2Client(exec);
      await tpm.startup();
      // Power lost after the RSA EK was persisted and its certificate index defined, before the write.
      const ek = await tpm.createPrimary(RH.ENDORSEMENT, ekRsaTemplate());
      await tpm.evictControl(RH.OWNER, ek.handle, HANDLES.EK_RSA);
      await tpm.nvDefineSpace(RH.PLATFORM, {
        nvIndex: HANDLES.EK_CERT_RSA,
        nameAlg: ALG.SHA256,
        attributes: NV_ATTR.PPWRITE | NV_ATTR.WRITEDEFINE | NV_ATTR.PPREAD | NV_ATTR.OWNERREAD | NV_ATTR.AUTHREAD | NV_ATTR.NO_DA | NV_ATTR.PLATFORMCREATE,
        authPolicy: Buffer.alloc(0),
        dataSize: 100,
      });
    });
    await chip.flush();
    await chip.powerOff();
    const reopened = Chip.open({ personality: 'tpm2', store });
    const eks = await manufactureTpm2(reopened, { ca });
    for (const ek of eks) assert.ok(new X509Certificate(ek.certificate).publicKey.equals(ek.publicKey));
    await reopened.powerOff();
    await reopened.powerOn();
    const pub = await reopened.exclusive(async (exec) => {
      const tpm = new Tpm2Client(exec);
      await tpm.startup();
      return tpm.nvReadPublic(HANDLES.EK_CERT_RSA);
    });
    assert.ok(pub.attributes & NV_ATTR.WRITELOCKED, 'the finished index is write-locked');
    assert.equal(pub.dataSize, eks[0]!.certificate.length);
  });
});
