import { oaepDecrypt, oaepEncode, rsaPublicRaw } from '../../crypto/rsa-encrypt.ts';
import { rsaPublicKey } from '../../crypto/rsa.ts';
import { OAEP_LABEL, PT } from '../constants.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { decodeAs, enc } from '../structures/basic.ts';
import { storeAsymkey, type Key } from '../structures/key.ts';
import { pubDataDigest, rebuildRsa, SHA1, type KeyObject12 } from './key-object.ts';

/** RSAES-OAEP (SHA-1, MGF1, label "TCPA") to a public modulus: how TPM 1.2 encrypts to keys. */
export function oaepTcpaEncrypt(n: Buffer, exponent: number, message: Uint8Array, random: (n: number) => Buffer): Buffer | undefined {
  const em = oaepEncode(SHA1, OAEP_LABEL, message, n.length, random);
  if (!em) return undefined;
  return rsaPublicRaw(rsaPublicKey(n, exponent), n, em);
}

export function oaepTcpaDecrypt(k: KeyObject12, cipher: Uint8Array): Buffer | undefined {
  if (cipher.length !== k.n.length) return undefined;
  return oaepDecrypt(k.rsa.privateKey, SHA1, OAEP_LABEL, cipher);
}

/** encData of a TPM_KEY: its TPM_STORE_ASYMKEY encrypted to the parent. */
export function wrapKey(parent: KeyObject12, k: KeyObject12, random: (n: number) => Buffer): Buffer {
  const wire: Key = { key12: k.key12, keyUsage: k.usage, keyFlags: k.flags, authDataUsage: k.authDataUsage, algorithmParms: k.parms, pcrInfo: k.pcrInfo, pubKey: k.n, encData: Buffer.alloc(0) };
  const asym = enc(storeAsymkey, { payload: PT.ASYM, usageAuth: k.usageAuth, migrationAuth: k.migrationAuth, pubDataDigest: pubDataDigest(wire), privKey: k.p });
  const c = oaepTcpaEncrypt(parent.n, parent.exponent, asym, random);
  if (!c) throw new Tpm12Error(RC.ENCRYPT_ERROR);
  return c;
}

/**
 * Opens a TPM_KEY under its parent: decrypts TPM_STORE_ASYMKEY, checks payload, the digest of the
 * public part and that the prime matches the modulus. Any failure is TPM_DECRYPT_ERROR, or
 * TPM_INVALID_STRUCTURE / TPM_BAD_MIGRATION where the content is wrong rather than unreadable.
 */
export function unwrapKey(parent: KeyObject12, wire: Key, exponent: number): { p: Buffer; usageAuth: Buffer; migrationAuth: Buffer } {
  const plain = oaepTcpaDecrypt(parent, wire.encData);
  if (!plain) throw new Tpm12Error(RC.DECRYPT_ERROR);
  const a = decodeAs(storeAsymkey, plain, RC.DECRYPT_ERROR);
  if (a.payload !== PT.ASYM) throw new Tpm12Error(RC.INVALID_STRUCTURE);
  if (!a.pubDataDigest.equals(pubDataDigest(wire))) throw new Tpm12Error(RC.DECRYPT_ERROR);
  rebuildRsa(wire.pubKey, a.privKey, exponent, RC.DECRYPT_ERROR);
  return { p: a.privKey, usageAuth: a.usageAuth, migrationAuth: a.migrationAuth };
}
