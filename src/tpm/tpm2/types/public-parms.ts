import { codec, oneOf, u16, u32, type Codec } from '../../wire/codec.ts';
import type { Reader, Writer } from '../../wire/buffer.ts';
import { ALG, ECC_CURVE } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import { algHash } from './basic.ts';

/** Implemented symmetric key sizes and curves (what TestParms accepts and CreatePrimary makes). */
export const AES_KEY_BITS = [128, 192, 256] as const;
export const RSA_KEY_BITS = [1024, 2048, 3072] as const;
export const ECC_CURVES = [ECC_CURVE.NIST_P256, ECC_CURVE.NIST_P384] as const;
export const SYM_MODES = [ALG.CTR, ALG.OFB, ALG.CBC, ALG.CFB, ALG.ECB] as const;

/** TPMT_SYM_DEF_OBJECT: NULL, or a block cipher with its key size and mode. */
export interface SymDef {
  algorithm: number;
  keyBits: number;
  mode: number;
}

export const NULL_SYM: SymDef = { algorithm: ALG.NULL, keyBits: 0, mode: ALG.NULL };

function symDefObject(allowNull: boolean): Codec<SymDef> {
  const algs: number[] = allowNull ? [ALG.AES, ALG.NULL] : [ALG.AES];
  return codec(
    (w, v) => {
      w.u16(v.algorithm);
      if (v.algorithm === ALG.NULL) return;
      w.u16(v.keyBits);
      w.u16(v.mode);
    },
    (r) => {
      const algorithm = r.u16();
      if (!algs.includes(algorithm)) throw new TpmError(RC.SYMMETRIC);
      if (algorithm === ALG.NULL) return NULL_SYM;
      const keyBits = r.u16();
      if (!(AES_KEY_BITS as readonly number[]).includes(keyBits)) throw new TpmError(RC.VALUE);
      const mode = r.u16();
      if (mode !== ALG.NULL && !(SYM_MODES as readonly number[]).includes(mode)) throw new TpmError(RC.MODE);
      return { algorithm, keyBits, mode };
    },
  );
}

/** TPMT_SYM_DEF_OBJECT (no NULL) and TPMT_SYM_DEF_OBJECT+ (NULL allowed). */
export const symDefObjectStrict = symDefObject(false);
export const symDefObjectOrNull = symDefObject(true);

/**
 * A scheme union (TPMT_RSA_SCHEME, TPMT_ECC_SCHEME, TPMT_KEYEDHASH_SCHEME, TPMT_KDF_SCHEME):
 * the scheme selector and the details it selects, flattened.
 */
export interface Scheme {
  scheme: number;
  hashAlg: number;
  /** TPMS_SCHEME_ECDAA count. */
  count?: number;
  /** TPMS_SCHEME_XOR key derivation function. */
  kdf?: number;
}

export const NULL_SCHEME: Scheme = { scheme: ALG.NULL, hashAlg: ALG.NULL };

type Details = 'none' | 'hash' | 'hashCount' | 'hashKdf';

function schemeUnion(arms: Record<number, Details>, rc: number): Codec<Scheme> {
  return codec(
    (w: Writer, v: Scheme) => {
      w.u16(v.scheme);
      const d = arms[v.scheme];
      if (d === undefined || d === 'none') return;
      w.u16(v.hashAlg);
      if (d === 'hashCount') w.u16(v.count ?? 0);
      if (d === 'hashKdf') w.u16(v.kdf ?? ALG.NULL);
    },
    (r: Reader) => {
      const scheme = r.u16();
      const d = arms[scheme];
      if (d === undefined) throw new TpmError(rc);
      if (d === 'none') return { scheme, hashAlg: ALG.NULL };
      const hashAlg = algHash.decode(r);
      if (d === 'hashCount') return { scheme, hashAlg, count: r.u16() };
      if (d === 'hashKdf') {
        const kdf = r.u16();
        if (!KDFS.includes(kdf)) throw new TpmError(RC.KDF);
        return { scheme, hashAlg, kdf };
      }
      return { scheme, hashAlg };
    },
  );
}

const KDFS: number[] = [ALG.MGF1, ALG.KDF1_SP800_56A, ALG.KDF2, ALG.KDF1_SP800_108];

