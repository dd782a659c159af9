/**
 * The attestation work a TPM 2.0 does, the same on the hwTPM and on a vTPM: make an attestation
 * key, prove it lives beside the EK (ActivateCredential, which needs the EK's
 * PolicySecret(TPM_RH_ENDORSEMENT) satisfied), certify a key, quote PCRs, sign with a PCR-bound
 * key. Each takes a Tpm2Client, so the caller decides whose turn on which TPM it runs in.
 */
import { digest } from '../tpm/crypto/hash.ts';
import { ALG, CC, RH, ST } from '../tpm/tpm2/constants.ts';
import type { Public } from '../tpm/tpm2/types/public.ts';
import { handleName, pcrSelection, type Tpm2Client } from '../hwtpm/tpm2-client.ts';
import { eccSigningTemplate } from '../hwtpm/tpm2-templates.ts';
import { signatureDer } from './tpm-structures.ts';

/** A key's TPM2B_PRIVATE and public area, as TPM2_Create returned them; reloadable under its parent. */
export interface KeyBlob {
  readonly inPrivate: Buffer;
  readonly inPublic: Public;
}

/** What a TPM signed about itself, with the signature in DER. */
export interface SignedAttestation {
  readonly signed: Buffer;
  readonly signature: Buffer;
}

const EMPTY = Buffer.alloc(0);

/** A restricted ECDSA P-256 signing key (an AIK) under `parent`. */
export async function createAttestationKey(tpm: Tpm2Client, parent: number): Promise<KeyBlob> {
  const { outPrivate, outPublic } = await tpm.create(parent, eccSigningTemplate(true));
  return { inPrivate: outPrivate, inPublic: outPublic };
}

/** An unrestricted signing key usable only while `pcrs` hold their present values. */
export async function createPcrBoundKey(tpm: Tpm2Client, parent: number, pcrs: readonly number[]): Promise<KeyBlob> {
  const trial = await tpm.startPolicySession(true);
  let policy: Buffer;
  try {
    await tpm.policyPcr(trial, [pcrSelection(ALG.SHA256, pcrs)]);
    policy = await tpm.policyGetDigest(trial);
  } finally {
    await tpm.flushContext(trial);
  }
  const { outPrivate, outPublic } = await tpm.create(parent, eccSigningTemplate(false, policy));
  return { inPrivate: outPrivate, inPublic: outPublic };
}

export async function withLoaded<T>(tpm: Tpm2Client, parent: number, key: KeyBlob, use: (handle: number) => Promise<T>): Promise<T> {
  const { handle } = await tpm.load(parent, key.inPrivate, key.inPublic);
  try {
    return await use(handle);
  } finally {
    await tpm.flushContext(handle).catch(() => undefined);
  }
}

/**
 * TPM2_ActivateCredential of a credential made for the loaded `activateHandle` and the EK at
 * `ekHandle`; returns the credential the maker wrapped. The EK's admin-with-policy role is met by
 * PolicySecret with the endorsement authorization the client holds.
 */
export async function activateCredential(tpm: Tpm2Client, activateHandle: number, ekHandle: number, credentialBlob: Buffer, secret: Buffer): Promise<Buffer> {
  const session = await tpm.startPolicySession(false);
  try {
    await tpm.withHierarchyAuth(RH.ENDORSEMENT, [handleName(RH.ENDORSEMENT), handleName(session)], (auth) =>
      tpm.call(CC.PolicySecret, [RH.ENDORSEMENT, session], [auth], { nonceTPM: EMPTY, cpHashA: EMPTY, policyRef: EMPTY, expiration: 0 }),
    );
    const r = await tpm.call(CC.ActivateCredential, [activateHandle, ekHandle], [{}, { policySession: session }], { credentialBlob, secret });
    return r.params.certInfo as Buffer;
  } finally {
    await tpm.flushContext(session).catch(() => undefined);
  }
}

export async function certify(tpm: Tpm2Client, objectHandle: number, signerHandle: number, nonce: Uint8Array): Promise<SignedAttestation> {
  const r = await tpm.certify(objectHandle, signerHandle, Buffer.from(nonce));
  return { signed: r.certifyInfo, signature: signatureDer(r.signature) };
}

export async function quote(tpm: Tpm2Client, aikHandle: number, pcrs: readonly number[], nonce: Uint8Array): Promise<SignedAttestation> {
  const r = await tpm.quote(aikHandle, Buffer.from(nonce), [pcrSelection(ALG.SHA256, pcrs)]);
  return { signed: r.quoted, signature: signatureDer(r.signature) };
}

/** Signs `data` with a loaded PCR-bound key (its PolicyPCR met in a fresh session); DER signature. */
export async function signWithPcrBoundKey(tpm: Tpm2Client, handle: number, pcrs: readonly number[], data: Uint8Array): Promise<Buffer> {
  const session = await tpm.startPolicySession(false);
  try {
    await tpm.policyPcr(session, [pcrSelection(ALG.SHA256, pcrs)]);
    // An unrestricted key signs any digest, so the hash need not come from TPM2_Hash (whose input is capped at 1024 bytes).
    const r = await tpm.call(CC.Sign, [handle], [{ policySession: session }], {
      digest: digest(ALG.SHA256, data),
      inScheme: { scheme: ALG.NULL, hashAlg: ALG.NULL },
      validation: { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: EMPTY },
    });
    return signatureDer(r.params.signature);
  } finally {
    await tpm.flushContext(session).catch(() => undefined);
  }
}
