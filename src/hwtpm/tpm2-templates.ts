/**
 * The TPM 2.0 key templates a platform uses by convention. The EK templates are the TCG EK
 * Credential Profile's low-range templates (L-1 RSA-2048, L-2 ECC NIST P-256), so that
 * `tpm2_createek` regenerates exactly the EK the manufacturer certified; the SRK is the
 * Provisioning Guidance's storage root key.
 */
import { ALG, ECC_CURVE } from '../tpm/tpm2/constants.ts';
import { NULL_SCHEME, type SymDef } from '../tpm/tpm2/types/public-parms.ts';
import { OBJECT_ATTR as A, type Public } from '../tpm/tpm2/types/public.ts';

/** Where a TCG-conformant platform keeps its keys and EK certificates. */
export const HANDLES = {
  SRK: 0x81000001,
  EK_RSA: 0x81010001,
  EK_ECC: 0x81010002,
  /** NV indices of the EK certificates (TCG EK Credential Profile, section 2.2.1.5). */
  EK_CERT_RSA: 0x01c00002,
  EK_CERT_ECC: 0x01c0000a,
} as const;

/** PolicySecret(TPM_RH_ENDORSEMENT): the EK may be used only with the endorsement hierarchy's auth. */
export const EK_POLICY = Buffer.from('837197674484b3f81a90cc8d46a5d724fd52d76e06520b64f2a1da1b331469aa', 'hex');

const AES128_CFB: SymDef = { algorithm: ALG.AES, keyBits: 128, mode: ALG.CFB };
const NULL_SYM: SymDef = { algorithm: ALG.NULL, keyBits: 0, mode: 0 };
const EK_ATTRIBUTES = A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.adminWithPolicy | A.restricted | A.decrypt;
const STORAGE_ATTRIBUTES = A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.noDA | A.restricted | A.decrypt;
const SIGNING_ATTRIBUTES = A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.sign;

export function ekRsaTemplate(): Public {
  return {
    type: ALG.RSA,
    nameAlg: ALG.SHA256,
    objectAttributes: EK_ATTRIBUTES,
    authPolicy: EK_POLICY,
    parameters: { type: ALG.RSA, symmetric: AES128_CFB, scheme: NULL_SCHEME, keyBits: 2048, exponent: 0 },
    unique: { rsa: Buffer.alloc(256) },
  };
}

export function ekEccTemplate(): Public {
  return {
    type: ALG.ECC,
    nameAlg: ALG.SHA256,
    objectAttributes: EK_ATTRIBUTES,
    authPolicy: EK_POLICY,
    parameters: { type: ALG.ECC, symmetric: AES128_CFB, scheme: NULL_SCHEME, curveID: ECC_CURVE.NIST_P256, kdf: NULL_SCHEME },
    unique: { ecc: { x: Buffer.alloc(32), y: Buffer.alloc(32) } },
  };
}

export function srkTemplate(): Public {
  return {
    type: ALG.RSA,
    nameAlg: ALG.SHA256,
    objectAttributes: STORAGE_ATTRIBUTES,
    authPolicy: Buffer.alloc(0),
    parameters: { type: ALG.RSA, symmetric: AES128_CFB, scheme: NULL_SCHEME, keyBits: 2048, exponent: 0 },
    unique: { rsa: Buffer.alloc(256) },
  };
}

/**
 * An ECDSA P-256 SHA-256 signing key. Restricted, it is an attestation identity key (it signs only
 * what the TPM itself attests); otherwise a general signing key. With `authPolicy`, signing (the
 * user role) needs the policy while the admin role keeps the (empty) authValue, so the key can
 * still be certified without satisfying its PCR policy.
 */
export function eccSigningTemplate(restricted: boolean, authPolicy: Buffer = Buffer.alloc(0)): Public {
  const policyOnly = authPolicy.length > 0;
  return {
    type: ALG.ECC,
    nameAlg: ALG.SHA256,
    objectAttributes: (SIGNING_ATTRIBUTES & ~(policyOnly ? A.userWithAuth : 0)) | (restricted ? A.restricted : 0),
    authPolicy,
    parameters: { type: ALG.ECC, symmetric: NULL_SYM, scheme: { scheme: ALG.ECDSA, hashAlg: ALG.SHA256 }, curveID: ECC_CURVE.NIST_P256, kdf: NULL_SCHEME },
    unique: { ecc: { x: Buffer.alloc(0), y: Buffer.alloc(0) } },
  };
}

/** A sealed data object that only `authPolicy` releases. */
export function sealedTemplate(authPolicy: Buffer): Public {
  return {
    type: ALG.KEYEDHASH,
    nameAlg: ALG.SHA256,
    objectAttributes: A.fixedTPM | A.fixedParent | A.noDA | A.adminWithPolicy,
    authPolicy,
    parameters: { type: ALG.KEYEDHASH, scheme: NULL_SCHEME },
    unique: { digest: Buffer.alloc(0) },
  };
}

/** The TCG default EKs (low range): where each is persisted, where its certificate is, and its template. */
export const EK_SLOTS = [
  { handle: HANDLES.EK_RSA, certificateIndex: HANDLES.EK_CERT_RSA, template: ekRsaTemplate },
  { handle: HANDLES.EK_ECC, certificateIndex: HANDLES.EK_CERT_ECC, template: ekEccTemplate },
] as const;
