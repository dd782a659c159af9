import { codec, oneOf, sized, sizedStruct, struct, u16, type Codec } from '../../wire/codec.ts';
import { MAX_DIGEST_SIZE } from '../../crypto/hash.ts';
import { ALG } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import { algHash } from './basic.ts';
import { SYM_MODES, eccScheme, kdfScheme, type Scheme } from './public-parms.ts';
import { MAX_ECC_KEY_BYTES, MAX_RSA_KEY_BYTES, eccParameter, eccPoint, type EccPoint } from './public.ts';

/** MAX_SYM_BLOCK_SIZE: the AES block. */
export const MAX_SYM_BLOCK_SIZE = 16;
/** sizeof(TPMS_ID_OBJECT): integrityHMAC and encIdentity, two TPM2B_DIGESTs. */
export const ID_OBJECT_SIZE = 2 * (2 + MAX_DIGEST_SIZE);
/** sizeof(TPMU_ENCRYPTED_SECRET): the largest of an RSA block, a TPMS_ECC_POINT and a digest. */
export const ENCRYPTED_SECRET_SIZE = Math.max(MAX_RSA_KEY_BYTES, 2 * (2 + MAX_ECC_KEY_BYTES), 2 + MAX_DIGEST_SIZE);

/** TPM2B_IV. */
export const ivBuf = sized(MAX_SYM_BLOCK_SIZE);

/**
 * TPM2B_ID_OBJECT: integrityHMAC (a TPM2B_DIGEST) followed by encIdentity, whose own size field
 * is encrypted with it. Kept as bytes: the structure inside is checked when it is unwrapped.
 */
export const idObject = sized(ID_OBJECT_SIZE);

/** TPM2B_ENCRYPTED_SECRET: an RSA-OAEP block or a marshaled TPMS_ECC_POINT. */
export const encryptedSecret = sized(ENCRYPTED_SECRET_SIZE);

/** TPM2B_ECC_POINT: a TPMS_ECC_POINT with a size; an empty one is TPM_RC_SIZE. */
export const eccPoint2b = sizedStruct(eccPoint) as Codec<EccPoint>;

/** TPMI_ALG_CIPHER_MODE+ (EncryptDecrypt's mode): a block cipher mode or TPM_ALG_NULL. */
export const cipherModeOrNull: Codec<number> = oneOf(u16, [...SYM_MODES, ALG.NULL], RC.MODE);

const RSA_DECRYPT_SCHEMES: readonly number[] = [ALG.RSAES, ALG.OAEP, ALG.NULL];

/**
 * TPMT_RSA_DECRYPT (RSA_Encrypt and RSA_Decrypt inScheme): RSAES, OAEP with its hash, or NULL.
 * Another scheme is TPM_RC_VALUE (TPMI_ALG_RSA_DECRYPT+), an unimplemented hash TPM_RC_HASH.
 */
export const rsaDecryptScheme: Codec<Scheme> = codec(
  (w, v) => {
    w.u16(v.scheme);
    if (v.scheme === ALG.OAEP) w.u16(v.hashAlg);
  },
  (r) => {
    const scheme = r.u16();
    if (!RSA_DECRYPT_SCHEMES.includes(scheme)) throw new TpmError(RC.VALUE);
    if (scheme !== ALG.OAEP) return { scheme, hashAlg: ALG.NULL };
    return { scheme, hashAlg: algHash.decode(r) };
  },
);

/** TPMS_ALGORITHM_DETAIL_ECC (ECC_Parameters). */
export const eccCurveDetail = struct({
  curveID: u16,
  keySize: u16,
  kdf: kdfScheme,
  sign: eccScheme,
  p: eccParameter,
  a: eccParameter,
  b: eccParameter,
  gX: eccParameter,
  gY: eccParameter,
  n: eccParameter,
  h: eccParameter,
});
export type EccCurveDetail = {
  curveID: number;
  keySize: number;
  kdf: Scheme;
  sign: Scheme;
  p: Buffer;
  a: Buffer;
  b: Buffer;
  gX: Buffer;
  gY: Buffer;
  n: Buffer;
  h: Buffer;
};
