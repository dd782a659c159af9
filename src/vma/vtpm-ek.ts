/**
 * Endorsing a vTPM as a manufacturer endorses a chip: the EK from the TCG template made persistent
 * at its standard handle, its certificate from the vMA stored in the standard NV index —
 * platform-created and write-locked — so `tpm2_getekcertificate` in the guest finds it.
 */
import type { KeyObject } from 'node:crypto';
import { CAP, PT, RH } from '../tpm/tpm2/constants.ts';
import { publicKeyOf } from '../tpm/tpm2/objects/model.ts';
import type { Public } from '../tpm/tpm2/types/public.ts';
import { Tpm2Client, type Exec } from '../hwtpm/tpm2-client.ts';
import { ensurePersistent, removeIndex, storeCertificate } from '../hwtpm/tpm2-provisioning.ts';
import { HANDLES, ekEccTemplate, ekRsaTemplate, srkTemplate } from '../hwtpm/tpm2-templates.ts';

export interface EkIssuer {
  issueEkCertificate(ekPublicKey: KeyObject, info: { migratable: boolean; manufacturerId?: number | string; firmwareVersion?: number }): Promise<Buffer>;
}

export interface InstalledEk {
  readonly handle: number;
  readonly nvIndex: number;
  readonly ekPublic: Public;
  readonly certificate: Buffer;
}

/** The storage root key at 0x81000001, made if the TPM has none yet (AIKs are created under it). */
export function ensureStorageRoot(tpm: Tpm2Client): Promise<Public> {
  return ensurePersistent(tpm, RH.OWNER, HANDLES.SRK, srkTemplate());
}

async function property(tpm: Tpm2Client, pt: number): Promise<number | undefined> {
  const cap = await tpm.getCapability(CAP.TPM_PROPERTIES, pt, 1);
  if (!('properties' in cap.capabilityData)) return undefined;
  return cap.capabilityData.properties.find((p) => p.property === pt)?.value;
}

/**
 * Makes sure the vTPM behind `exec` has an EK of `algorithm` at its standard handle and the vMA's
 * certificate for it at the standard NV index; a certificate already there is replaced.
 */
export async function installVtpmEkCertificate(exec: Exec, issuer: EkIssuer, opts: { migratable: boolean; algorithm?: 'ecc' | 'rsa' }): Promise<InstalledEk> {
  const tpm = new Tpm2Client(exec);
  const rsa = opts.algorithm === 'rsa';
  const handle = rsa ? HANDLES.EK_RSA : HANDLES.EK_ECC;
  const nvIndex = rsa ? HANDLES.EK_CERT_RSA : HANDLES.EK_CERT_ECC;
  const ekPublic = await ensurePersistent(tpm, RH.ENDORSEMENT, handle, rsa ? ekRsaTemplate() : ekEccTemplate());
  const manufacturerId = await property(tpm, PT.MANUFACTURER);
  const firmwareVersion = await property(tpm, PT.FIRMWARE_VERSION_1);
  const certificate = await issuer.issueEkCertificate(publicKeyOf(ekPublic), {
    migratable: opts.migratable,
    ...(manufacturerId !== undefined ? { manufacturerId } : {}),
    ...(firmwareVersion !== undefined ? { firmwareVersion } : {}),
  });
  await removeIndex(tpm, nvIndex);
  await storeCertificate(tpm, nvIndex, certificate);
  return { handle, nvIndex, ekPublic, certificate };
}
