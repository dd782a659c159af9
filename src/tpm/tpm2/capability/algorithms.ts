import { ALG, ALG_ATTR as A, ECC_CURVE } from '../constants.ts';

/** The algorithms this TPM implements, with their TPMA_ALGORITHM, in TPM_ALG_ID order. */
export const ALGORITHMS: readonly { alg: number; attributes: number }[] = [
  { alg: ALG.RSA, attributes: A.asymmetric | A.object },
  { alg: ALG.SHA1, attributes: A.hash },
  { alg: ALG.HMAC, attributes: A.hash | A.signing },
  { alg: ALG.AES, attributes: A.symmetric },
  { alg: ALG.MGF1, attributes: A.hash | A.method },
  { alg: ALG.KEYEDHASH, attributes: A.hash | A.object | A.signing | A.encrypting },
  { alg: ALG.XOR, attributes: A.hash | A.symmetric },
  { alg: ALG.SHA256, attributes: A.hash },
  { alg: ALG.SHA384, attributes: A.hash },
  { alg: ALG.SHA512, attributes: A.hash },
  { alg: ALG.NULL, attributes: 0 },
  { alg: ALG.RSASSA, attributes: A.asymmetric | A.signing },
  { alg: ALG.RSAES, attributes: A.asymmetric | A.encrypting },
  { alg: ALG.RSAPSS, attributes: A.asymmetric | A.signing },
  { alg: ALG.OAEP, attributes: A.asymmetric | A.encrypting },
  { alg: ALG.ECDSA, attributes: A.asymmetric | A.signing },
  { alg: ALG.ECDH, attributes: A.asymmetric | A.method },
  { alg: ALG.KDF1_SP800_56A, attributes: A.hash | A.method },
  { alg: ALG.KDF2, attributes: A.hash | A.method },
  { alg: ALG.KDF1_SP800_108, attributes: A.hash | A.method },
  { alg: ALG.ECC, attributes: A.asymmetric | A.object },
  { alg: ALG.SYMCIPHER, attributes: A.object },
  { alg: ALG.CTR, attributes: A.symmetric | A.encrypting },
  { alg: ALG.OFB, attributes: A.symmetric | A.encrypting },
  { alg: ALG.CBC, attributes: A.symmetric | A.encrypting },
  { alg: ALG.CFB, attributes: A.symmetric | A.encrypting },
  { alg: ALG.ECB, attributes: A.symmetric | A.encrypting },
];

export const CURVES: readonly number[] = [ECC_CURVE.NIST_P256, ECC_CURVE.NIST_P384];
