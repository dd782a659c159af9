/**
 * Endorsement Key certificates as the TCG EK Credential Profile for TPM 2.0 lays them out: an
 * empty subject, the TPM's identity in a critical subjectAltName directoryName, the
 * tcg-kp-EKCertificate purpose, and the TPM specification in subjectDirectoryAttributes.
 */
import type { KeyObject } from 'node:crypto';
import { describeKey, subjectPublicKeyInfo } from '../../tpm/crypto/certificate-signing.ts';
import { systemEntropy, type EntropySource } from '../../tpm/crypto/random.ts';
import { encode, seq, uint, utf8 } from './der.ts';
import { CredentialError } from './errors.ts';
import {
  authorityKeyIdentifier,
  basicConstraints,
  certificatePolicies,
  extendedKeyUsage,
  keyUsage,
  subjectAltNameDirectory,
  subjectDirectoryAttributes,
  type CertificatePolicy,
} from './extensions.ts';
import type { CertificateAuthority } from './manufacturer-ca.ts';
import { KEY_USAGE, OID } from './oids.ts';
import { issueCertificate, randomSerial, toPem, type CertificateTemplate } from './x509.ts';

/** The TPM specification the chip implements: TPMSpecification ::= SEQUENCE { family, level, revision }. */
export interface TpmSpecification {
  readonly family: string;
  readonly level: number;
  readonly revision: number;
}

export const TPM20_SPECIFICATION: TpmSpecification = { family: '2.0', level: 0, revision: 164 };

export interface EkCertificateRequest {
  /** The EK's public key: RSA (2048 bits or more) or EC P-256 / P-384. */
  readonly ekPublicKey: KeyObject;
  readonly issuer: CertificateAuthority;
  /** TPM_PT_MANUFACTURER, e.g. 0x56545044 or the four-letter vendor id "VTPD". */
  readonly manufacturerId: number | string;
  readonly model: string;
  /** TPM_PT_FIRMWARE_VERSION_1. */
  readonly firmwareVersion: number;
  readonly specification?: TpmSpecification;
  readonly notBefore?: Date;
  /** Defaults to 9999-12-31T23:59:59Z, RFC 5280's "no well-defined expiration": an EK lives as long as its chip. */
  readonly notAfter?: Date;
  readonly policies?: readonly CertificatePolicy[];
  readonly entropy?: EntropySource;
}

export interface IssuedCertificate {
  readonly der: Buffer;
  readonly pem: string;
}

export const NO_WELL_DEFINED_EXPIRATION = new Date(Date.UTC(9999, 11, 31, 23, 59, 59));

/** The profile's "id:" form: eight upper-case hex digits of a 32-bit TPM property. */
export function tpmIdString(value: number | string): string {
  let n: number;
  if (typeof value === 'string') {
    if (!/^[\x20-\x7e]{1,4}$/.test(value)) throw new CredentialError(`a TPM vendor id is one to four printable ASCII characters, not ${JSON.stringify(value)}`);
    n = Buffer.from(value.padEnd(4, '\0'), 'latin1').readUInt32BE(0);
  } else {
    if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new CredentialError(`a TPM property is a 32-bit unsigned integer, not ${value}`);
    n = value;
  }
  return `id:${n.toString(16).toUpperCase().padStart(8, '0')}`;
}

function ekKeyUsage(ek: KeyObject): number {
  let d;
  try {
    d = describeKey(ek);
  } catch (e) {
    throw new CredentialError(`the EK public key cannot be certified: ${(e as Error).message}`);
  }
  if (d.type === 'rsa') {
    if (d.bits < 2048) throw new CredentialError(`an RSA EK must have at least 2048 bits, not ${d.bits}`);
    return KEY_USAGE.keyEncipherment;
  }
  return KEY_USAGE.keyAgreement;
}

/** What an EK certificate says, whoever signs it (the manufacturer for a chip, the vMA for a vTPM). */
export interface EkCertificateFields {
  readonly ekPublicKey: KeyObject;
  /** The issuer's subject (DER Name) and subjectKeyIdentifier. */
  readonly issuerSubject: Buffer;
  readonly issuerKeyId: Buffer;
  readonly manufacturerId: number | string;
  readonly model: string;
  readonly firmwareVersion: number;
  readonly specification?: TpmSpecification;
  readonly notBefore?: Date;
  readonly notAfter?: Date;
  readonly policies?: readonly CertificatePolicy[];
  readonly entropy?: EntropySource;
}

/** The TCG EK Credential Profile certificate for `f`, ready to be signed. */
export function ekCertificateTemplate(f: EkCertificateFields): CertificateTemplate {
  const usage = ekKeyUsage(f.ekPublicKey);
  const spec = f.specification ?? TPM20_SPECIFICATION;
  if (f.model === '') throw new CredentialError('the TPM model must not be empty');
  return {
    serial: randomSerial(f.entropy ?? systemEntropy),
    issuer: f.issuerSubject,
    subject: encode(seq()),
    notBefore: f.notBefore ?? new Date(Math.floor(Date.now() / 1000) * 1000),
    notAfter: f.notAfter ?? NO_WELL_DEFINED_EXPIRATION,
    subjectPublicKeyInfo: subjectPublicKeyInfo(f.ekPublicKey),
    extensions: [
      ...(f.policies?.length ? [certificatePolicies(f.policies)] : []),
      subjectAltNameDirectory(
        [
          { oid: OID.tcgTpmManufacturer, value: tpmIdString(f.manufacturerId) },
          { oid: OID.tcgTpmModel, value: f.model },
          { oid: OID.tcgTpmVersion, value: tpmIdString(f.firmwareVersion) },
        ],
        true,
      ),
      basicConstraints(false),
      keyUsage([usage]),
      extendedKeyUsage([OID.tcgKpEkCertificate]),
      subjectDirectoryAttributes([{ oid: OID.tcgTpmSpecification, value: seq(utf8(spec.family), uint(spec.level), uint(spec.revision)) }]),
      authorityKeyIdentifier(f.issuerKeyId),
    ],
  };
}

export function issueEkCertificate(req: EkCertificateRequest): IssuedCertificate {
  const { issuer, ...fields } = req;
  const der = issueCertificate(ekCertificateTemplate({ ...fields, issuerSubject: issuer.certificate.subject, issuerKeyId: issuer.keyId }), issuer.privateKey);
  return { der, pem: toPem(der) };
}
