/**
 * Proof that the hwSRK the chip names is a key of the chip its manufacturer certified, before the
 * manager pins its Name and salts every chip session to it. Without it, the Name is whatever the
 * chip (or whatever sits between the manager and the chip) answers on the manager's first start.
 *
 * The chip's EK certificate must chain to a manufacturer root the host trusts and certify the EK
 * the chip holds; the hwSRK's public area must be a storage key that never leaves its TPM and
 * whose admin role only its authValue opens (so only a TPM holding its private part can act for
 * it: a public area loaded alone has no authValue); and TPM2_ActivateCredential must recover a
 * fresh secret wrapped for that EK and the hwSRK's Name — which only the TPM holding both does.
 */
import { randomBytes } from 'node:crypto';
import { parseCertificate, type ParsedCertificate } from '../hwtpm/credentials/x509.ts';
import { Tpm2CommandError, type Tpm2Client } from '../hwtpm/tpm2-client.ts';
import { HANDLES } from '../hwtpm/tpm2-templates.ts';
import { subjectPublicKeyInfo } from '../tpm/crypto/certificate-signing.ts';
import { constantTimeEqual } from '../tpm/crypto/hash.ts';
import { publicKeyOf } from '../tpm/tpm2/objects/model.ts';
import { OBJECT_ATTR as A } from '../tpm/tpm2/types/public.ts';
import { OID } from '../hwtpm/credentials/oids.ts';
import { extendedKeyUsageOf } from '../vma/cert-fields.ts';
import { validateChain } from '../vma/chain.ts';
import { makeCredential } from '../vma/make-credential.ts';
import { activateCredential } from '../vma/tpm-operations.ts';
import { readSrk } from '../hwtpm/tpm2-provisioning.ts';

export class SrkProofError extends Error {
  constructor(problem: string) {
    super(`the chip's hwSRK is not proven to be the certified chip's: ${problem}`);
    this.name = 'SrkProofError';
  }
}

/** The EKs a TPM 2.0 chip may carry, with the NV index of each one's certificate. */
const EKS = [
  { handle: HANDLES.EK_ECC, certificate: HANDLES.EK_CERT_ECC },
  { handle: HANDLES.EK_RSA, certificate: HANDLES.EK_CERT_RSA },
] as const;

const SRK_MUST = A.fixedTPM | A.fixedParent | A.restricted | A.decrypt | A.sensitiveDataOrigin;

/** The hwSRK's Name, once proven as the module comment says; throws SrkProofError otherwise. */
export async function proveSrk(tpm: Tpm2Client, manufacturerRoots: readonly ParsedCertificate[], now: Date = new Date()): Promise<Buffer> {
  const ek = await certifiedEk(tpm, manufacturerRoots, now);
  const srk = await readSrk(tpm);
  const a = srk.outPublic.objectAttributes;
  if ((a & SRK_MUST) !== SRK_MUST || a & (A.sign | A.adminWithPolicy)) {
    throw new SrkProofError('its public area is not a TPM-made storage key whose admin role takes its authValue');
  }
  const expected = randomBytes(32);
  const made = makeCredential(ek.outPublic, srk.name, expected);
  let activated: Buffer;
  try {
    activated = await activateCredential(tpm, HANDLES.SRK, ek.handle, made.credentialBlob, made.secret);
  } catch (e) {
    if (!(e instanceof Tpm2CommandError)) throw e;
    throw new SrkProofError(`the chip could not activate a credential for its EK and the hwSRK's Name (response code 0x${e.rc.toString(16)})`);
  }
  if (!constantTimeEqual(activated, expected)) throw new SrkProofError('the chip activated a credential other than the one made for it');
  return srk.name;
}

/** The first EK whose certificate the chip holds, checked against the roots and the EK itself. */
async function certifiedEk(tpm: Tpm2Client, roots: readonly ParsedCertificate[], now: Date) {
  const problems: string[] = [];
  for (const ek of EKS) {
    let der: Buffer;
    try {
      const { dataSize } = await tpm.nvReadPublic(ek.certificate);
      der = await tpm.nvRead(ek.certificate, ek.certificate, dataSize);
    } catch (e) {
      if (!(e instanceof Tpm2CommandError)) throw e;
      continue;
    }
    const cert = parseCertificate(der, 'the chip EK certificate');
    const chain = validateChain(cert, [], roots, { now });
    if (chain.reasons.length) {
      problems.push(`its EK certificate at 0x${ek.certificate.toString(16)} does not chain to a trusted manufacturer root: ${chain.reasons.join('; ')}`);
      continue;
    }
    // As the privacy CA requires of an EK credential: a certificate for that purpose, not merely the manufacturer's.
    if (!extendedKeyUsageOf(cert).includes(OID.tcgKpEkCertificate)) {
      problems.push(`the certificate at 0x${ek.certificate.toString(16)} is not an EK certificate (no tcg-kp-EKCertificate purpose)`);
      continue;
    }
    const { outPublic } = await tpm.readPublic(ek.handle);
    if (!subjectPublicKeyInfo(publicKeyOf(outPublic)).equals(cert.subjectPublicKeyInfo)) {
      problems.push(`the EK at 0x${ek.handle.toString(16)} is not the key its certificate certifies`);
      continue;
    }
    return { handle: ek.handle, outPublic };
  }
  throw new SrkProofError(problems.length ? problems.join('; ') : 'the chip holds no EK certificate');
}
