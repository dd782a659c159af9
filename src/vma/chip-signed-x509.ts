/**
 * X.509 certificates signed by a key that signs asynchronously — a key resident in the hwTPM,
 * reached through the chip's queue — assembled by the same TBSCertificate encoder as the
 * manufacturer's synchronous issuer (credentials/x509.ts), so both produce the same profile.
 */
import { sign as nodeSign, type KeyObject } from 'node:crypto';
import { signatureAlgorithmFor } from '../tpm/crypto/certificate-signing.ts';
import { assembleSigned, encodeTbsCertificate, type CertificateTemplate } from '../hwtpm/credentials/x509.ts';

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

/** Builds the TBSCertificate, has `signer` sign it, and returns the certificate's DER. */
export async function issueCertificateWith(template: CertificateTemplate, signer: AsyncSigner): Promise<Buffer> {
  const algorithm = signatureAlgorithmFor(signer.publicKey);
  const tbs = encodeTbsCertificate(template, algorithm);
  return assembleSigned(tbs, algorithm, await signer.sign(tbs));
}
