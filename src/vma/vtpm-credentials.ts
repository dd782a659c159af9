/**
 * The credentials a vMA issues for a vTPM.
 *
 * EK credential: the TCG EK Credential Profile for TPM 2.0 — empty subject, a critical
 * subjectAltName directoryName with the TPM manufacturer, model and version, tcg-kp-EKCertificate,
 * the TPM specification in subjectDirectoryAttributes. The model names the GVTPM software and the
 * hwTPM it runs on, which is how a verifier tells a vTPM from a chip.
 *
 * Platform credential (vtpmd profile, not the TCG attribute-certificate form): an X.509 v3
 * public-key certificate whose subject names the hardware platform (the host); whose subject
 * public key is the vTPM's EK, and whose EkBinding extension names the EK certificate (issuer,
 * serial, SHA-256), binding it to that vTPM as a TCG platform certificate's holder field does; the
 * TCG platform manufacturer/model/version/serial attributes in a subjectAltName directoryName;
 * tcg-kp-PlatformAttributeCertificate as its purpose; and the TCB measurements in a
 * TcbMeasurements extension:
 *
 *   TcbMeasurements ::= SEQUENCE {
 *     hashAlgorithm  OBJECT IDENTIFIER,               -- id-sha256
 *     hostTcb        SEQUENCE { pcrs SEQUENCE OF INTEGER, digest OCTET STRING }, -- H(PCR values)
 *     components     SEQUENCE OF SEQUENCE { name UTF8String, pcr INTEGER, value OCTET STRING },
 *     vm             SEQUENCE { name UTF8String, migratable BOOLEAN } }
 */
import { createHash, type KeyObject } from 'node:crypto';
import { systemEntropy } from '../tpm/crypto/random.ts';
import { bool, encode, octets, oid, seq, uint, utf8 } from '../hwtpm/credentials/der.ts';
import { ekCertificateTemplate, type TpmSpecification } from '../hwtpm/credentials/ek-certificate.ts';
import { authorityKeyIdentifier, basicConstraints, extendedKeyUsage, subjectAltNameDirectory } from '../hwtpm/credentials/extensions.ts';
import { OID } from '../hwtpm/credentials/oids.ts';
import { encodeName, randomSerial, type ParsedCertificate } from '../hwtpm/credentials/x509.ts';
import { issueCertificateWith, type AsyncSigner } from './chip-signed-x509.ts';
import { ekBindingExtension } from './privacy-ca.ts';
import { TCG_OID, VTPMD_OID } from './oids.ts';

/** The issuing vMA: its chip-resident key and the delegation certificate the VMCA gave it. */
export interface VtpmIssuer {
  readonly signer: AsyncSigner;
  readonly certificate: ParsedCertificate;
  readonly keyId: Buffer;
}

export interface VtpmEkRequest {
  readonly ekPublicKey: KeyObject;
  /** TPM_PT_MANUFACTURER of the vTPM. */
  readonly manufacturerId: number | string;
  /** TPM_PT_FIRMWARE_VERSION_1 of the vTPM. */
  readonly firmwareVersion: number;
  /** The hwTPM's model string, from its own EK certificate. */
  readonly hwTpmModel: string;
  readonly specification?: TpmSpecification;
  readonly notBefore: Date;
}

export function vtpmModel(hwTpmModel: string): string {
  return `vtpmd vTPM (GVTPM software on ${hwTpmModel})`;
}

export async function issueVtpmEkCertificate(issuer: VtpmIssuer, req: VtpmEkRequest): Promise<Buffer> {
  const template = ekCertificateTemplate({
    ekPublicKey: req.ekPublicKey,
    issuerSubject: issuer.certificate.subject,
    issuerKeyId: issuer.keyId,
    manufacturerId: req.manufacturerId,
    model: vtpmModel(req.hwTpmModel),
    firmwareVersion: req.firmwareVersion,
    ...(req.specification ? { specification: req.specification } : {}),
    notBefore: req.notBefore,
  });
  return issueCertificateWith(template, issuer.signer);
}

export interface PlatformTcb {
  readonly hostId: string;
  readonly platformManufacturer: string;
  readonly platformModel: string;
  readonly platformVersion: string;
  readonly platformSerial: string;
  readonly hostTcbPcrs: readonly number[];
  /** H(values of hostTcbPcrs) in the SHA-256 bank. */
  readonly hostTcbDigest: Buffer;
  readonly components: readonly { readonly name: string; readonly pcr: number; readonly value: Buffer }[];
}

export interface PlatformRequest {
  readonly ekCertificate: ParsedCertificate;
  readonly platform: PlatformTcb;
  readonly vmName: string;
  readonly migratable: boolean;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

export function tcbMeasurementsValue(p: PlatformTcb, vmName: string, migratable: boolean): Buffer {
  return encode(
    seq(
      oid('2.16.840.1.101.3.4.2.1'),
      seq(seq(...p.hostTcbPcrs.map((n) => uint(n))), octets(p.hostTcbDigest)),
      seq(...p.components.map((c) => seq(utf8(c.name), uint(c.pcr), octets(c.value)))),
      seq(utf8(vmName), bool(migratable)),
    ),
  );
}

export async function issuePlatformCertificate(issuer: VtpmIssuer, req: PlatformRequest): Promise<Buffer> {
  const p = req.platform;
  return issueCertificateWith(
    {
      serial: randomSerial(systemEntropy),
      issuer: issuer.certificate.subject,
      subject: encodeName([
        { oid: OID.organizationName, value: p.platformManufacturer },
        { oid: OID.commonName, value: `${p.hostId} (vTPM platform of VM ${req.vmName})` },
      ]),
      notBefore: req.notBefore,
      notAfter: req.notAfter,
      subjectPublicKeyInfo: req.ekCertificate.subjectPublicKeyInfo,
      extensions: [
        subjectAltNameDirectory(
          [
            { oid: TCG_OID.platformManufacturerStr, value: p.platformManufacturer },
            { oid: TCG_OID.platformModel, value: p.platformModel },
            { oid: TCG_OID.platformVersion, value: p.platformVersion },
            { oid: TCG_OID.platformSerial, value: p.platformSerial },
          ],
          false,
        ),
        basicConstraints(false),
        extendedKeyUsage([TCG_OID.kpPlatformCertificate]),
        authorityKeyIdentifier(issuer.keyId),
        ekBindingExtension(req.ekCertificate),
        { oid: VTPMD_OID.tcbMeasurements, critical: false, value: tcbMeasurementsValue(p, req.vmName, req.migratable) },
      ],
    },
    issuer.signer,
  );
}

export function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}
