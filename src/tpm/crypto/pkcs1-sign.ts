import { constants, privateEncrypt, publicDecrypt, type KeyObject } from 'node:crypto';

/** DER prefix of a DigestInfo for SHA-1 (PKCS #1 v2.2, section 9.2 note 1). */
export const SHA1_DIGEST_INFO_PREFIX = Buffer.from('3021300906052b0e03021a05000414', 'hex');

/**
 * RSASSA-PKCS1-v1_5 over caller-supplied bytes (TPM 1.2's TPM_SS_RSASSAPKCS1v15_DER: the caller
 * provides the DER DigestInfo); undefined if they do not fit the modulus.
 */
export function pkcs1v15SignRaw(key: KeyObject, modulusBytes: number, data: Uint8Array): Buffer | undefined {
  if (data.length > modulusBytes - 11) return undefined;
  return privateEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, data);
}

/** RSASSA-PKCS1-v1_5 with SHA-1 over a SHA-1 digest (TPM_SS_RSASSAPKCS1v15_SHA1). */
export function pkcs1v15SignSha1Digest(key: KeyObject, modulusBytes: number, digest: Uint8Array): Buffer | undefined {
  if (digest.length !== 20) return undefined;
  return pkcs1v15SignRaw(key, modulusBytes, Buffer.concat([SHA1_DIGEST_INFO_PREFIX, digest]));
}

/** Recovers the signed bytes of a PKCS #1 v1.5 signature; undefined if it does not verify. */
export function pkcs1v15Recover(key: KeyObject, signature: Uint8Array): Buffer | undefined {
  try {
    return publicDecrypt({ key, padding: constants.RSA_PKCS1_PADDING }, signature);
  } catch {
    return undefined;
  }
}

/** Whether `signature` is a PKCS #1 v1.5 SHA-1 signature of `digest`. */
export function pkcs1v15VerifySha1Digest(key: KeyObject, digest: Uint8Array, signature: Uint8Array): boolean {
  const m = pkcs1v15Recover(key, signature);
  return m !== undefined && m.equals(Buffer.concat([SHA1_DIGEST_INFO_PREFIX, digest]));
}
