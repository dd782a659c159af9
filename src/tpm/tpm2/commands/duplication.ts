import { checked, u32 } from '../../wire/codec.ts';
import { digest, digestSize } from '../../crypto/hash.ts';
import { curve, eccFromScalar } from '../../crypto/ecc.ts';
import { toBigInt } from '../../crypto/bigint.ts';
import { ALG, CC, HT, RH } from '../constants.ts';
import { command } from '../command.ts';
import { backendOf } from '../hardware-keys.ts';
import { RC, TpmError, atParameter } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { dataBuf } from '../types/basic.ts';
import { privateBuf } from '../types/creation.ts';
import { dhObject } from '../types/handles.ts';
import { symDefObjectOrNull } from '../types/public-parms.ts';
import { OBJECT_ATTR as A, objectName, public2b, publicArea, type Public, type Sensitive } from '../types/public.ts';
import { encryptedSecret } from '../types/secret.ts';
import { encode } from '../../wire/codec.ts';
import { isStorageParent, type TpmObject } from '../objects/model.ts';
import { wrapSensitive } from '../objects/protection.ts';
import { makeSecret, recoverSecret } from '../objects/secret.ts';
import { duplicateToSensitive, protectorOf, sensitiveToDuplicate, type InnerWrap } from '../objects/wrap.ts';
import { objectAt } from './object.ts';

/** TPMI_DH_OBJECT+: a transient or persistent object, or TPM_RH_NULL. */
const objectOrNull = checked(u32, (h) => h === RH.NULL || h >>> 24 === HT.TRANSIENT || h >>> 24 === HT.PERSISTENT, RC.VALUE);

function numbered<T>(rc: (e: TpmError) => number, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof TpmError) throw new TpmError(rc(e), e.message);
    throw e;
  }
}

/**
 * ObjectIsStorage: an RSA or ECC restricted decryption key that does not sign. Its private part
 * need not be loaded — a new parent is usually another TPM's public key.
 */
function isStorageKey(o: TpmObject): boolean {
  const a = o.public.objectAttributes;
  return (o.public.type === ALG.RSA || o.public.type === ALG.ECC) && (a & A.restricted) !== 0 && (a & A.decrypt) !== 0 && (a & A.sign) === 0;
}

/**
 * Whether a sensitive area is the private part of a public area (ObjectLoad's checks on an
 * imported object): the key size, the RSA prime dividing the modulus, the ECC scalar giving the
 * point, a keyed-hash or symmetric key hashing to unique with its obfuscation value.
 */
function bindingHolds(pub: Public, s: Sensitive): boolean {
  try {
    const p = pub.parameters;
    if (p.type === ALG.RSA && 'rsa' in pub.unique) {
      const n = toBigInt(pub.unique.rsa);
      const prime = toBigInt(s.sensitive);
      return pub.unique.rsa.length * 8 === p.keyBits && prime > 1n && prime < n && n % prime === 0n;
    }
    if (p.type === ALG.ECC && 'ecc' in pub.unique) {
      const c = curve(p.curveID);
      if (s.sensitive.length !== c.bytes) return false;
      const k = eccFromScalar(c, s.sensitive);
      return k.x.equals(pub.unique.ecc.x) && k.y.equals(pub.unique.ecc.y);
    }
    if ('digest' in pub.unique) {
      if (p.type === ALG.SYMCIPHER && s.sensitive.length * 8 !== p.sym.keyBits) return false;
      return digest(pub.nameAlg, s.seedValue, s.sensitive).equals(pub.unique.digest);
    }
    return false;
  } catch {
    return false;
  }
}

/** The inner wrapper of a command: TPM_RC_SIZE + P1 for a key of the wrong size. */
function innerKeyCheck(sym: { algorithm: number; keyBits: number }, key: Buffer, mustMatch: boolean): void {
  if (sym.algorithm === ALG.NULL) {
    if (key.length !== 0) throw TpmError.parameter(RC.SIZE, 1);
  } else if ((mustMatch || key.length !== 0) && key.length !== sym.keyBits / 8) {
    throw TpmError.parameter(RC.SIZE, 1);
  }
}

function random(tpm: Tpm2Engine) {
  return (n: number) => tpm.random.bytes(n);
}

