/**
 * Object identifiers of the vMA's credentials. TCG arcs come from the TCG OID registry, the EK
 * Credential Profile and the Platform Certificate Profile. What TCG has no identifier for lives
 * under a provisional arc below 2.25 (ITU-T X.667): node-forge, which every credential parser
 * here uses, encodes arcs of at most 32 bits, so a full 128-bit UUID arc cannot be used. Replace
 * it with an arc the project registers (an IANA enterprise number) before credentials leave the lab.
 */
export const TCG_OID = {
  /** tcg-kp-PlatformAttributeCertificate. */
  kpPlatformCertificate: '2.23.133.8.2',
  /** tcg-kp-AIKCertificate. */
  kpAikCertificate: '2.23.133.8.3',
  /** tcg-at-platformManufacturerStr, tcg-at-platformModel, tcg-at-platformVersion, tcg-at-platformSerial. */
  platformManufacturerStr: '2.23.133.5.1.1',
  platformModel: '2.23.133.5.1.4',
  platformVersion: '2.23.133.5.1.5',
  platformSerial: '2.23.133.5.1.6',
  /** tcg-at-tcgPlatformSpecification. */
  tcgPlatformSpecification: '2.23.133.2.17',
} as const;

/** Provisional: the low 31 bits of UUID 6f2a43c8-9b1e-4c57-a0d4-3e8b7f61c2a9. */
const VTPMD = '2.25.2137113257';

export const VTPMD_OID = {
  /** TcbMeasurements ::= SEQUENCE { hostTcbDigest, components SEQUENCE OF Component } (platform credential). */
  tcbMeasurements: `${VTPMD}.1`,
  /** EkBinding ::= SEQUENCE { issuer Name, serialNumber INTEGER, certificateDigest OCTET STRING }. */
  ekBinding: `${VTPMD}.2`,
  /** DelegationInfo ::= SEQUENCE { configuration UTF8String, migratable BOOLEAN } (vMA delegation). */
  delegationInfo: `${VTPMD}.3`,
  /** RFC 5280 CRL extensions. */
  crlNumber: '2.5.29.20',
  crlReason: '2.5.29.21',
} as const;