export const rsaScheme = schemeUnion(
  { [ALG.RSASSA]: 'hash', [ALG.RSAPSS]: 'hash', [ALG.OAEP]: 'hash', [ALG.RSAES]: 'none', [ALG.NULL]: 'none' },
  RC.VALUE,
);
export const eccScheme = schemeUnion(
  { [ALG.ECDSA]: 'hash', [ALG.ECDH]: 'hash', [ALG.NULL]: 'none' },
  RC.SCHEME,
);
export const kdfScheme = schemeUnion(
  { [ALG.MGF1]: 'hash', [ALG.KDF1_SP800_56A]: 'hash', [ALG.KDF2]: 'hash', [ALG.KDF1_SP800_108]: 'hash', [ALG.NULL]: 'none' },
  RC.KDF,
);
export const keyedHashScheme = schemeUnion(
  { [ALG.HMAC]: 'hash', [ALG.XOR]: 'hashKdf', [ALG.NULL]: 'none' },
  RC.VALUE,
);

export const rsaKeyBits = oneOf(u16, RSA_KEY_BITS, RC.VALUE);
export const eccCurve = oneOf(u16, ECC_CURVES, RC.CURVE);

/** TPMU_PUBLIC_PARMS selected by the object type, with the type (TPMT_PUBLIC_PARMS). */
export type PublicParms =
  | { type: typeof ALG.RSA; symmetric: SymDef; scheme: Scheme; keyBits: number; exponent: number }
  | { type: typeof ALG.ECC; symmetric: SymDef; scheme: Scheme; curveID: number; kdf: Scheme }
  | { type: typeof ALG.KEYEDHASH; scheme: Scheme }
  | { type: typeof ALG.SYMCIPHER; sym: SymDef };

export const PUBLIC_TYPES = [ALG.RSA, ALG.KEYEDHASH, ALG.ECC, ALG.SYMCIPHER] as const;

/** TPMU_PUBLIC_PARMS for a type already read (TPMT_PUBLIC reads the type first, then other fields). */
export function encodeParmsBody(w: Writer, v: PublicParms): void {
  switch (v.type) {
    case ALG.RSA:
      symDefObjectOrNull.encode(w, v.symmetric);
      rsaScheme.encode(w, v.scheme);
      w.u16(v.keyBits);
      w.u32(v.exponent);
      return;
    case ALG.ECC:
      symDefObjectOrNull.encode(w, v.symmetric);
      eccScheme.encode(w, v.scheme);
      w.u16(v.curveID);
      kdfScheme.encode(w, v.kdf);
      return;
    case ALG.KEYEDHASH:
      keyedHashScheme.encode(w, v.scheme);
      return;
    case ALG.SYMCIPHER:
      symDefObjectStrict.encode(w, v.sym);
      return;
  }
}

export function decodeParmsBody(r: Reader, type: number): PublicParms {
  switch (type) {
    case ALG.RSA:
      return {
        type,
        symmetric: symDefObjectOrNull.decode(r),
        scheme: rsaScheme.decode(r),
        keyBits: rsaKeyBits.decode(r),
        exponent: u32.decode(r),
      };
    case ALG.ECC:
      return {
        type,
        symmetric: symDefObjectOrNull.decode(r),
        scheme: eccScheme.decode(r),
        curveID: eccCurve.decode(r),
        kdf: kdfScheme.decode(r),
      };
    case ALG.KEYEDHASH:
      return { type, scheme: keyedHashScheme.decode(r) };
    case ALG.SYMCIPHER:
      return { type, sym: symDefObjectStrict.decode(r) };
    default:
      throw new TpmError(RC.TYPE);
  }
}

/** TPMT_PUBLIC_PARMS. */
export const publicParms: Codec<PublicParms> = codec(
  (w, v) => {
    w.u16(v.type);
    encodeParmsBody(w, v);
  },
  (r) => decodeParmsBody(r, r.u16()),
);

/**
 * TPMT_SYM_DEF+ (session parameter encryption): NULL, AES with key size and mode, or XOR with
 * a hash (carried in keyBits, as TPMU_SYM_KEY_BITS does).
 */
export const symDefOrNull: Codec<SymDef> = codec(
  (w, v) => {
    w.u16(v.algorithm);
    if (v.algorithm === ALG.NULL) return;
    w.u16(v.keyBits);
    if (v.algorithm !== ALG.XOR) w.u16(v.mode);
  },
  (r) => {
    const algorithm = r.u16();
    if (algorithm === ALG.NULL) return NULL_SYM;
    if (algorithm === ALG.XOR) return { algorithm, keyBits: algHash.decode(r), mode: ALG.NULL };
    if (algorithm !== ALG.AES) throw new TpmError(RC.SYMMETRIC);
    const keyBits = r.u16();
    if (!(AES_KEY_BITS as readonly number[]).includes(keyBits)) throw new TpmError(RC.VALUE);
    const mode = r.u16();
    if (mode !== ALG.NULL && !(SYM_MODES as readonly number[]).includes(mode)) throw new TpmError(RC.MODE);
    return { algorithm, keyBits, mode };
  },
);
