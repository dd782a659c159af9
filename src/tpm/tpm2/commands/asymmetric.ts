import { curve, generateEcc, isOnCurve, multiply } from '../../crypto/ecc.ts';
import { fieldElement } from '../../crypto/ecdh.ts';
import { toBytes } from '../../crypto/bigint.ts';
import { belowModulus, oaepDecrypt, oaepEncode, pkcs1v15Decode, pkcs1v15Encode, rsaPrivateRaw, rsaPublicRaw } from '../../crypto/rsa-encrypt.ts';
import { ALG, CC, ECC_CURVE } from '../constants.ts';
import { command } from '../command.ts';
import { RC, TpmError } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { dataBuf } from '../types/basic.ts';
import { dhObject } from '../types/handles.ts';
import { eccCurve, type Scheme } from '../types/public-parms.ts';
import { OBJECT_ATTR as A, rsaKeyBuf, type EccPoint } from '../types/public.ts';
import { eccCurveDetail, eccPoint2b, rsaDecryptScheme, type EccCurveDetail } from '../types/secret.ts';
import { keysOf, type TpmObject } from '../objects/model.ts';
import { backendOf } from '../hardware-keys.ts';
import { objectAt } from './object.ts';

/** A loaded RSA key (TPM_RC_KEY + H1 otherwise) with its modulus. */
function rsaKey(tpm: Tpm2Engine, h: number): { key: TpmObject; n: Buffer } {
  const key = objectAt(tpm, h, 1);
  const pub = key.public;
  if (pub.type !== ALG.RSA || !('rsa' in pub.unique)) throw TpmError.handle(RC.KEY, 1);
  return { key, n: pub.unique.rsa };
}

/** A loaded ECC key (TPM_RC_KEY + H1 otherwise). */
function eccKey(tpm: Tpm2Engine, h: number): TpmObject {
  const key = objectAt(tpm, h, 1);
  if (key.public.type !== ALG.ECC || key.public.parameters.type !== ALG.ECC || !('ecc' in key.public.unique)) throw TpmError.handle(RC.KEY, 1);
  return key;
}

/** A label is empty or a string with its terminating zero (IsLabelProperlyFormatted). */
function checkLabel(label: Buffer, paramNumber: number): void {
  if (label.length !== 0 && label[label.length - 1] !== 0) throw TpmError.parameter(RC.VALUE, paramNumber);
}

/**
 * CryptRsaSelectScheme: the key's scheme when the caller's is NULL, the caller's when the key's is
 * NULL, either when they agree; TPM_RC_SCHEME + P2 when they differ.
 */
function selectScheme(key: TpmObject, inScheme: Scheme): Scheme {
  const p = key.public.parameters;
  const keyScheme = p.type === ALG.RSA ? p.scheme : inScheme;
  if (keyScheme.scheme === ALG.NULL) return inScheme;
  if (inScheme.scheme === ALG.NULL) return keyScheme;
  if (keyScheme.scheme === inScheme.scheme && keyScheme.hashAlg === inScheme.hashAlg) return inScheme;
  throw TpmError.parameter(RC.SCHEME, 2);
}

/** An ECC point given by a caller, on the key's curve, as exact-size coordinates; TPM_RC_ECC_POINT otherwise. */
function pointOnCurve(curveId: number, p: EccPoint): EccPoint {
  const c = curve(curveId);
  const x = fieldElement(c, p.x);
  const y = fieldElement(c, p.y);
  if (!x || !y || !isOnCurve(c, x, y)) throw new TpmError(RC.ECC_POINT);
  return { x, y };
}

/** TPMS_ALGORITHM_DETAIL_ECC of the implemented curves (KDF and signing scheme as the reference lists them). */
function curveDetail(curveId: number): EccCurveDetail {
  const c = curve(curveId);
  const k = c.noble.Point.CURVE();
  const param = (v: bigint) => toBytes(v, c.bytes);
  const kdfHash = curveId === ECC_CURVE.NIST_P384 ? ALG.SHA384 : ALG.SHA256;
  return {
    curveID: curveId,
    keySize: c.bytes * 8,
    kdf: { scheme: ALG.KDF1_SP800_56A, hashAlg: kdfHash },
    sign: { scheme: ALG.NULL, hashAlg: ALG.NULL },
    p: param(k.p),
    a: param(((k.a % k.p) + k.p) % k.p),
    b: param(k.b),
    gX: param(k.Gx),
    gY: param(k.Gy),
    n: param(k.n),
    h: toBytes(k.h, 1),
  };
}

