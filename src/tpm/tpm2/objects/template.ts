import { ALG } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import { OBJECT_ATTR as A, type Public } from '../types/public.ts';
import type { TpmObject } from './model.ts';

/**
 * Checks a template against the consistency rules of Part 1 (27) and Part 3 (Create): the
 * attribute combinations, the schemes and symmetric definitions restricted keys need, and what
 * sensitive data may come from the caller. Throws unnumbered codes; the caller numbers them.
 */
export function validateTemplate(pub: Public, opts: { parent?: TpmObject; dataSize?: number }): void {
  // dataSize is given at creation only: where secrets come from is a creation rule, not a load rule.
  const creating = opts.dataSize !== undefined;
  const dataSize = opts.dataSize ?? 0;
  const a = pub.objectAttributes;
  const has = (bit: number) => (a & bit) !== 0;
  if (pub.nameAlg === ALG.NULL) throw new TpmError(RC.HASH);
  if (has(A.fixedTPM) && !has(A.fixedParent)) throw new TpmError(RC.ATTRIBUTES);
  if (opts.parent && has(A.fixedTPM) && !(opts.parent.public.objectAttributes & A.fixedTPM)) throw new TpmError(RC.ATTRIBUTES);
  if (has(A.encryptedDuplication) && has(A.fixedParent)) throw new TpmError(RC.ATTRIBUTES);
  if (has(A.restricted) && has(A.sign) === has(A.decrypt)) throw new TpmError(RC.ATTRIBUTES);
  const p = pub.parameters;
  switch (p.type) {
    case ALG.RSA:
    case ALG.ECC: {
      if (dataSize > 0) throw new TpmError(RC.SIZE);
      if (creating && !has(A.sensitiveDataOrigin)) throw new TpmError(RC.ATTRIBUTES);
      const storage = has(A.restricted) && has(A.decrypt);
      if (storage) {
        if (p.symmetric.algorithm === ALG.NULL || p.symmetric.mode !== ALG.CFB) throw new TpmError(RC.SYMMETRIC);
        if (p.scheme.scheme !== ALG.NULL) throw new TpmError(RC.SCHEME);
      } else if (p.symmetric.algorithm !== ALG.NULL) {
        throw new TpmError(RC.SYMMETRIC);
      }
      if (has(A.restricted) && has(A.sign) && p.scheme.scheme === ALG.NULL) throw new TpmError(RC.SCHEME);
      if (has(A.sign) && has(A.decrypt) && p.scheme.scheme !== ALG.NULL) throw new TpmError(RC.SCHEME);
      if (p.type === ALG.ECC && p.kdf.scheme !== ALG.NULL) throw new TpmError(RC.KDF);
      if (p.type === ALG.RSA && p.exponent !== 0 && p.exponent !== 65537) throw new TpmError(RC.VALUE);
      if (p.type === ALG.RSA && p.scheme.scheme !== ALG.NULL) {
        const signing = p.scheme.scheme === ALG.RSASSA || p.scheme.scheme === ALG.RSAPSS;
        if (signing ? !has(A.sign) : !has(A.decrypt)) throw new TpmError(RC.SCHEME);
      }
      if (p.type === ALG.ECC && p.scheme.scheme !== ALG.NULL) {
        if (p.scheme.scheme === ALG.ECDSA ? !has(A.sign) : !has(A.decrypt)) throw new TpmError(RC.SCHEME);
      }
      return;
    }
    case ALG.KEYEDHASH: {
      const sealed = !has(A.sign) && !has(A.decrypt);
      if (has(A.restricted) && !has(A.sign)) throw new TpmError(RC.ATTRIBUTES);
      if (sealed) {
        if ((creating && has(A.sensitiveDataOrigin)) || p.scheme.scheme !== ALG.NULL) throw new TpmError(RC.ATTRIBUTES);
      } else {
        if (creating && has(A.sensitiveDataOrigin) && dataSize > 0) throw new TpmError(RC.ATTRIBUTES);
        if (creating && !has(A.sensitiveDataOrigin) && dataSize === 0) throw new TpmError(RC.SIZE);
        if (has(A.sign) && p.scheme.scheme === ALG.XOR) throw new TpmError(RC.SCHEME);
        if (has(A.decrypt) && p.scheme.scheme === ALG.HMAC) throw new TpmError(RC.SCHEME);
      }
      return;
    }
    case ALG.SYMCIPHER: {
      // sign SET lets an unrestricted symmetric key encrypt (EncryptDecrypt); a restricted one only decrypts.
      if (has(A.sign) && has(A.restricted)) throw new TpmError(RC.ATTRIBUTES);
      if (has(A.restricted) && p.sym.mode !== ALG.CFB) throw new TpmError(RC.MODE);
      if (creating && has(A.sensitiveDataOrigin) && dataSize > 0) throw new TpmError(RC.ATTRIBUTES);
      if (creating && !has(A.sensitiveDataOrigin) && dataSize !== p.sym.keyBits / 8) throw new TpmError(RC.SIZE);
      return;
    }
  }
}
