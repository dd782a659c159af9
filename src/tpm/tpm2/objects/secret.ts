import { digestSize } from '../../crypto/hash.ts';
import { kdfe } from '../../crypto/kdf.ts';
import { curve, eccPublicKey, generateEcc, isOnCurve, type Curve } from '../../crypto/ecc.ts';
import { ecdhSharedX, fieldElement } from '../../crypto/ecdh.ts';
import { belowModulus, oaepDecrypt, oaepEncode, rsaPublicRaw } from '../../crypto/rsa-encrypt.ts';
import { Reader } from '../../wire/buffer.ts';
import { encode } from '../../wire/codec.ts';
import { ALG } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import { OBJECT_ATTR, eccPoint, type Public } from '../types/public.ts';
import { hasPrivate, keysOf, type TpmObject } from './model.ts';
import { backendOf } from '../hardware-keys.ts';
import type { TransientObject } from '../state/objects.ts';

/**
 * Secret sharing with an asymmetric key (TPM 2.0 Part 1, 24 and Annex B/C; the reference
 * CryptSecretEncrypt/CryptSecretDecrypt). A seed of the key's nameAlg digest size is either
 * OAEP-encrypted to an RSA key (hash: the nameAlg; label: the use with its terminating zero), or
 * derived from an ephemeral ECDH with an ECC key as
 *   seed = KDFe(nameAlg, Z = x(de·Qs), use, PartyUInfo = x(Qe), PartyVInfo = x(Qs), bits),
 * the encrypted secret then being the marshaled ephemeral point Qe.
 *
 * Errors are unnumbered TPM_RC values; each command numbers (or replaces) them as Part 3 says.
 */
export type SecretUse = 'SECRET' | 'IDENTITY' | 'DUPLICATE';

function labelOf(use: SecretUse): Buffer {
  return Buffer.from(`${use}\0`, 'latin1');
}

function eccCurveOf(pub: Public): Curve {
  if (pub.parameters.type !== ALG.ECC) throw new TpmError(RC.KEY);
  return curve(pub.parameters.curveID);
}

function publicPoint(pub: Public): { x: Buffer; y: Buffer } {
  if (!('ecc' in pub.unique)) throw new TpmError(RC.KEY);
  return pub.unique.ecc;
}

function publicModulus(pub: Public): Buffer {
  if (!('rsa' in pub.unique)) throw new TpmError(RC.KEY);
  return pub.unique.rsa;
}

/**
 * The TPM makes a secret for `key` (MakeCredential, Duplicate): returns the seed and the
 * TPM2B_ENCRYPTED_SECRET contents only the holder of the key's private part can turn back into
 * it. TPM_RC_ATTRIBUTES if the key is not a decryption key, TPM_RC_KEY if an ECC key's point is
 * not on its curve.
 */
export function makeSecret(key: TpmObject, use: SecretUse, random: (n: number) => Buffer): { seed: Buffer; encryptedSecret: Buffer } {
  const pub = key.public;
  if (!(pub.objectAttributes & OBJECT_ATTR.decrypt)) throw new TpmError(RC.ATTRIBUTES);
  const size = digestSize(pub.nameAlg);
  switch (pub.type) {
    case ALG.RSA: {
      const n = publicModulus(pub);
      const seed = random(size);
      const em = oaepEncode(pub.nameAlg, labelOf(use), seed, n.length, random);
      const c = em && rsaPublicRaw(keysOf(key).publicKey, n, em);
      if (!c) throw new TpmError(RC.VALUE);
      return { seed, encryptedSecret: c };
    }
    case ALG.ECC: {
      const c = eccCurveOf(pub);
      const q = publicPoint(pub);
      const x = fieldElement(c, q.x);
      const y = fieldElement(c, q.y);
      if (!x || !y || !isOnCurve(c, x, y)) throw new TpmError(RC.KEY);
      const e = generateEcc(c, random);
      const z = ecdhSharedX(e.privateKey, eccPublicKey(c, x, y));
      const seed = kdfe(pub.nameAlg, z, use, e.x, q.x, size * 8);
      return { seed, encryptedSecret: encode(eccPoint, { x: e.x, y: e.y }) };
    }
    default:
      throw new TpmError(RC.KEY);
  }
}

