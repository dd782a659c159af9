import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { openManufacturerCa } from '../../src/hwtpm/credentials/manufacturer-ca.ts';
import { bootLabHost } from '../../src/hwtpm/lab-host.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { HANDLES, srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { CC, RH } from '../../src/tpm/tpm2/constants.ts';
import { readSrk } from '../../src/hwtpm/tpm2-provisioning.ts';
import { proveSrk, SrkProofError } from '../../src/vtpm/srk-proof.ts';
import { ekCertificateTemplate } from '../../src/hwtpm/credentials/ek-certificate.ts';
import { issueCertificate } from '../../src/hwtpm/credentials/x509.ts';
import { OID } from '../../src/hwtpm/credentials/oids.ts';
import { removeIndex, storeCertificate } from '../../src/hwtpm/tpm2-provisioning.ts';
import { publicKeyOf } from '../../src/tpm/tpm2/objects/model.ts';
import { openChipClient } from '../../src/hwtpm/open-chip-client.ts';
import { tempDirs } from '../helpers/temp-dirs.ts';

const tempDir = tempDirs('vtpmd-srk-');

async function labChip() {
  const lab = await bootLabHost({ stateDir: tempDir(), hostId: 'srk-proof' });
  await (await openChipClient(lab.chip)).takeOwnership();
  return lab;
}

/**
 * A client whose traffic passes something that answers ReadPublic of the hwSRK with another key's
 * public area and sends every command naming the hwSRK to that key instead.
 */
function interposed(chip: { execute(c: Uint8Array, locality: number): Promise<Uint8Array> }, impostor: number): Tpm2Client {
  return new Tpm2Client(async (command) => {
    const c = Buffer.from(command);
    const cc = c.readUInt32BE(6);
    if ((cc === CC.ReadPublic || cc === CC.ActivateCredential) && c.readUInt32BE(10) === HANDLES.SRK) c.writeUInt32BE(impostor, 10);
    return chip.execute(c, 0);
  });
}

describe("proving the hwSRK before its Name is pinned", () => {
  test("the lab chip's hwSRK is proven: its EK certificate chains to the manufacturer, and the chip activates a credential for the EK and the hwSRK's Name", async () => {
    const lab = await labChip();
    const tpm = new Tpm2Client((c) => lab.chip.execute(c, 0));
    const name = await proveSrk(tpm, [lab.ca.certificate]);
    assert.deepEqual(name, (await readSrk(tpm)).name);
  });

  test("a chip whose EK certificate comes from a manufacturer the host does not trust is refused, naming the chain", async () => {
    const lab = await labChip();
    const other = await openManufacturerCa(tempDir(), { manufacturer: 'Elsewhere' });
    const tpm = new Tpm2Client((c) => lab.chip.execute(c, 0));
    await assert.rejects(proveSrk(tpm, [other.certificate]), (e) => e instanceof SrkProofError && /does not chain to a trusted manufacturer root/.test(e.message));
  });

  test("a certificate from the right manufacturer that is not an EK certificate (no tcg-kp-EKCertificate purpose) proves nothing", async () => {
    const lab = await labChip();
    const tpm = new Tpm2Client((c) => lab.chip.execute(c, 0));
    for (const [handle, index] of [[HANDLES.EK_ECC, HANDLES.EK_CERT_ECC], [HANDLES.EK_RSA, HANDLES.EK_CERT_RSA]] as const) {
      const ekPublicKey = publicKeyOf((await tpm.readPublic(handle)).outPublic);
      const template = ekCertificateTemplate({ ekPublicKey, issuerSubject: lab.ca.certificate.subject, issuerKeyId: lab.ca.keyId, manufacturerId: 'SIMU', model: 'lab', firmwareVersion: 1 });
      const der = issueCertificate({ ...template, extensions: template.extensions.filter((e) => e.oid !== OID.extKeyUsage) }, lab.ca.privateKey);
      await removeIndex(tpm, index);
      await storeCertificate(tpm, index, der);
    }
    await assert.rejects(proveSrk(tpm, [lab.ca.certificate]), (e) => e instanceof SrkProofError && /not an EK certificate/.test(e.message));
  });

  test('another storage key in the same chip passed off as the hwSRK is refused when only its public area is swapped in', async () => {
    const lab = await labChip();
    const tpm = new Tpm2Client((c) => lab.chip.execute(c, 0));
    const made = await tpm.create(HANDLES.SRK, srkTemplate());
    const fake = await tpm.load(HANDLES.SRK, made.outPrivate, made.outPublic);
    const swapped = new Tpm2Client(async (command) => {
      const c = Buffer.from(command);
      if (c.readUInt32BE(6) === CC.ReadPublic && c.readUInt32BE(10) === HANDLES.SRK) c.writeUInt32BE(fake.handle, 10);
      return lab.chip.execute(c, 0);
    });
    await assert.rejects(proveSrk(swapped, [lab.ca.certificate]), (e) => e instanceof SrkProofError && /could not activate/.test(e.message));
  });

  test('a public area loaded alone (LoadExternal) cannot stand in for the hwSRK: its admin role has no authValue to open it', async () => {
    const lab = await labChip();
    const tpm = new Tpm2Client((c) => lab.chip.execute(c, 0));
    // A public area with the hwSRK's attributes and a modulus of the interposer's choosing.
    const other = await tpm.createPrimary(RH.NULL, srkTemplate());
    const external = (await tpm.call(CC.LoadExternal, [], [], { inPrivate: null, inPublic: other.outPublic, hierarchy: RH.OWNER })).handle!;
    // TPM_RC_AUTH_UNAVAILABLE for the first handle.
    await assert.rejects(proveSrk(interposed(lab.chip, external), [lab.ca.certificate]), (e) => e instanceof SrkProofError && /could not activate .*0x12f\)/.test(e.message));
  });
});
