/**
 * A simulated TPM manufacturer's root CA: the key that signs EK certificates at provisioning.
 * Generic in the issuer sense: any CertificateAuthority (this one, or a virtual manufacturer
 * authority's) can issue the credentials in this folder.
 */
import { access, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { KeyObject } from 'node:crypto';
import {
  describeKey,
  generateCaKey,
  keyIdentifier,
  privateKeyFromPem,
  privateKeyToPem,
  publicKeyFromSpki,
  subjectPublicKeyInfo,
  type CaKeyType,
} from '../../tpm/crypto/certificate-signing.ts';
import { systemEntropy, type EntropySource } from '../../tpm/crypto/random.ts';
import { writeFileAtomic } from './atomic-file.ts';
import { CredentialError } from './errors.ts';
import { authorityKeyIdentifier, basicConstraints, keyUsage, subjectKeyIdentifier } from './extensions.ts';
import { KEY_USAGE, OID } from './oids.ts';
import { encodeName, findExtension, fromPem, issueCertificate, parseCertificate, randomSerial, signedBy, toPem, type NameAttribute, type ParsedCertificate } from './x509.ts';
import { bytesOf, children, parse } from './der.ts';

/** An issuer: its private key and its certificate, already checked to belong together. */
export interface CertificateAuthority {
  readonly privateKey: KeyObject;
  readonly certificate: ParsedCertificate;
  readonly certificatePem: string;
  /** The subjectKeyIdentifier that issued certificates name as their authorityKeyIdentifier. */
  readonly keyId: Buffer;
}

export interface ManufacturerCaOptions {
  /** The manufacturer's name, as it appears in O= and CN=. */
  readonly manufacturer: string;
  readonly keyType?: CaKeyType;
  readonly notBefore?: Date;
  readonly validityYears?: number;
  readonly entropy?: EntropySource;
}

export const MANUFACTURER_CA_FILES = { certificate: 'manufacturer-ca.pem', key: 'manufacturer-ca.key' } as const;

/** First line of the key file: PEM readers skip it, and it versions the stored format. */
const KEY_FILE_HEADER = 'vtpmd manufacturer CA key, format 1';

export function manufacturerCaName(manufacturer: string): NameAttribute[] {
  if (manufacturer.trim() === '') throw new CredentialError('the manufacturer name must not be empty');
  return [
    { oid: OID.organizationName, value: manufacturer },
    { oid: OID.commonName, value: `${manufacturer} TPM Root CA` },
  ];
}

export function createManufacturerCa(options: ManufacturerCaOptions): CertificateAuthority {
  const privateKey = generateCaKey(options.keyType ?? 'ecc');
  const spki = subjectPublicKeyInfo(privateKey);
  const keyId = keyIdentifier(subjectPublicKeyBits(spki));
  const name = encodeName(manufacturerCaName(options.manufacturer));
  const notBefore = options.notBefore ?? new Date(Math.floor(Date.now() / 1000) * 1000);
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + (options.validityYears ?? 25));
  const der = issueCertificate(
    {
      serial: randomSerial(options.entropy ?? systemEntropy),
      issuer: name,
      subject: name,
      notBefore,
      notAfter,
      subjectPublicKeyInfo: spki,
      extensions: [
        basicConstraints(true),
        keyUsage([KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign]),
        subjectKeyIdentifier(keyId),
        authorityKeyIdentifier(keyId),
      ],
    },
    privateKey,
  );
  return certificateAuthority(privateKey, der, 'the new manufacturer CA certificate');
}

function subjectPublicKeyBits(spki: Uint8Array): Buffer {
  return bytesOf(children(parse(spki))[1]!).subarray(1);
}

function subjectKeyIdOf(cert: ParsedCertificate): Buffer {
  const ext = findExtension(cert, OID.subjectKeyIdentifier);
  return ext ? bytesOf(parse(ext.value)) : keyIdentifier(cert.subjectPublicKey);
}

function isCa(cert: ParsedCertificate): boolean {
  const ext = findExtension(cert, OID.basicConstraints);
  if (!ext) return false;
  const fields = children(parse(ext.value));
  return fields.length > 0 && bytesOf(fields[0]!)[0] !== 0;
}

