import { codec, sized, sizedStruct, struct, type Codec } from '../../wire/codec.ts';
import { digest, isHashAlg } from '../../crypto/hash.ts';
import { ALG } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import { authBuf, digestBuf, sensitiveData } from './basic.ts';
import { PUBLIC_TYPES, decodeParmsBody, encodeParmsBody, type PublicParms } from './public-parms.ts';

/** TPMA_OBJECT bits. */
export const OBJECT_ATTR = {
  fixedTPM: 1 << 1,
  stClear: 1 << 2,
  fixedParent: 1 << 4,
  sensitiveDataOrigin: 1 << 5,
  userWithAuth: 1 << 6,
  adminWithPolicy: 1 << 7,
  noDA: 1 << 10,
  encryptedDuplication: 1 << 11,
  restricted: 1 << 16,
  decrypt: 1 << 17,
  sign: 1 << 18,
  x509sign: 1 << 19,
} as const;

/** Bits of TPMA_OBJECT that are reserved and must be clear. */
export const OBJECT_ATTR_RESERVED = (1 << 0) | (1 << 3) | (0x3 << 8) | (0xf << 12) | (0x1fff << 20);

/** Largest RSA modulus (3072 bits) and ECC coordinate (P-384) this TPM handles. */
export const MAX_RSA_KEY_BYTES = 384;
export const MAX_ECC_KEY_BYTES = 48;
/** MAX_SYM_KEY_BYTES. */
export const MAX_SYM_KEY_BYTES = 32;

export const rsaKeyBuf = sized(MAX_RSA_KEY_BYTES); // TPM2B_PUBLIC_KEY_RSA
export const eccParameter = sized(MAX_ECC_KEY_BYTES); // TPM2B_ECC_PARAMETER
export const symKeyBuf = sized(MAX_SYM_KEY_BYTES); // TPM2B_SYM_KEY
/** TPM2B_PRIVATE_KEY_RSA: one prime (RSA_PRIVATE_SIZE = half a modulus) — the TPM keeps no CRT values. */
export const rsaPrivateBuf = sized(MAX_RSA_KEY_BYTES / 2);

/** TPMS_ECC_POINT. */
export const eccPoint = struct({ x: eccParameter, y: eccParameter });
export type EccPoint = { x: Buffer; y: Buffer };

/** TPMU_PUBLIC_ID, flattened: RSA modulus, ECC point, or a keyed-hash/symcipher unique digest. */
export type PublicId = { rsa: Buffer } | { ecc: EccPoint } | { digest: Buffer };

/** TPMT_PUBLIC. */
export interface Public {
  type: number;
  nameAlg: number;
  objectAttributes: number;
  authPolicy: Buffer;
  parameters: PublicParms;
  unique: PublicId;
}

function encodeUnique(w: Parameters<Codec<unknown>['encode']>[0], type: number, u: PublicId): void {
  if (type === ALG.RSA) rsaKeyBuf.encode(w, (u as { rsa: Buffer }).rsa);
  else if (type === ALG.ECC) eccPoint.encode(w, (u as { ecc: EccPoint }).ecc);
  else digestBuf.encode(w, (u as { digest: Buffer }).digest);
}

export const publicArea: Codec<Public> = codec(
  (w, v) => {
    w.u16(v.type).u16(v.nameAlg).u32(v.objectAttributes);
    digestBuf.encode(w, v.authPolicy);
    encodeParmsBody(w, v.parameters);
    encodeUnique(w, v.type, v.unique);
  },
  (r) => {
    const type = r.u16();
    if (!(PUBLIC_TYPES as readonly number[]).includes(type)) throw new TpmError(RC.TYPE);
    const nameAlg = r.u16();
    if (nameAlg !== ALG.NULL && !isHashAlg(nameAlg)) throw new TpmError(RC.HASH);
    const objectAttributes = r.u32();
    if (objectAttributes & OBJECT_ATTR_RESERVED) throw new TpmError(RC.RESERVED_BITS);
    const authPolicy = digestBuf.decode(r);
    const parameters = decodeParmsBody(r, type);
    const unique: PublicId =
      type === ALG.RSA ? { rsa: rsaKeyBuf.decode(r) } : type === ALG.ECC ? { ecc: eccPoint.decode(r) } : { digest: digestBuf.decode(r) };
    return { type, nameAlg, objectAttributes, authPolicy, parameters, unique };
  },
);

/** TPM2B_PUBLIC. */
export const public2b = sizedStruct(publicArea) as Codec<Public>;
/** TPM2B_TEMPLATE: a TPMT_PUBLIC carried as bytes (CreateLoaded may use a derivation template). */
export const template2b = sized(1024);

/** TPMS_SENSITIVE_CREATE inside TPM2B_SENSITIVE_CREATE. */
export const sensitiveCreate = sizedStruct(struct({ userAuth: authBuf, data: sensitiveData })) as Codec<{ userAuth: Buffer; data: Buffer }>;

/** TPMT_SENSITIVE: the private part, flattened (`sensitive` holds the prime, scalar, key or data). */
export interface Sensitive {
  sensitiveType: number;
  authValue: Buffer;
  seedValue: Buffer;
  sensitive: Buffer;
}

export const sensitiveArea: Codec<Sensitive> = codec(
  (w, v) => {
    w.u16(v.sensitiveType);
    authBuf.encode(w, v.authValue);
    digestBuf.encode(w, v.seedValue);
    w.u16(v.sensitive.length).bytes(v.sensitive);
  },
  (r) => {
    const sensitiveType = r.u16();
    if (!(PUBLIC_TYPES as readonly number[]).includes(sensitiveType)) throw new TpmError(RC.TYPE);
    const authValue = authBuf.decode(r);
    const seedValue = digestBuf.decode(r);
    const max =
      sensitiveType === ALG.RSA ? MAX_RSA_KEY_BYTES / 2 : sensitiveType === ALG.ECC ? MAX_ECC_KEY_BYTES : sensitiveType === ALG.SYMCIPHER ? MAX_SYM_KEY_BYTES : 128;
    const sensitive = sized(max).decode(r);
    return { sensitiveType, authValue, seedValue, sensitive };
  },
);

/** TPM2B_SENSITIVE (LoadExternal): may be empty for a public-only load. */
export const sensitive2b = sizedStruct(sensitiveArea, true);

/** The Name of an object: nameAlg || H_nameAlg(TPMT_PUBLIC). */
export function objectName(pub: Public, encoded: Buffer): Buffer {
  if (pub.nameAlg === ALG.NULL) return Buffer.alloc(0);
  const n = Buffer.alloc(2);
  n.writeUInt16BE(pub.nameAlg);
  return Buffer.concat([n, digest(pub.nameAlg, encoded)]);
}