export const asymmetricCommands = [
  command({
    cc: CC.RSA_Encrypt,
    name: 'RSA_Encrypt',
    handles: [{ name: 'keyHandle', type: dhObject, auth: 'none' }],
    params: { message: rsaKeyBuf, inScheme: rsaDecryptScheme, label: dataBuf },
    response: { outData: rsaKeyBuf },
    handler: ({ tpm, handles }, { message, inScheme, label }) => {
      const { key, n } = rsaKey(tpm, handles[0]!);
      if (!(key.public.objectAttributes & A.decrypt)) throw TpmError.handle(RC.ATTRIBUTES, 1);
      checkLabel(label, 3);
      const scheme = selectScheme(key, inScheme);
      const random = (k: number) => tpm.random.bytes(k);
      let block: Buffer | undefined;
      if (scheme.scheme === ALG.OAEP) {
        block = oaepEncode(scheme.hashAlg, label, message, n.length, random);
      } else if (scheme.scheme === ALG.RSAES) {
        block = pkcs1v15Encode(message, n.length, random);
      } else {
        // Raw RSA: the message as a number, which may carry extra leading zeros.
        let i = 0;
        while (i < message.length && message[i] === 0) i++;
        const m = message.subarray(i);
        if (m.length <= n.length) block = Buffer.concat([Buffer.alloc(n.length - m.length), m]);
      }
      const outData = block && rsaPublicRaw(keysOf(key).publicKey, n, block);
      if (!outData) throw new TpmError(RC.VALUE);
      return { outData };
    },
  }),
  command({
    cc: CC.RSA_Decrypt,
    name: 'RSA_Decrypt',
    handles: [{ name: 'keyHandle', type: dhObject, auth: 'user' }],
    params: { cipherText: rsaKeyBuf, inScheme: rsaDecryptScheme, label: dataBuf },
    response: { message: rsaKeyBuf },
    handler: ({ tpm, handles }, { cipherText, inScheme, label }) => {
      const { key, n } = rsaKey(tpm, handles[0]!);
      const a = key.public.objectAttributes;
      if (a & A.restricted || !(a & A.decrypt)) throw TpmError.handle(RC.ATTRIBUTES, 1);
      checkLabel(label, 3);
      const scheme = selectScheme(key, inScheme);
      if (cipherText.length !== n.length || !belowModulus(cipherText, n)) throw new TpmError(RC.SIZE);
      if (key.hardware) return { message: backendOf(key.hardware).rsaDecrypt(key.hardware.outer, key.public, scheme, label, cipherText) };
      const priv = keysOf(key).privateKey;
      if (!priv) throw TpmError.handle(RC.HANDLE, 1);
      let message: Buffer | undefined;
      if (scheme.scheme === ALG.OAEP) message = oaepDecrypt(priv, scheme.hashAlg, label, cipherText);
      else if (scheme.scheme === ALG.RSAES) message = pkcs1v15Decode(rsaPrivateRaw(priv, cipherText));
      else message = rsaPrivateRaw(priv, cipherText);
      if (!message) throw new TpmError(RC.VALUE);
      return { message };
    },
  }),
  command({
    cc: CC.ECDH_KeyGen,
    name: 'ECDH_KeyGen',
    handles: [{ name: 'keyHandle', type: dhObject, auth: 'none' }],
    params: {},
    response: { zPoint: eccPoint2b, pubPoint: eccPoint2b },
    handler: ({ tpm, handles }) => {
      const key = eccKey(tpm, handles[0]!);
      const p = key.public.parameters as { curveID: number };
      const c = curve(p.curveID);
      // A key whose point is not on its curve is a bad key.
      let q: EccPoint;
      try {
        q = pointOnCurve(p.curveID, (key.public.unique as { ecc: EccPoint }).ecc);
      } catch {
        throw TpmError.handle(RC.KEY, 1);
      }
      const e = generateEcc(c, (n) => tpm.random.bytes(n));
      return { zPoint: multiply(c, e.d, q.x, q.y), pubPoint: { x: e.x, y: e.y } };
    },
  }),
  command({
    cc: CC.ECDH_ZGen,
    name: 'ECDH_ZGen',
    handles: [{ name: 'keyHandle', type: dhObject, auth: 'user' }],
    params: { inPoint: eccPoint2b },
    response: { outPoint: eccPoint2b },
    handler: ({ tpm, handles }, { inPoint }) => {
      const key = eccKey(tpm, handles[0]!);
      const pub = key.public;
      const a = pub.objectAttributes;
      if (a & A.restricted || !(a & A.decrypt)) throw TpmError.handle(RC.ATTRIBUTES, 1);
      const p = pub.parameters as { curveID: number; scheme: Scheme };
      if (p.scheme.scheme !== ALG.ECDH && p.scheme.scheme !== ALG.NULL) throw TpmError.handle(RC.SCHEME, 1);
      if (!key.sensitive && !key.hardware) throw TpmError.handle(RC.HANDLE, 1);
      let point: EccPoint;
      try {
        point = pointOnCurve(p.curveID, inPoint);
      } catch (e) {
        if (e instanceof TpmError) throw TpmError.parameter(e.rc, 1);
        throw e;
      }
      if (key.hardware) return { outPoint: backendOf(key.hardware).ecdhZGen(key.hardware.outer, pub, point) };
      return { outPoint: multiply(curve(p.curveID), key.sensitive!.sensitive, point.x, point.y) };
    },
  }),
  command({
    cc: CC.ECC_Parameters,
    name: 'ECC_Parameters',
    handles: [],
    params: { curveID: eccCurve },
    response: { parameters: eccCurveDetail },
    handler: (_ctx, { curveID }) => ({ parameters: curveDetail(curveID) }),
  }),
];
