/**
 * The production line for a TPM 1.2 chip: the engine makes its RSA-2048 EK at first power-on;
 * here the manufacturer certifies it and stores the certificate in TPM_NV_INDEX_EKCert in the PC
 * Client form (TCG_PCCLIENT_STORED_CERT holding a TCG_FULL_CERT), where TSS stacks look for it.
 */
import { NV_INDEX } from '../tpm/tpm12/constants.ts';
import { Tpm12Device } from '../tpm/tpm12/device.ts';
import { Tpm12Client } from '../tpm/tpm12/client/index.ts';
import { startChip } from './chip-startup.ts';
import { publicKeyOf } from '../tpm/tpm12/client/helpers.ts';
import type { Chip } from './chip.ts';
import { issueEkCertificate } from './credentials/ek-certificate.ts';
import type { CertificateAuthority } from './credentials/manufacturer-ca.ts';
import type { ManufacturedEk } from './manufacture-tpm2.ts';

const STORED_CERT_TAG = 0x1001;
const FULL_CERT_TAG = 0x1002;
/** Main specification 1.2, level 2, revision 116. */
const SPECIFICATION = { family: '1.2', level: 2, revision: 116 };

/** TCG_PCCLIENT_STORED_CERT { tag, certType = full, certSize, TCG_FULL_CERT { tag, DER } }. */
export function storedEkCertificate(der: Buffer): Buffer {
  const h = Buffer.alloc(7);
  h.writeUInt16BE(STORED_CERT_TAG, 0);
  h[2] = 0;
  h.writeUInt16BE(der.length + 2, 3);
  h.writeUInt16BE(FULL_CERT_TAG, 5);
  return Buffer.concat([h, der]);
}

/** The DER certificate inside a stored one, or undefined if it is not in that form. */
export function certificateOfStored(stored: Buffer): Buffer | undefined {
  if (stored.length < 7 || stored.readUInt16BE(0) !== STORED_CERT_TAG || stored.readUInt16BE(5) !== FULL_CERT_TAG) return undefined;
  const size = stored.readUInt16BE(3);
  return size === stored.length - 5 ? stored.subarray(7) : undefined;
}

export async function manufactureTpm12(chip: Chip, opts: { ca: CertificateAuthority; model?: string }): Promise<ManufacturedEk[]> {
  if (!(chip.device instanceof Tpm12Device)) throw new Error('manufactureTpm12 needs a chip with the TPM 1.2 personality');
  const engine = chip.device.engine;
  await startChip(chip);
  return chip.exclusive(async (exec) => {
    const tpm = new Tpm12Client(exec);
    const publicKey = publicKeyOf(await tpm.readPubek());
    const existing = engine.nv.nv.find((a) => a.pub.nvIndex === NV_INDEX.EKCert);
    let certificate = existing && certificateOfStored(existing.data);
    if (!certificate) {
      certificate = issueEkCertificate({
        ekPublicKey: publicKey,
        issuer: opts.ca,
        manufacturerId: engine.identity.manufacturer,
        model: opts.model ?? 'vtpmd simulated TPM 1.2',
        firmwareVersion: 1,
        specification: SPECIFICATION,
      }).der;
      engine.writeEkCertificate(storedEkCertificate(certificate));
    }
    return [{ handle: 0, certificateIndex: NV_INDEX.EKCert, publicKey, certificate }];
  });
}
