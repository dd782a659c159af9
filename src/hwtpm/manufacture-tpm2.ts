/**
 * The simulated TPM manufacturer's production line for a TPM 2.0 chip: the RSA-2048 and ECC
 * P-256 EKs from the TCG EK templates, made persistent at their standard handles, and an X.509
 * EK certificate for each, signed by the manufacturer's CA and stored in its standard NV index,
 * platform-created and write-locked as on a shipped part.
 *
 * Every step checks whether it was already done, so a production run that was interrupted (power
 * lost half way) finishes on the next power-on instead of leaving a chip without credentials.
 */
import type { KeyObject } from 'node:crypto';
import { ALG, CC, RH, SU } from '../tpm/tpm2/constants.ts';
import { RC, isFormatOne } from '../tpm/tpm2/rc.ts';
import { DEFAULT_IDENTITY } from '../tpm/tpm2/capability/properties.ts';
import { NV_ATTR } from '../tpm/tpm2/types/nv.ts';
import { publicKeyOf } from '../tpm/tpm2/objects/model.ts';
import type { Public } from '../tpm/tpm2/types/public.ts';
import type { Chip } from './chip.ts';
import { issueEkCertificate } from './credentials/ek-certificate.ts';
import type { CertificateAuthority } from './credentials/manufacturer-ca.ts';
import { Tpm2Client, Tpm2CommandError } from './tpm2-client.ts';
import { HANDLES, ekEccTemplate, ekRsaTemplate } from './tpm2-templates.ts';

export interface Tpm2ManufacturingOptions {
  readonly ca: CertificateAuthority;
  /** The model string the EK certificates carry. */
  readonly model?: string;
}

export interface ManufacturedEk {
  readonly handle: number;
  readonly certificateIndex: number;
  readonly publicKey: KeyObject;
  readonly certificate: Buffer;
}

/** The Library revision the engine reports (TPM_PT_REVISION 1.59). */
const SPECIFICATION = { family: '2.0', level: 0, revision: 159 };
const EK_CERT_ATTRIBUTES =
  NV_ATTR.PPWRITE | NV_ATTR.WRITEDEFINE | NV_ATTR.PPREAD | NV_ATTR.OWNERREAD | NV_ATTR.AUTHREAD | NV_ATTR.NO_DA | NV_ATTR.PLATFORMCREATE;

const EKS = [
  { handle: HANDLES.EK_RSA, certificateIndex: HANDLES.EK_CERT_RSA, template: ekRsaTemplate },
  { handle: HANDLES.EK_ECC, certificateIndex: HANDLES.EK_CERT_ECC, template: ekEccTemplate },
] as const;

/**
 * Provisions whatever the chip still lacks of its EKs and EK certificates, leaving it after an
 * orderly Shutdown(CLEAR), ready for the power cycle that ships it. Returns both EKs with their
 * certificates.
 */
export async function manufactureTpm2(chip: Chip, opts: Tpm2ManufacturingOptions): Promise<ManufacturedEk[]> {
  if (!chip.powered) await chip.powerOn();
  const made = await chip.exclusive(async (exec) => {
    const tpm = new Tpm2Client(exec);
    await startupIfNeeded(tpm);
    const out: ManufacturedEk[] = [];
    for (const ek of EKS) {
      const pub = await persistentEk(tpm, ek.handle, ek.template());
      const publicKey = publicKeyOf(pub);
      let certificate = await readCertificate(tpm, ek.certificateIndex);
      if (!certificate) {
        certificate = issueEkCertificate({
          ekPublicKey: publicKey,
          issuer: opts.ca,
          manufacturerId: DEFAULT_IDENTITY.manufacturer,
          model: opts.model ?? 'vtpmd simulated TPM 2.0',
          firmwareVersion: DEFAULT_IDENTITY.firmwareVersion[0],
          specification: SPECIFICATION,
        }).der;
        await storeCertificate(tpm, ek.certificateIndex, certificate);
      }
      out.push({ handle: ek.handle, certificateIndex: ek.certificateIndex, publicKey, certificate });
    }
    await tpm.shutdown(SU.CLEAR);
    return out;
  });
  await chip.flush();
  return made;
}

async function startupIfNeeded(tpm: Tpm2Client): Promise<void> {
  try {
    await tpm.startup(SU.CLEAR);
  } catch (e) {
    if (!(e instanceof Tpm2CommandError && e.rc === RC.INITIALIZE)) throw e;
  }
}

function isMissing(e: unknown): boolean {
  if (!(e instanceof Tpm2CommandError)) return false;
  const base = isFormatOne(e.rc) ? e.rc & 0x0bf : e.rc;
  return base === RC.HANDLE;
}

async function persistentEk(tpm: Tpm2Client, handle: number, template: Public): Promise<Public> {
  try {
    return (await tpm.readPublic(handle)).outPublic;
  } catch (e) {
    if (!isMissing(e)) throw e;
  }
  const created = await tpm.createPrimary(RH.ENDORSEMENT, template);
  try {
    await tpm.evictControl(RH.OWNER, created.handle, handle);
  } finally {
    await tpm.flushContext(created.handle);
  }
  return created.outPublic;
}

/** The certificate in `index`, or undefined if the index is absent or was never (fully) written. */
async function readCertificate(tpm: Tpm2Client, index: number): Promise<Buffer | undefined> {
  let size: number;
  try {
    const pub = await tpm.nvReadPublic(index);
    if (!(pub.attributes & NV_ATTR.WRITELOCKED)) {
      // Defined but not finished: start the index over.
      await tpm.call(CC.NV_UndefineSpace, [RH.PLATFORM, index], [{}]);
      return undefined;
    }
    size = pub.dataSize;
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  }
  return tpm.nvRead(RH.PLATFORM, index, size);
}

async function storeCertificate(tpm: Tpm2Client, index: number, der: Buffer): Promise<void> {
  await tpm.nvDefineSpace(RH.PLATFORM, { nvIndex: index, nameAlg: ALG.SHA256, attributes: EK_CERT_ATTRIBUTES, authPolicy: Buffer.alloc(0), dataSize: der.length });
  await tpm.nvWrite(RH.PLATFORM, index, der);
  // The lock is the last step: a locked index is a finished one.
  await tpm.call(CC.NV_WriteLock, [RH.PLATFORM, index], [{}]);
}
