import type { KeyObject } from 'node:crypto';
import { encode } from '../../wire/codec.ts';
import { digestSize } from '../../crypto/hash.ts';
import { curve, eccFromScalar, eccPublicKey } from '../../crypto/ecc.ts';
import { DEFAULT_EXPONENT, rsaFromModulusAndPrime, rsaPublicKey } from '../../crypto/rsa.ts';
import { ALG } from '../constants.ts';
import type { TransientObject } from '../state/objects.ts';
import { OBJECT_ATTR, objectName, publicArea, type Public, type Sensitive } from '../types/public.ts';
import { digest } from '../../crypto/hash.ts';
import type { HardwareKeyRef } from '../hardware-keys.ts';

/** A key or data object loaded in the TPM: public and sensitive areas, Names, hierarchy. */
export interface TpmObject extends TransientObject {
  readonly kind: 'object';
  readonly public: Public;
  readonly publicBytes: Buffer;
  readonly name: Buffer;
  readonly qualifiedName: Buffer;
  /** The parent's QN (a hierarchy handle for primaries), kept so the object can be persisted. */
  readonly parentQn: Buffer;
  /** Absent for a public-only LoadExternal. */
  readonly sensitive?: Sensitive;
  /** TPM_RH_OWNER, _ENDORSEMENT, _PLATFORM or _NULL. */
  readonly hierarchy: number;
  readonly auth: Buffer;
  readonly authPolicy: Buffer;
  readonly noDA: boolean;
  /** Loaded with LoadExternal (never persisted, never a parent). */
  readonly external: boolean;
  /** node:crypto keys, made on first use. */
  keys?: { privateKey?: KeyObject; publicKey: KeyObject };
  /** A hardware-backed key: its private part lives in the host's chip, reached through this. */
  hardware?: HardwareKeyRef;
}

/** A hardware-backed object: public area and authValue here, private part in the chip. */
export function makeHardwareObject(pub: Public, ref: HardwareKeyRef, hierarchy: number, parentQn: Buffer): TpmObject {
  return { ...makeObject(pub, undefined, hierarchy, parentQn), auth: ref.authValue, hardware: ref };
}

/** Whether the TPM can use the object's private part: in its sensitive area, or in the host chip. */
export function hasPrivate(o: TpmObject): boolean {
  return o.sensitive !== undefined || o.hardware !== undefined;
}

export function isStorageParent(o: TpmObject): boolean {
  const a = o.public.objectAttributes;
  return (a & OBJECT_ATTR.restricted) !== 0 && (a & OBJECT_ATTR.decrypt) !== 0 && (a & OBJECT_ATTR.sign) === 0 && !o.external && hasPrivate(o);
}

/** Qualified Name: nameAlg || H(parent's QN || Name); a hierarchy's QN is its handle. */
export function qualifiedName(nameAlg: number, parentQn: Buffer, name: Buffer): Buffer {
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(nameAlg);
  return Buffer.concat([alg, digest(nameAlg, parentQn, name)]);
}

export function hierarchyQn(hierarchy: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(hierarchy >>> 0);
  return b;
}

export function makeObject(pub: Public, sensitive: Sensitive | undefined, hierarchy: number, parentQn: Buffer, external = false): TpmObject {
  const publicBytes = encode(publicArea, pub);
  const name = objectName(pub, publicBytes);
  return {
    kind: 'object',
    public: pub,
    publicBytes,
    name,
    qualifiedName: pub.nameAlg === ALG.NULL ? name : qualifiedName(pub.nameAlg, parentQn, name),
    parentQn,
    sensitive,
    hierarchy,
    auth: sensitive?.authValue ?? Buffer.alloc(0),
    authPolicy: pub.authPolicy,
    noDA: (pub.objectAttributes & OBJECT_ATTR.noDA) !== 0,
    external,
  };
}

/** The object's node:crypto keys (asymmetric objects only). */
export function keysOf(o: TpmObject): { privateKey?: KeyObject; publicKey: KeyObject } {
  if (o.keys) return o.keys;
  const p = o.public;
  if (p.type === ALG.RSA && 'rsa' in p.unique && p.parameters.type === ALG.RSA) {
    const e = p.parameters.exponent || DEFAULT_EXPONENT;
    if (o.sensitive) {
      const k = rsaFromModulusAndPrime(p.unique.rsa, o.sensitive.sensitive, e);
      o.keys = { privateKey: k.privateKey, publicKey: k.publicKey };
    } else {
      o.keys = { publicKey: publicKeyOf(p) };
    }
  } else if (p.type === ALG.ECC && 'ecc' in p.unique && p.parameters.type === ALG.ECC) {
    const c = curve(p.parameters.curveID);
    if (o.sensitive) {
      const k = eccFromScalar(c, o.sensitive.sensitive);
      o.keys = { privateKey: k.privateKey, publicKey: k.publicKey };
    } else {
      o.keys = { publicKey: publicKeyOf(p) };
    }
  } else {
    throw new RangeError('not an asymmetric key');
  }
  return o.keys;
}

/** Bytes of symmetric key or seed an object's nameAlg calls for. */
export function seedSize(nameAlg: number): number {
  return digestSize(nameAlg);
}

/** The node:crypto public key of an RSA or ECC public area. */
export function publicKeyOf(p: Public): KeyObject {
  if (p.type === ALG.RSA && 'rsa' in p.unique && p.parameters.type === ALG.RSA) {
    return rsaPublicKey(p.unique.rsa, p.parameters.exponent || DEFAULT_EXPONENT);
  }
  if (p.type === ALG.ECC && 'ecc' in p.unique && p.parameters.type === ALG.ECC) {
    return eccPublicKey(curve(p.parameters.curveID), p.unique.ecc.x, p.unique.ecc.y);
  }
  throw new RangeError('not an asymmetric key');
}
