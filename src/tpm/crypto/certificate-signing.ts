import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { generatePrivateKey } from './rsa.ts';
import { ALG } from '../tpm2/constants.ts';
import { digest } from './hash.ts';

/** The key kinds a certificate authority in this project signs with. */
export type CaKeyType = 'rsa' | 'ecc';

/** An X.509 signature algorithm: its OID, whether AlgorithmIdentifier carries NULL parameters, and the hash. */
export interface SignatureAlgorithm {
  readonly oid: string;
  readonly nullParameters: boolean;
  readonly hash: 'sha256' | 'sha384';
}

const SHA256_WITH_RSA: SignatureAlgorithm = { oid: '1.2.840.113549.1.1.11', nullParameters: true, hash: 'sha256' };
const ECDSA_WITH_SHA256: SignatureAlgorithm = { oid: '1.2.840.10045.4.3.2', nullParameters: false, hash: 'sha256' };
const ECDSA_WITH_SHA384: SignatureAlgorithm = { oid: '1.2.840.10045.4.3.3', nullParameters: false, hash: 'sha384' };

/** What a certificate may certify: RSA with its modulus size, or EC with its named curve. */
export type KeyDescription = { readonly type: 'rsa'; readonly bits: number } | { readonly type: 'ec'; readonly curve: 'P-256' | 'P-384' };

export function describeKey(key: KeyObject): KeyDescription {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.asymmetricKeyType === 'rsa' && details.modulusLength !== undefined) return { type: 'rsa', bits: details.modulusLength };
  if (key.asymmetricKeyType === 'ec') {
    if (details.namedCurve === 'prime256v1') return { type: 'ec', curve: 'P-256' };
    if (details.namedCurve === 'secp384r1') return { type: 'ec', curve: 'P-384' };
  }
  throw new RangeError(`unsupported key: ${key.asymmetricKeyType ?? 'unknown'} ${details.namedCurve ?? details.modulusLength ?? ''}`.trim());
}

/** A fresh CA signing key: RSA-2048 or ECC P-256. */
export function generateCaKey(type: CaKeyType): KeyObject {
  return type === 'rsa' ? generatePrivateKey('rsa', { modulusLength: 2048, publicExponent: 65537 }) : generatePrivateKey('ec', { namedCurve: 'prime256v1' });
}

/** The signature algorithm a key signs certificates with (the hash follows the curve size). */
export function signatureAlgorithmFor(key: KeyObject): SignatureAlgorithm {
  const d = describeKey(key);
  if (d.type === 'rsa') return SHA256_WITH_RSA;
  return d.curve === 'P-384' ? ECDSA_WITH_SHA384 : ECDSA_WITH_SHA256;
}

export function signatureAlgorithmByOid(oid: string): SignatureAlgorithm | undefined {
  return [SHA256_WITH_RSA, ECDSA_WITH_SHA256, ECDSA_WITH_SHA384].find((a) => a.oid === oid);
}

/** Signs data as X.509 expects: PKCS#1 v1.5 for RSA, DER-encoded ECDSA-Sig-Value for EC. */
export function signCertificateData(privateKey: KeyObject, data: Uint8Array): { algorithm: SignatureAlgorithm; signature: Buffer } {
  const algorithm = signatureAlgorithmFor(privateKey);
  return { algorithm, signature: sign(algorithm.hash, data, privateKey) };
}

export function verifyCertificateData(publicKey: KeyObject, algorithm: SignatureAlgorithm, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(algorithm.hash, data, publicKey, signature);
  } catch {
    return false;
  }
}

/** SubjectPublicKeyInfo DER of a public key, or of the public half of a private key. */
export function subjectPublicKeyInfo(key: KeyObject): Buffer {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  return pub.export({ type: 'spki', format: 'der' });
}

export function publicKeyFromSpki(spki: Uint8Array): KeyObject {
  return createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
}

/** RFC 5280 4.2.1.2 method (1): SHA-1 over the subjectPublicKey BIT STRING's value. */
export function keyIdentifier(subjectPublicKey: Uint8Array): Buffer {
  return digest(ALG.SHA1, subjectPublicKey);
}

export function privateKeyToPem(key: KeyObject): string {
  return key.export({ type: 'pkcs8', format: 'pem' }).toString();
}

/** Parses a PKCS#8 PEM private key; undefined when it is not one (the reason may echo key bytes). */
export function privateKeyFromPem(pem: string): KeyObject | undefined {
  try {
    const key = createPrivateKey({ key: pem, format: 'pem' });
    return key.type === 'private' ? key : undefined;
  } catch {
    return undefined;
  }
}
