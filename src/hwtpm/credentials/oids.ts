/** Object identifiers used in TPM credentials (RFC 5280, X.520 and the TCG EK Credential Profile). */
export const OID = {
  commonName: '2.5.4.3',
  countryName: '2.5.4.6',
  organizationName: '2.5.4.10',
  organizationalUnitName: '2.5.4.11',

  subjectDirectoryAttributes: '2.5.29.9',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  certificatePolicies: '2.5.29.32',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  cpsQualifier: '1.3.6.1.5.5.7.2.1',

  tcgTpmManufacturer: '2.23.133.2.1',
  tcgTpmModel: '2.23.133.2.2',
  tcgTpmVersion: '2.23.133.2.3',
  tcgTpmSpecification: '2.23.133.2.16',
  tcgKpEkCertificate: '2.23.133.8.1',
} as const;

/** KeyUsage bit positions (RFC 5280 4.2.1.3). */
export const KEY_USAGE = {
  digitalSignature: 0,
  nonRepudiation: 1,
  keyEncipherment: 2,
  dataEncipherment: 3,
  keyAgreement: 4,
  keyCertSign: 5,
  cRLSign: 6,
} as const;