function guard<T>(what: string, path: string | undefined, read: () => T): T {
  try {
    return read();
  } catch (e) {
    throw new CredentialError(`${what} has a malformed extension (${(e as Error).message})`, path);
  }
}

/**
 * Pairs a key with its CA certificate after checking they belong together: the certificate is a
 * CA, its public key is the key's, and it verifies under that key.
 */
export function certificateAuthority(privateKey: KeyObject, certificateDer: Uint8Array, what: string, path?: string): CertificateAuthority {
  const certificate = parseCertificate(certificateDer, what);
  try {
    describeKey(privateKey);
  } catch (e) {
    throw new CredentialError(`${what}: the CA key is not usable (${(e as Error).message})`, path);
  }
  if (!guard(what, path, () => isCa(certificate))) throw new CredentialError(`${what} is not a CA certificate (basicConstraints cA is not set)`, path);
  if (!subjectPublicKeyInfo(privateKey).equals(certificate.subjectPublicKeyInfo)) {
    throw new CredentialError(`${what} does not belong to the CA key stored with it; restore the matching pair or remove both files`, path);
  }
  if (!signedBy(certificate, publicKeyFromSpki(certificate.subjectPublicKeyInfo))) {
    throw new CredentialError(`${what} is not validly self-signed`, path);
  }
  return { privateKey, certificate, certificatePem: toPem(certificate.der), keyId: guard(what, path, () => subjectKeyIdOf(certificate)) };
}

/** Writes the key first and the certificate last: a certificate on disk means the pair is complete. */
export async function saveManufacturerCa(dir: string, ca: CertificateAuthority): Promise<void> {
  await writeFileAtomic(join(dir, MANUFACTURER_CA_FILES.key), `${KEY_FILE_HEADER}\n${privateKeyToPem(ca.privateKey)}`, 0o600);
  await writeFileAtomic(join(dir, MANUFACTURER_CA_FILES.certificate), ca.certificatePem, 0o644);
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}

export async function loadManufacturerCa(dir: string): Promise<CertificateAuthority> {
  const certPath = join(dir, MANUFACTURER_CA_FILES.certificate);
  const keyPath = join(dir, MANUFACTURER_CA_FILES.key);
  const [certText, keyText] = await Promise.all([
    readFile(certPath, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new CredentialError(`cannot read the manufacturer CA certificate ${certPath}: ${e.code ?? e.message}`, certPath);
    }),
    readFile(keyPath, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new CredentialError(`cannot read the manufacturer CA key ${keyPath}: ${e.code ?? e.message}`, keyPath);
    }),
  ]);
  const firstLine = keyText.split('\n', 1)[0];
  if (firstLine !== KEY_FILE_HEADER) {
    throw new CredentialError(`the manufacturer CA key ${keyPath} is not in a format this version reads (expected "${KEY_FILE_HEADER}")`, keyPath);
  }
  const privateKey = privateKeyFromPem(keyText.slice(firstLine.length + 1));
  if (!privateKey) throw new CredentialError(`the manufacturer CA key ${keyPath} is corrupt: it holds no readable PKCS#8 private key`, keyPath);
  const der = fromPem(certText);
  if (!der) throw new CredentialError(`the manufacturer CA certificate ${certPath} is corrupt: it holds no PEM certificate`, certPath);
  return certificateAuthority(privateKey, der, `the manufacturer CA certificate ${certPath}`, certPath);
}

/**
 * Loads the CA kept in `dir`, or creates and stores one when the directory holds neither file. A
 * lone file or a corrupt one is an error: silently minting a new root would orphan every EK
 * certificate the old one issued.
 */
export async function openManufacturerCa(dir: string, options: ManufacturerCaOptions): Promise<CertificateAuthority> {
  const [hasCert, hasKey] = await Promise.all([exists(join(dir, MANUFACTURER_CA_FILES.certificate)), exists(join(dir, MANUFACTURER_CA_FILES.key))]);
  if (hasCert || hasKey) return loadManufacturerCa(dir);
  const ca = createManufacturerCa(options);
  await saveManufacturerCa(dir, ca);
  return ca;
}
