/**
 * A software root CA kept in a directory of its own — the VMCA's root, the privacy CA's root.
 * Opening an empty directory mints the root; opening it again loads the same one, so certificates
 * issued before a restart still chain.
 */
import { access, mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { generateCaKey, keyIdentifier, privateKeyFromPem, privateKeyToPem, subjectPublicKeyInfo } from '../tpm/crypto/certificate-signing.ts';
import { systemEntropy } from '../tpm/crypto/random.ts';
import { writeFileAtomic } from '../hwtpm/credentials/atomic-file.ts';
import { bytesOf, children, parse } from '../hwtpm/credentials/der.ts';
import { authorityKeyIdentifier, basicConstraints, keyUsage, subjectKeyIdentifier } from '../hwtpm/credentials/extensions.ts';
import { certificateAuthority, type CertificateAuthority } from '../hwtpm/credentials/manufacturer-ca.ts';
import { KEY_USAGE } from '../hwtpm/credentials/oids.ts';
import { encodeName, fromPem, issueCertificate, randomSerial, type NameAttribute } from '../hwtpm/credentials/x509.ts';
import { VmaError } from './errors.ts';

export interface RootCaSpec {
  /** File names of the certificate (PEM) and key (versioned PKCS#8 PEM) inside the directory. */
  readonly certificateFile: string;
  readonly keyFile: string;
  /** First line of the key file: it versions the stored format. */
  readonly keyHeader: string;
  readonly name: readonly NameAttribute[];
  readonly validityYears?: number;
  readonly now?: () => Date;
}

const exists = (p: string) =>
  access(p).then(
    () => true,
    () => false,
  );

export async function openRootCa(dir: string, spec: RootCaSpec): Promise<CertificateAuthority> {
  const certPath = join(dir, spec.certificateFile);
  const keyPath = join(dir, spec.keyFile);
  const [hasCert, hasKey] = await Promise.all([exists(certPath), exists(keyPath)]);
  if (hasCert !== hasKey) {
    throw new VmaError('bad-state', `${dir} holds only one of ${spec.certificateFile} and ${spec.keyFile}: restore the missing file from backup (a new root would orphan every certificate the old one issued)`, dir);
  }
  if (hasCert) return loadRootCa(certPath, keyPath, spec.keyHeader);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const ca = createRootCa(spec);
  await writeFileAtomic(keyPath, `${spec.keyHeader}\n${privateKeyToPem(ca.privateKey)}`, 0o600);
  await writeFileAtomic(certPath, ca.certificatePem, 0o644);
  return ca;
}

function createRootCa(spec: RootCaSpec): CertificateAuthority {
  const privateKey = generateCaKey('ecc');
  const spki = subjectPublicKeyInfo(privateKey);
  const keyId = keyIdentifier(bytesOf(children(parse(spki))[1]!).subarray(1));
  const name = encodeName(spec.name);
  const notBefore = new Date(Math.floor((spec.now?.() ?? new Date()).getTime() / 1000) * 1000);
  const notAfter = new Date(notBefore);
  notAfter.setUTCFullYear(notAfter.getUTCFullYear() + (spec.validityYears ?? 20));
  const der = issueCertificate(
    {
      serial: randomSerial(systemEntropy),
      issuer: name,
      subject: name,
      notBefore,
      notAfter,
      subjectPublicKeyInfo: spki,
      extensions: [basicConstraints(true), keyUsage([KEY_USAGE.keyCertSign, KEY_USAGE.cRLSign]), subjectKeyIdentifier(keyId), authorityKeyIdentifier(keyId)],
    },
    privateKey,
  );
  return certificateAuthority(privateKey, der, 'the new root certificate');
}

async function loadRootCa(certPath: string, keyPath: string, header: string): Promise<CertificateAuthority> {
  const [certText, keyText] = await Promise.all([readFile(certPath, 'utf8'), readFile(keyPath, 'utf8')]);
  const first = keyText.split('\n', 1)[0];
  if (first !== header) throw new VmaError('bad-state', `${keyPath} is not in a format this version reads (expected "${header}")`, keyPath);
  const key = privateKeyFromPem(keyText.slice(first.length + 1));
  if (!key) throw new VmaError('bad-state', `${keyPath} is corrupt: it holds no readable PKCS#8 private key; restore it from backup`, keyPath);
  const der = fromPem(certText);
  if (!der) throw new VmaError('bad-state', `${certPath} is corrupt: it holds no PEM certificate; restore it from backup`, certPath);
  return certificateAuthority(key, der, certPath, certPath);
}
