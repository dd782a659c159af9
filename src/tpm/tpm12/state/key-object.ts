import { digest } from '../../crypto/hash.ts';
import { rsaFromModulusAndPrime, type RsaKey } from '../../crypto/rsa.ts';
import { ALG as TPM2_ALG } from '../../tpm2/constants.ts';
import { ALG, AUTH_USAGE, ES, KEY_FLAG, KEY_USAGE, SS } from '../constants.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { decodeAs, enc } from '../structures/basic.ts';
import { keyPublicBytes, rsaKeyParms, type Key, type KeyParms, type PubKey } from '../structures/key.ts';

/**
 * An RSA key the TPM holds (loaded key, SRK, EK): its public description as it appears in
 * TPM_KEY, its secrets, and the node:crypto key built from them.
 */
export interface KeyObject12 {
  key12: boolean;
  usage: number;
  flags: number;
  authDataUsage: number;
  parms: KeyParms;
  /** PCRInfo as it appears in the key (TPM_PCR_INFO_LONG in a TPM_KEY12, TPM_PCR_INFO in a TPM_KEY). */
  pcrInfo: Buffer;
  n: Buffer;
  p: Buffer;
  exponent: number;
  usageAuth: Buffer;
  migrationAuth: Buffer;
  /** Whether the parent of this key was bound to PCRs (TPM_CERTIFY_INFO.parentPCRStatus). */
  parentPCRStatus: boolean;
  rsa: RsaKey;
}

export const SHA1 = TPM2_ALG.SHA1;

export function sha1(...parts: Uint8Array[]): Buffer {
  return digest(SHA1, ...parts);
}

/** The RSA parameters of TPM_KEY_PARMS; failures are TPM_BAD_KEY_PROPERTY. */
export function rsaParmsOf(parms: KeyParms): { keyLength: number; exponent: number } {
  if (parms.algorithmID !== ALG.RSA) throw new Tpm12Error(RC.BAD_KEY_PROPERTY);
  const rp = decodeAs(rsaKeyParms, parms.parms, RC.BAD_KEY_PROPERTY);
  if (rp.numPrimes !== 2) throw new Tpm12Error(RC.BAD_KEY_PROPERTY);
  let exponent = 65537;
  if (rp.exponent.length > 0) {
    if (rp.exponent.length > 4) throw new Tpm12Error(RC.BAD_KEY_PROPERTY);
    exponent = rp.exponent.readUIntBE(0, rp.exponent.length);
    if (exponent !== 65537) throw new Tpm12Error(RC.BAD_KEY_PROPERTY);
  }
  return { keyLength: rp.keyLength, exponent };
}

/** TPM_KEY_PARMS for an RSA key of `bits` with the default exponent. */
export function rsaKeyParmsFor(bits: number, encScheme: number, sigScheme: number): KeyParms {
  return { algorithmID: ALG.RSA, encScheme, sigScheme, parms: enc(rsaKeyParms, { keyLength: bits, numPrimes: 2, exponent: Buffer.alloc(0) }) };
}

/** The wire TPM_KEY / TPM_KEY12 of a key with the given encrypted part. */
export function toWireKey(k: KeyObject12, encData: Buffer): Key {
  return { key12: k.key12, keyUsage: k.usage, keyFlags: k.flags, authDataUsage: k.authDataUsage, algorithmParms: k.parms, pcrInfo: k.pcrInfo, pubKey: k.n, encData };
}

export function toPubkey(k: KeyObject12): PubKey {
  return { algorithmParms: k.parms, pubKey: k.n };
}

/** pubDataDigest of TPM_STORE_ASYMKEY: SHA-1 of the key without encDataSize and encData. */
export function pubDataDigest(k: Key): Buffer {
  return sha1(keyPublicBytes(k));
}

/** Rebuilds the node:crypto key from the modulus and prime; a mismatch is `rc`. */
export function rebuildRsa(n: Buffer, p: Buffer, exponent: number, rc: number = RC.DECRYPT_ERROR): RsaKey {
  try {
    return rsaFromModulusAndPrime(n, p, exponent);
  } catch {
    throw new Tpm12Error(rc);
  }
}

/** Whether the key may sign (TPM_Sign, Quote, CertifyKey). */
export function isSigningKey(k: KeyObject12): boolean {
  return k.usage === KEY_USAGE.SIGNING || k.usage === KEY_USAGE.LEGACY || k.usage === KEY_USAGE.IDENTITY;
}

export function isStorageKey(k: KeyObject12): boolean {
  return k.usage === KEY_USAGE.STORAGE;
}

export function isMigratable(k: KeyObject12): boolean {
  return (k.flags & KEY_FLAG.MIGRATABLE) !== 0;
}

export function needsAuth(k: KeyObject12): boolean {
  return k.authDataUsage !== AUTH_USAGE.NEVER;
}

/**
 * Checks the scheme combination a key template asks for (part 3, TPM_CreateWrapKey step 8 and
 * TPM_LoadKey2): storage keys OAEP without signing, signing keys a PKCS#1 scheme without
 * encryption, bind keys encryption only, legacy keys either.
 */
export function checkSchemes(usage: number, encScheme: number, sigScheme: number): void {
  const sigOk = sigScheme === SS.RSASSAPKCS1v15_SHA1 || sigScheme === SS.RSASSAPKCS1v15_DER || sigScheme === SS.RSASSAPKCS1v15_INFO;
  const encOk = encScheme === ES.RSAESOAEP_SHA1_MGF1 || encScheme === ES.RSAESPKCSv15;
  switch (usage) {
    case KEY_USAGE.STORAGE:
      if (encScheme !== ES.RSAESOAEP_SHA1_MGF1 || sigScheme !== SS.NONE) throw new Tpm12Error(RC.INAPPROPRIATE_ENC);
      return;
    case KEY_USAGE.SIGNING:
      if (encScheme !== ES.NONE || !sigOk) throw new Tpm12Error(RC.INAPPROPRIATE_SIG);
      return;
    case KEY_USAGE.IDENTITY:
      if (encScheme !== ES.NONE || sigScheme !== SS.RSASSAPKCS1v15_SHA1) throw new Tpm12Error(RC.INAPPROPRIATE_SIG);
      return;
    case KEY_USAGE.BIND:
      if (!encOk || sigScheme !== SS.NONE) throw new Tpm12Error(RC.INAPPROPRIATE_ENC);
      return;
    case KEY_USAGE.LEGACY:
      if (!(encOk || encScheme === ES.NONE) || !(sigOk || sigScheme === SS.NONE)) throw new Tpm12Error(RC.INAPPROPRIATE_ENC);
      return;
    default:
      throw new Tpm12Error(RC.INVALID_KEYUSAGE);
  }
}