export const duplicationCommands = [
  command({
    cc: CC.Duplicate,
    name: 'Duplicate',
    handles: [
      { name: 'objectHandle', type: dhObject, auth: 'dup' },
      { name: 'newParentHandle', type: objectOrNull, auth: 'none' },
    ],
    params: { encryptionKeyIn: dataBuf, symmetricAlg: symDefObjectOrNull },
    response: { encryptionKeyOut: dataBuf, duplicate: privateBuf, outSymSeed: encryptedSecret },
    handler: ({ tpm, handles }, { encryptionKeyIn, symmetricAlg }) => {
      const [objectHandle, newParentHandle] = handles as [number, number];
      const o = objectAt(tpm, objectHandle, 1);
      const newParent = newParentHandle === RH.NULL ? undefined : objectAt(tpm, newParentHandle, 2);
      const a = o.public.objectAttributes;
      if (a & A.fixedParent) throw TpmError.handle(RC.ATTRIBUTES, 1);
      if (o.public.nameAlg === ALG.NULL) throw TpmError.handle(RC.TYPE, 1);
      const protector = newParent && isStorageKey(newParent) ? protectorOf(newParent.public) : undefined;
      if (newParent && !protector) throw TpmError.handle(RC.TYPE, 2);
      if (a & A.encryptedDuplication) {
        if (symmetricAlg.algorithm === ALG.NULL) throw TpmError.parameter(RC.SYMMETRIC, 2);
        if (!newParent) throw TpmError.handle(RC.HIERARCHY, 2);
      }
      innerKeyCheck(symmetricAlg, encryptionKeyIn, false);
      // A chip-resident key comes out of the chip (hardware-keys.ts) before anything here changes.
      const sensitive = o.sensitive ?? (o.hardware && backendOf(o.hardware).exportSensitive(o.hardware.outer, o.public));
      if (!sensitive) throw TpmError.handle(RC.HANDLE, 1);

      const shared = newParent ? makeSecret(newParent, 'DUPLICATE', random(tpm)) : undefined;
      let inner: InnerWrap | undefined;
      let encryptionKeyOut: Buffer = Buffer.alloc(0);
      if (symmetricAlg.algorithm !== ALG.NULL) {
        // A key the caller chose is not returned; one the TPM made is.
        const key = encryptionKeyIn.length ? encryptionKeyIn : tpm.random.bytes(symmetricAlg.keyBits / 8);
        if (!encryptionKeyIn.length) encryptionKeyOut = key;
        inner = { sym: symmetricAlg, key };
      }
      const duplicate = sensitiveToDuplicate(sensitive, o.name, o.public.nameAlg, shared && { protector: protector!, seed: shared.seed }, inner);
      return { encryptionKeyOut, duplicate, outSymSeed: shared?.encryptedSecret ?? Buffer.alloc(0) };
    },
  }),
  command({
    cc: CC.Import,
    name: 'Import',
    handles: [{ name: 'parentHandle', type: dhObject, auth: 'user' }],
    params: { encryptionKey: dataBuf, objectPublic: public2b, duplicate: privateBuf, inSymSeed: encryptedSecret, symmetricAlg: symDefObjectOrNull },
    response: { outPrivate: privateBuf },
    handler: ({ tpm, handles }, { encryptionKey, objectPublic, duplicate, inSymSeed, symmetricAlg }) => {
      const a = objectPublic.objectAttributes;
      if (a & (A.fixedTPM | A.fixedParent)) throw TpmError.parameter(RC.ATTRIBUTES, 2);
      const parent = objectAt(tpm, handles[0]!, 1);
      if (!isStorageParent(parent)) throw TpmError.handle(RC.TYPE, 1);
      innerKeyCheck(symmetricAlg, encryptionKey, true);
      if (symmetricAlg.algorithm === ALG.NULL && a & A.encryptedDuplication) throw TpmError.parameter(RC.ATTRIBUTES, 1);
      let outer: { protector: NonNullable<ReturnType<typeof protectorOf>>; seed: Buffer } | undefined;
      if (inSymSeed.length !== 0) {
        // Only an asymmetric parent can share a secret.
        const protector = parent.public.type === ALG.SYMCIPHER ? undefined : protectorOf(parent.public);
        if (!protector) throw TpmError.handle(RC.TYPE, 1);
        const seed = numbered((e) => atParameter(e.rc, 4), () => recoverSecret(parent, 'DUPLICATE', inSymSeed));
        outer = { protector, seed };
      } else if (a & A.encryptedDuplication) {
        throw TpmError.parameter(RC.ATTRIBUTES, 4);
      }
      const name = objectName(objectPublic, encode(publicArea, objectPublic));
      if (name.length === 0) throw TpmError.parameter(RC.HASH, 2);
      const inner = symmetricAlg.algorithm === ALG.NULL ? undefined : { sym: symmetricAlg, key: encryptionKey };
      const sensitive = numbered((e) => atParameter(e.rc, 3), () => duplicateToSensitive(duplicate, name, objectPublic.nameAlg, outer, inner));
      if (parent.public.objectAttributes & A.fixedTPM) {
        // Checked now as Load would, so that a blob for this TPM loads without surprises.
        if (sensitive.sensitiveType !== objectPublic.type) throw TpmError.parameter(RC.TYPE, 3);
        if (sensitive.authValue.length > digestSize(objectPublic.nameAlg)) throw TpmError.parameter(RC.SIZE, 3);
        if (!bindingHolds(objectPublic, sensitive)) throw TpmError.parameter(RC.BINDING, 3);
      }
      return { outPrivate: wrapSensitive(parent, name, sensitive) };
    },
  }),
];
