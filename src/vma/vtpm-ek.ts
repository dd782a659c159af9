/**
 * Endorsing a vTPM as a manufacturer endorses a chip: the EK from the TCG template made persistent
 * at its standard handle, its certificate from the vMA stored in the standard NV index —
 * platform-created and write-locked — so `tpm2_getekcertificate` in the guest finds it.
 */
import type { KeyObject } from 'node:crypto';
import { ALG, CAP, CC, PT, RH } from '../tpm/tpm2/constants.ts';
import { RC, isFormatOne } from '../tpm/tpm2/rc.ts';
import { publicKeyOf } from '../tpm/tpm2/objects/model.ts';
import { NV_ATTR } from '../tpm/tpm2/types/nv.ts';
import type { Public } from '../tpm/tpm2/types/public.ts';
import { Tpm2Client, Tpm2CommandError, type Exec } from '../hwtpm/tpm2-client.ts';
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

const EK_CERT_ATTRIBUTES =
  NV_ATTR.PPWRITE | NV_ATTR.WRITEDEFINE | NV_ATTR.PPREAD | NV_ATTR.OWNERREAD | NV_ATTR.AUTHREAD | NV_ATTR.NO_DA | NV_ATTR.PLATFORMCREATE;

function isMissing(e: unknown): boolean {
  if (!(e instanceof Tpm2CommandError)) return false;
  return (isFormatOne(e.rc) ? e.rc & 0x0bf : e.rc) === RC.HANDLE;
}

/** The object at `handle`, created from `template` in `hierarchy` and made persistent if absent. */
export async function ensurePersistent(tpm: Tpm2Client, hierarchy: number, handle: number, template: Public): Promise<Public> {
  try {
    return (await tpm.readPublic(handle)).outPublic;
  } catch (e) {
    if (!isMissing(e)) throw e;
  }
  const made = await tpm.createPrimary(hierarchy, template);
  try {
    await tpm.evictControl(RH.OWNER, made.handle, handle);
  } finally {
    await tpm.flushContext(made.handle);
  }
  return made.outPublic;
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
  try {
    await tpm.nvReadPublic(nvIndex);
    await tpm.call(CC.NV_UndefineSpace, [RH.PLATFORM, nvIndex], [{}]);
  } catch (e) {
    if (!isMissing(e)) throw e;
  }
  await tpm.nvDefineSpace(RH.PLATFORM, { nvIndex, nameAlg: ALG.SHA256, attributes: EK_CERT_ATTRIBUTES, authPolicy: Buffer.alloc(0), dataSize: certificate.length });
  await tpm.nvWrite(RH.PLATFORM, nvIndex, certificate);
  await tpm.call(CC.NV_WriteLock, [RH.PLATFORM, nvIndex], [{}]);
  return { handle, nvIndex, ekPublic, certificate };
}
