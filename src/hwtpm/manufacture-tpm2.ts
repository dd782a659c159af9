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
import { RH, SU } from '../tpm/tpm2/constants.ts';
import { DEFAULT_IDENTITY } from '../tpm/tpm2/capability/properties.ts';
import { NV_ATTR } from '../tpm/tpm2/types/nv.ts';
import { publicKeyOf } from '../tpm/tpm2/objects/model.ts';
import type { Chip } from './chip.ts';
import { issueEkCertificate } from './credentials/ek-certificate.ts';
import type { CertificateAuthority } from './credentials/manufacturer-ca.ts';
import { Tpm2Client } from './tpm2-client.ts';
import { startChip } from './chip-startup.ts';
import { EK_SLOTS } from './tpm2-templates.ts';
import { ensurePersistent, isMissingHandle, removeIndex, storeCertificate } from './tpm2-provisioning.ts';

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

/**
 * Provisions whatever the chip still lacks of its EKs and EK certificates, leaving it after an
 * orderly Shutdown(CLEAR), ready for the power cycle that ships it. Returns both EKs with their
 * certificates.
 */
export async function manufactureTpm2(chip: Chip, opts: Tpm2ManufacturingOptions): Promise<ManufacturedEk[]> {
  await startChip(chip);
  const made = await chip.exclusive(async (exec) => {
    const tpm = new Tpm2Client(exec);
    const out: ManufacturedEk[] = [];
    for (const ek of EK_SLOTS) {
      const pub = await ensurePersistent(tpm, RH.ENDORSEMENT, ek.handle, ek.template());
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

/** The certificate in `index`, or undefined if the index is absent or was never (fully) written. */
async function readCertificate(tpm: Tpm2Client, index: number): Promise<Buffer | undefined> {
  let size: number;
  try {
    const pub = await tpm.nvReadPublic(index);
    if (!(pub.attributes & NV_ATTR.WRITELOCKED)) {
      // Defined but not finished: start the index over.
      await removeIndex(tpm, index);
      return undefined;
    }
    size = pub.dataSize;
  } catch (e) {
    if (isMissingHandle(e)) return undefined;
    throw e;
  }
  return tpm.nvRead(RH.PLATFORM, index, size);
}
