import type { KeyObject } from 'node:crypto';
import { rsaPublicKey } from '../../crypto/rsa.ts';
import { oaepEncode, rsaPublicRaw } from '../../crypto/rsa-encrypt.ts';
import { pkcs1v15VerifySha1Digest } from '../../crypto/pkcs1-sign.ts';
import { ALG as TPM2_ALG } from '../../tpm2/constants.ts';
import { digest } from '../../crypto/hash.ts';
import { OAEP_LABEL, STAG } from '../constants.ts';
import { enc } from '../structures/basic.ts';
import { pcrComposite, pcrInfoLong, pcrInfoShort, selectionOf } from '../structures/pcr.ts';
import { rsaKeyParms, type PubKey } from '../structures/key.ts';
import { decode } from '../../wire/codec.ts';

export function sha1(...parts: Uint8Array[]): Buffer {
  return digest(TPM2_ALG.SHA1, ...parts);
}

/** An auth value from a password, as TSS 1.2 stacks derive it: SHA-1 of the secret. */
export function authFromPassword(password: string): Buffer {
  return sha1(Buffer.from(password, 'utf8'));
}

/** TPM_COMPOSITE_HASH of PCR values in PCR order, for the selection of those PCRs. */
export function compositeHash(pcrs: readonly number[], values: readonly Buffer[]): Buffer {
  return sha1(enc(pcrComposite, { select: selectionOf(pcrs), values: [...values] }));
}

/** TPM_PCR_INFO_LONG binding to the PCRs' expected values, releasable at the given localities. */
export function pcrInfoLongFor(pcrs: readonly number[], values: readonly Buffer[], localities = 0x1f): Buffer {
  return enc(pcrInfoLong, {
    tag: STAG.PCR_INFO_LONG,
    localityAtCreation: 1,
    localityAtRelease: localities,
    creationPCRSelection: selectionOf(pcrs),
    releasePCRSelection: selectionOf(pcrs),
    digestAtCreation: Buffer.alloc(20),
    digestAtRelease: compositeHash(pcrs, values),
  });
}

export function pcrInfoShortFor(pcrs: readonly number[], values: readonly Buffer[], localities = 0x1f): Buffer {
  return enc(pcrInfoShort, { pcrSelection: selectionOf(pcrs), localityAtRelease: localities, digestAtRelease: compositeHash(pcrs, values) });
}

/** The exponent of a TPM_PUBKEY (65537 when the parameters leave it empty). */
export function exponentOf(p: PubKey): number {
  const rp = decode(rsaKeyParms, p.algorithmParms.parms);
  return rp.exponent.length ? rp.exponent.readUIntBE(0, rp.exponent.length) : 65537;
}

/** A node:crypto public key for a TPM_PUBKEY. */
export function publicKeyOf(p: PubKey): KeyObject {
  return rsaPublicKey(p.pubKey, exponentOf(p));
}

/** PEM (SubjectPublicKeyInfo) of a TPM_PUBKEY, for openssl. */
export function pubkeyPem(p: PubKey): string {
  return publicKeyOf(p).export({ type: 'spki', format: 'pem' }).toString();
}

/** Verifies a PKCS #1 v1.5 SHA-1 signature over the SHA-1 of `signed` (Quote, CertifyKey…). */
export function verifySha1Signature(p: PubKey, signed: Uint8Array, signature: Uint8Array): boolean {
  return pkcs1v15VerifySha1Digest(publicKeyOf(p), sha1(signed), signature);
}

/** Verifies a TPM_Sign signature (scheme TPM_SS_RSASSAPKCS1v15_SHA1) over a 20-byte digest. */
export function verifyDigestSignature(p: PubKey, digest20: Uint8Array, signature: Uint8Array): boolean {
  return pkcs1v15VerifySha1Digest(publicKeyOf(p), digest20, signature);
}

/** RSAES-OAEP SHA-1 with label "TCPA" to a TPM_PUBKEY (owner auth to the EK, privacy-CA blobs). */
export function encryptTcpa(p: PubKey, message: Uint8Array, random: (n: number) => Buffer): Buffer {
  const em = oaepEncode(TPM2_ALG.SHA1, OAEP_LABEL, message, p.pubKey.length, random);
  if (!em) throw new RangeError('message too long for the key');
  const c = rsaPublicRaw(publicKeyOf(p), p.pubKey, em);
  if (!c) throw new Error('RSA encryption failed');
  return c;
}