/**
 * The TPM recovers a secret made for `key` outside it (StartAuthSession salts, ActivateCredential,
 * Import). RSA: OAEP with the key's scheme hash, or its nameAlg when the scheme is NULL (any other
 * scheme is TPM_RC_SCHEME); a block not of the modulus' size or not below the modulus is
 * TPM_RC_SIZE, a bad encoding or a seed longer than the digest TPM_RC_VALUE. ECC: the point must
 * unmarshal (TPM_RC_INSUFFICIENT, TPM_RC_SIZE) and lie on the key's curve (TPM_RC_ECC_POINT).
 */
export function recoverSecret(key: TpmObject, use: SecretUse, encryptedSecret: Buffer): Buffer {
  const pub = key.public;
  const chip = key.hardware;
  const priv = chip ? undefined : keysOf(key).privateKey;
  if (!chip && !priv) throw new TpmError(RC.KEY);
  switch (pub.type) {
    case ALG.RSA: {
      const p = pub.parameters;
      if (p.type !== ALG.RSA) throw new TpmError(RC.KEY);
      const scheme = p.scheme.scheme === ALG.NULL ? { scheme: ALG.OAEP, hashAlg: pub.nameAlg } : p.scheme;
      const size = digestSize(scheme.hashAlg);
      if (scheme.scheme !== ALG.OAEP || size === 0) throw new TpmError(RC.SCHEME);
      const n = publicModulus(pub);
      if (encryptedSecret.length !== n.length || !belowModulus(encryptedSecret, n)) throw new TpmError(RC.SIZE);
      // The chip answers a bad encoding with TPM_RC_VALUE, as the model would.
      const seed = chip ? backendOf(chip).rsaDecrypt(chip.outer, pub, scheme, labelOf(use), encryptedSecret) : oaepDecrypt(priv!, scheme.hashAlg, labelOf(use), encryptedSecret);
      if (!seed || seed.length > size) throw new TpmError(RC.VALUE);
      return seed;
    }
    case ALG.ECC: {
      const c = eccCurveOf(pub);
      const point = eccPoint.decode(new Reader(encryptedSecret));
      const x = fieldElement(c, point.x);
      const y = fieldElement(c, point.y);
      if (!x || !y || !isOnCurve(c, x, y)) throw new TpmError(RC.ECC_POINT);
      const z = chip ? fieldElement(c, backendOf(chip).ecdhZGen(chip.outer, pub, { x, y }).x) : ecdhSharedX(priv!, eccPublicKey(c, x, y));
      if (!z) throw new TpmError(RC.FAILURE);
      return kdfe(pub.nameAlg, z, use, point.x, publicPoint(pub).x, digestSize(pub.nameAlg) * 8);
    }
    default:
      throw new TpmError(RC.KEY);
  }
}

/**
 * StartAuthSession's salt (Part 3, 11.1): tpmKey must be an RSA or ECC object (TPM_RC_KEY + H1)
 * with its private part loaded (TPM_RC_HANDLE + H1) and decrypt SET (TPM_RC_ATTRIBUTES + H1); an
 * empty encryptedSalt, or one that does not decrypt for any reason, is TPM_RC_VALUE + P2.
 */
export function decryptSalt(key: TransientObject | undefined, encryptedSalt: Buffer): Buffer {
  if (!key || key.kind !== 'object' || !key.public || (key.public.type !== ALG.RSA && key.public.type !== ALG.ECC)) throw TpmError.handle(RC.KEY, 1);
  const o = key as TpmObject;
  if (encryptedSalt.length === 0) throw TpmError.parameter(RC.VALUE, 2);
  if (!hasPrivate(o)) throw TpmError.handle(RC.HANDLE, 1);
  if (!(o.public.objectAttributes & OBJECT_ATTR.decrypt)) throw TpmError.handle(RC.ATTRIBUTES, 1);
  try {
    return recoverSecret(o, 'SECRET', encryptedSalt);
  } catch (e) {
    if (e instanceof TpmError) throw TpmError.parameter(RC.VALUE, 2);
    throw e;
  }
}
