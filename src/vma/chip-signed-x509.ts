/**
 * X.509 certificates signed by a key that signs asynchronously — a key resident in the hwTPM,
 * reached through the chip's queue — assembled with the same DER pieces as the manufacturer's
 * synchronous issuer, so both produce the same profile byte for byte apart from the signature.
 */
import { sign as nodeSign, type KeyObject } from 'node:crypto';
import { signatureAlgorithmFor, type SignatureAlgorithm } from '../tpm/crypto/certificate-signing.ts';
import { bits, bool, encode, explicit, nul, octets, oid, raw, seq, time, uint, type Node } from '../hwtpm/credentials/der.ts';
import { CredentialError } from '../hwtpm/credentials/errors.ts';
import type { CertificateTemplate, Extension } from '../hwtpm/credentials/x509.ts';

/** A signing key whose private part may live elsewhere: it returns an X.509 signature (DER ECDSA-Sig-Value or PKCS#1 v1.5). */
export interface AsyncSigner {
  readonly publicKey: KeyObject;
  sign(data: Uint8Array): Promise<Buffer>;
}

/** A software key as an AsyncSigner (the VMCA's and privacy CA's roots). */
export function softwareSigner(privateKey: KeyObject, publicKey: KeyObject): AsyncSigner {
  const algorithm = signatureAlgorithmFor(privateKey);
  return { publicKey, sign: async (data) => nodeSign(algorithm.hash, data, privateKey) };
}

export function algorithmIdentifier(a: SignatureAlgorithm): Node {
  return a.nullParameters ? seq(oid(a.oid), nul()) : seq(oid(a.oid));
}

export function extensionNode(e: Extension): Node {
  return e.critical ? seq(oid(e.oid), bool(true), octets(e.value)) : seq(oid(e.oid), octets(e.value));
}

/** The DER TBSCertificate of `template` as `algorithm` will sign it. */
export function encodeTbsCertificate(template: CertificateTemplate, algorithm: SignatureAlgorithm): Buffer {
  if (template.serial.length === 0 || template.serial.length > 20) throw new CredentialError('a certificate serial number must be 1 to 20 bytes');
  if (template.notAfter.getTime() <= template.notBefore.getTime()) throw new CredentialError('a certificate must end after it begins (notAfter <= notBefore)');
  return encode(
    seq(
      explicit(0, uint(2)),
      uint(template.serial),
      algorithmIdentifier(algorithm),
      raw(template.issuer),
      seq(time(template.notBefore), time(template.notAfter)),
      raw(template.subject),
      raw(template.subjectPublicKeyInfo),
      ...(template.extensions.length ? [explicit(3, seq(...template.extensions.map(extensionNode)))] : []),
    ),
  );
}

/** Wraps signed DER (a TBSCertificate or TBSCertList) with its algorithm and signature. */
export function assembleSigned(tbs: Uint8Array, algorithm: SignatureAlgorithm, signature: Uint8Array): Buffer {
  return encode(seq(raw(tbs), algorithmIdentifier(algorithm), bits(signature)));
}

/** Builds the TBSCertificate, has `signer` sign it, and returns the certificate's DER. */
export async function issueCertificateWith(template: CertificateTemplate, signer: AsyncSigner): Promise<Buffer> {
  const algorithm = signatureAlgorithmFor(signer.publicKey);
  const tbs = encodeTbsCertificate(template, algorithm);
  return assembleSigned(tbs, algorithm, await signer.sign(tbs));
}
