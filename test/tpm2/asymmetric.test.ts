/**
 * RSA_Encrypt, RSA_Decrypt, ECDH_KeyGen, ECDH_ZGen and ECC_Parameters (Part 3, 14), with results
 * checked against node:crypto: OAEP with labels, RSAES, raw RSA, and ECDH shared points.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, createECDH, privateDecrypt, publicEncrypt } from 'node:crypto';
import { p256 } from '@noble/curves/nist.js';
import { ALG, CC, ECC_CURVE } from '../../src/tpm/tpm2/constants.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { OBJECT_ATTR as A, rsaKeyBuf } from '../../src/tpm/tpm2/types/public.ts';
import { eccCurveDetail, eccPoint2b } from '../../src/tpm/tpm2/types/secret.ts';
import { buildCommand, enc, params, pw, responseParams, tpm2b, u16b } from '../helpers/tpm2-commands.ts';
import { fails, ok, startedEngine } from '../helpers/tpm2-engine.ts';
import {
  aesKey,
  createLoaded,
  createPrimary,
  eccKey,
  eccStorage,
  externalEcc,
  externalRsa,
  flush,
  loadExternal,
  rsaDecryptKey,
  rsaPublicKeyOf,
  rsaSigningKey,
  rsaStorage,
  type ExternalKey,
} from '../helpers/tpm2-objects.ts';

const RC = {
  VALUE: 0x084,
  SIZE: 0x095,
  ATTRIBUTES_H1: 0x182,
  SCHEME_H1: 0x192,
  KEY_H1: 0x19c,
  SIZE_P1: 0x1d5,
  CURVE_P1: 0x1e6,
  ECC_POINT_P1: 0x1e7,
  HASH_P2: 0x2c3,
  VALUE_P2: 0x2c4,
  SCHEME_P2: 0x2d2,
  VALUE_P3: 0x3c4,
};

type InScheme = { scheme: number; hashAlg?: number };
const scheme = (s: InScheme) => (s.scheme === ALG.OAEP ? params(u16b(s.scheme), u16b(s.hashAlg!)) : u16b(s.scheme));
const OAEP256 = { scheme: ALG.OAEP, hashAlg: ALG.SHA256 };
const RSAES = { scheme: ALG.RSAES };
const NULL = { scheme: ALG.NULL };

const rsaEncrypt = (h: number, message: Buffer, s: InScheme, label: Buffer | string = '') =>
  buildCommand({ cc: CC.RSA_Encrypt, handles: [h], params: params(tpm2b(message), scheme(s), tpm2b(label)) });
const rsaDecrypt = (h: number, cipher: Buffer, s: InScheme, label: Buffer | string = '') =>
  buildCommand({ cc: CC.RSA_Decrypt, handles: [h], sessions: [pw('')], params: params(tpm2b(cipher), scheme(s), tpm2b(label)) });

function encryptOut(tpm: Tpm2Engine, h: number, message: Buffer, s: InScheme, label: Buffer | string = ''): Buffer {
  return responseParams(ok(tpm, rsaEncrypt(h, message, s, label)), { outData: rsaKeyBuf }).outData;
}
function decryptOut(tpm: Tpm2Engine, h: number, cipher: Buffer, s: InScheme, label: Buffer | string = ''): Buffer {
  return responseParams(ok(tpm, rsaDecrypt(h, cipher, s, label)), { message: rsaKeyBuf }).message;
}

const LABEL = Buffer.from('vtpmd label\0');
const MESSAGE = Buffer.from('attack at dawn');

function bigOf(b: Buffer): bigint {
  return BigInt('0x' + (b.toString('hex') || '0'));
}
function modPow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  b %= m;
  for (; e > 0n; e >>= 1n, b = (b * b) % m) if (e & 1n) r = (r * b) % m;
  return r;
}

function externalDecryptKey(tpm: Tpm2Engine, opts: Parameters<typeof externalRsa>[1] = {}): { key: ExternalKey; handle: number } {
  const key = externalRsa(A.decrypt | A.userWithAuth, opts);
  return { key, handle: loadExternal(tpm, key.pub, key.sensitive).handle };
}

describe('TPM2_RSA_Encrypt and TPM2_RSA_Decrypt', () => {
  test('OAEP with a label: node:crypto decrypts what the TPM encrypts, and the TPM what node:crypto encrypts', () => {
    const tpm = startedEngine();
    const { key, handle } = externalDecryptKey(tpm);
    const c = encryptOut(tpm, handle, MESSAGE, OAEP256, LABEL);
    assert.equal(c.length, 128);
    assert.deepEqual(privateDecrypt({ key: key.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: LABEL }, c), MESSAGE);
    const c2 = publicEncrypt({ key: rsaPublicKeyOf(key.pub), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha384', oaepLabel: LABEL }, MESSAGE);
    assert.deepEqual(decryptOut(tpm, handle, c2, { scheme: ALG.OAEP, hashAlg: ALG.SHA384 }, LABEL), MESSAGE);
  });

  test('RSAES (PKCS #1 v1.5): both directions agree with node:crypto', () => {
    const tpm = startedEngine();
    const { key, handle } = externalDecryptKey(tpm);
    const c = encryptOut(tpm, handle, MESSAGE, RSAES);
    const em = privateDecrypt({ key: key.privateKey, padding: constants.RSA_NO_PADDING }, c);
    assert.equal(em[0], 0);
    assert.equal(em[1], 2);
    const sep = em.indexOf(0, 2);
    assert.ok(sep >= 10 && em.subarray(2, sep).every((b) => b !== 0));
    assert.deepEqual(em.subarray(sep + 1), MESSAGE);
    const c2 = publicEncrypt({ key: rsaPublicKeyOf(key.pub), padding: constants.RSA_PKCS1_PADDING }, MESSAGE);
    assert.deepEqual(decryptOut(tpm, handle, c2, RSAES), MESSAGE);
  });

  test('the NULL scheme is raw RSA: m^e mod n out, the whole modulus-sized block back', () => {
    const tpm = startedEngine();
    const { key, handle } = externalDecryptKey(tpm);
    const n = bigOf((key.pub.unique as { rsa: Buffer }).rsa);
    const c = encryptOut(tpm, handle, MESSAGE, NULL);
    assert.equal(c.toString('hex').padStart(256, '0'), modPow(bigOf(MESSAGE), 65537n, n).toString(16).padStart(256, '0'));
    const m = decryptOut(tpm, handle, c, NULL);
    assert.equal(m.length, 128);
    assert.deepEqual(m.subarray(128 - MESSAGE.length), MESSAGE);
    assert.ok(m.subarray(0, 128 - MESSAGE.length).every((b) => b === 0));
  });

  test('a NULL inScheme takes the key scheme; the same scheme is accepted; a different one is TPM_RC_SCHEME + P2 (0x2D2)', () => {
    const tpm = startedEngine();
    const { key, handle } = externalDecryptKey(tpm, { scheme: OAEP256 as { scheme: number; hashAlg: number } });
    const c = encryptOut(tpm, handle, MESSAGE, NULL, LABEL);
    assert.deepEqual(privateDecrypt({ key: key.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: LABEL }, c), MESSAGE);
    assert.deepEqual(decryptOut(tpm, handle, c, OAEP256, LABEL), MESSAGE);
    fails(tpm, rsaEncrypt(handle, MESSAGE, RSAES), RC.SCHEME_P2);
    fails(tpm, rsaDecrypt(handle, c, { scheme: ALG.OAEP, hashAlg: ALG.SHA1 }, LABEL), RC.SCHEME_P2);
  });

  test('a key made by the TPM (Create under a storage key) decrypts what it encrypted', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, rsaStorage(1024));
    const k = createLoaded(tpm, srk.handle, rsaDecryptKey(OAEP256 as { scheme: number; hashAlg: number }, 2048));
    const c = encryptOut(tpm, k.handle, MESSAGE, NULL, LABEL);
    assert.equal(c.length, 256);
    assert.deepEqual(decryptOut(tpm, k.handle, c, NULL, LABEL), MESSAGE);
  });

  test('a label without its terminating zero is TPM_RC_VALUE + P3 (0x3C4)', () => {
    const tpm = startedEngine();
    const { handle } = externalDecryptKey(tpm);
    fails(tpm, rsaEncrypt(handle, MESSAGE, OAEP256, 'no terminator'), RC.VALUE_P3);
    fails(tpm, rsaDecrypt(handle, Buffer.alloc(128, 1), OAEP256, 'no terminator'), RC.VALUE_P3);
  });

  test('a key that is not RSA is TPM_RC_KEY + H1; one without decrypt TPM_RC_ATTRIBUTES + H1; RSA_Decrypt refuses restricted keys', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, rsaStorage(1024));
    const ecc = createLoaded(tpm, srk.handle, eccKey());
    fails(tpm, rsaEncrypt(ecc.handle, MESSAGE, OAEP256), RC.KEY_H1);
    fails(tpm, rsaDecrypt(ecc.handle, Buffer.alloc(128), OAEP256), RC.KEY_H1);
    flush(tpm, ecc.handle);
    const signer = createLoaded(tpm, srk.handle, rsaSigningKey(false));
    fails(tpm, rsaEncrypt(signer.handle, MESSAGE, OAEP256), RC.ATTRIBUTES_H1);
    // A storage key may encrypt (its public part is public) but never decrypt for a caller.
    encryptOut(tpm, srk.handle, MESSAGE, OAEP256);
    fails(tpm, rsaDecrypt(srk.handle, Buffer.alloc(128), OAEP256), RC.ATTRIBUTES_H1);
  });

  test('RSA_Encrypt of too long a message is TPM_RC_VALUE; RSA_Decrypt of a bad block TPM_RC_VALUE, of a wrong-size one TPM_RC_SIZE', () => {
    const tpm = startedEngine();
    const { key, handle } = externalDecryptKey(tpm);
    fails(tpm, rsaEncrypt(handle, Buffer.alloc(128 - 2 * 32 - 1, 1), OAEP256), RC.VALUE);
    encryptOut(tpm, handle, Buffer.alloc(128 - 2 * 32 - 2, 1), OAEP256);
    fails(tpm, rsaEncrypt(handle, Buffer.alloc(128 - 10, 1), RSAES), RC.VALUE);
    fails(tpm, rsaEncrypt(handle, Buffer.alloc(128, 0xff), NULL), RC.VALUE);
    const c = publicEncrypt({ key: rsaPublicKeyOf(key.pub), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: LABEL }, MESSAGE);
    fails(tpm, rsaDecrypt(handle, c, OAEP256, 'other\0'), RC.VALUE);
    fails(tpm, rsaDecrypt(handle, c, RSAES), RC.VALUE);
    fails(tpm, rsaDecrypt(handle, c.subarray(1), OAEP256, LABEL), RC.SIZE);
    fails(tpm, rsaDecrypt(handle, Buffer.alloc(128, 0xff), OAEP256, LABEL), RC.SIZE);
  });

  test('inScheme RSASSA is TPM_RC_VALUE + P2; OAEP with an unimplemented hash TPM_RC_HASH + P2', () => {
    const tpm = startedEngine();
    const { handle } = externalDecryptKey(tpm);
    fails(tpm, buildCommand({ cc: CC.RSA_Encrypt, handles: [handle], params: params(tpm2b(MESSAGE), u16b(ALG.RSASSA), u16b(ALG.SHA256), tpm2b('')) }), RC.VALUE_P2);
    fails(tpm, rsaEncrypt(handle, MESSAGE, { scheme: ALG.OAEP, hashAlg: ALG.SM3_256 }), RC.HASH_P2);
  });
});

const ecdhKeyGen = (h: number) => buildCommand({ cc: CC.ECDH_KeyGen, handles: [h] });
const ecdhZGen = (h: number, point: Buffer) => buildCommand({ cc: CC.ECDH_ZGen, handles: [h], sessions: [pw('')], params: point });
const point2b = (x: Buffer, y: Buffer) => enc(eccPoint2b, { x, y });

function uncompressed(x: Buffer, y: Buffer): Buffer {
  return Buffer.concat([Buffer.from([4]), x, y]);
}

describe('TPM2_ECDH_KeyGen and TPM2_ECDH_ZGen', () => {
  test('ECDH_KeyGen: zPoint is the ephemeral scalar times the key point, as the key holder computes from pubPoint', () => {
    const tpm = startedEngine();
    const key = externalEcc(A.decrypt | A.userWithAuth);
    const h = loadExternal(tpm, key.pub).handle;
    const out = responseParams(ok(tpm, ecdhKeyGen(h)), { zPoint: eccPoint2b, pubPoint: eccPoint2b });
    const ecdh = createECDH('prime256v1');
    ecdh.setPrivateKey(key.sensitive.sensitive);
    const z = p256.Point.fromBytes(uncompressed(out.pubPoint.x, out.pubPoint.y)).multiply(BigInt('0x' + key.sensitive.sensitive.toString('hex')));
    assert.deepEqual(ecdh.computeSecret(uncompressed(out.pubPoint.x, out.pubPoint.y)), out.zPoint.x);
    assert.deepEqual(Buffer.from(z.toBytes(false)), uncompressed(out.zPoint.x, out.zPoint.y));
    // A fresh ephemeral key each time.
    assert.notDeepEqual(responseParams(ok(tpm, ecdhKeyGen(h)), { zPoint: eccPoint2b, pubPoint: eccPoint2b }).pubPoint, out.pubPoint);
  });

  test('ECDH_KeyGen with a key that is not ECC is TPM_RC_KEY + H1 (0x19C)', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, rsaStorage(1024));
    fails(tpm, ecdhKeyGen(srk.handle), RC.KEY_H1);
  });

  test('ECDH_ZGen: outPoint is the key scalar times inPoint, as the peer computes with its own scalar', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, eccStorage());
    for (const s of [{ scheme: ALG.NULL, hashAlg: ALG.NULL }, { scheme: ALG.ECDH, hashAlg: ALG.SHA256 }]) {
      const k = createLoaded(tpm, srk.handle, eccKey(A.decrypt, s));
      const q = (k.pub.unique as { ecc: { x: Buffer; y: Buffer } }).ecc;
      const peer = createECDH('prime256v1');
      peer.generateKeys();
      const pub = peer.getPublicKey();
      const out = responseParams(ok(tpm, ecdhZGen(k.handle, point2b(pub.subarray(1, 33), pub.subarray(33)))), { outPoint: eccPoint2b }).outPoint;
      assert.deepEqual(out.x, peer.computeSecret(uncompressed(q.x, q.y)));
      const expected = p256.Point.fromBytes(uncompressed(q.x, q.y)).multiply(BigInt('0x' + peer.getPrivateKey('hex')));
      assert.deepEqual(uncompressed(out.x, out.y), Buffer.from(expected.toBytes(false)));
      flush(tpm, k.handle);
    }
  });

  test('ECDH_ZGen: a point off the curve is TPM_RC_ECC_POINT + P1 (0x1E7); an empty one TPM_RC_SIZE + P1', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, eccStorage());
    const k = createLoaded(tpm, srk.handle, eccKey());
    fails(tpm, ecdhZGen(k.handle, point2b(Buffer.alloc(32, 1), Buffer.alloc(32, 2))), RC.ECC_POINT_P1);
    fails(tpm, ecdhZGen(k.handle, u16b(0)), RC.SIZE_P1);
  });

  test('ECDH_ZGen refuses restricted keys and keys without decrypt (TPM_RC_ATTRIBUTES + H1), ECDSA keys (TPM_RC_SCHEME + H1), RSA (TPM_RC_KEY + H1)', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, eccStorage());
    const peer = createECDH('prime256v1');
    peer.generateKeys();
    const pt = point2b(peer.getPublicKey().subarray(1, 33), peer.getPublicKey().subarray(33));
    fails(tpm, ecdhZGen(srk.handle, pt), RC.ATTRIBUTES_H1);
    const signer = createLoaded(tpm, srk.handle, eccKey(A.sign, { scheme: ALG.ECDSA, hashAlg: ALG.SHA256 }));
    fails(tpm, ecdhZGen(signer.handle, pt), RC.ATTRIBUTES_H1);
    flush(tpm, signer.handle);
    const both = externalEcc(A.decrypt | A.sign | A.userWithAuth, { scheme: { scheme: ALG.ECDSA, hashAlg: ALG.SHA256 } });
    const h = loadExternal(tpm, both.pub, both.sensitive).handle;
    fails(tpm, ecdhZGen(h, pt), RC.SCHEME_H1);
    flush(tpm, h);
    const rsa = externalRsa(A.decrypt | A.userWithAuth);
    fails(tpm, ecdhZGen(loadExternal(tpm, rsa.pub, rsa.sensitive).handle, pt), RC.KEY_H1);
  });

  test('a symmetric key is not an ECC key for ECDH_KeyGen either', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, eccStorage());
    const aes = createLoaded(tpm, srk.handle, aesKey());
    fails(tpm, ecdhKeyGen(aes.handle), RC.KEY_H1);
  });
});

describe('TPM2_ECC_Parameters', () => {
  test('NIST P-256 and P-384: the curve constants, KDF1_SP800_56A with the matching hash, cofactor 1', () => {
    const tpm = startedEngine();
    const p256Out = responseParams(ok(tpm, buildCommand({ cc: CC.ECC_Parameters, params: u16b(ECC_CURVE.NIST_P256) })), { parameters: eccCurveDetail }).parameters;
    assert.equal(p256Out.curveID, ECC_CURVE.NIST_P256);
    assert.equal(p256Out.keySize, 256);
    assert.deepEqual(p256Out.kdf, { scheme: ALG.KDF1_SP800_56A, hashAlg: ALG.SHA256 });
    assert.deepEqual(p256Out.sign, { scheme: ALG.NULL, hashAlg: ALG.NULL });
    assert.equal(p256Out.p.toString('hex'), 'ffffffff00000001000000000000000000000000ffffffffffffffffffffffff');
    assert.equal(p256Out.a.toString('hex'), 'ffffffff00000001000000000000000000000000fffffffffffffffffffffffc');
    assert.equal(p256Out.b.toString('hex'), '5ac635d8aa3a93e7b3ebbd55769886bc651d06b0cc53b0f63bce3c3e27d2604b');
    assert.equal(p256Out.gX.toString('hex'), '6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296');
    assert.equal(p256Out.gY.toString('hex'), '4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5');
    assert.equal(p256Out.n.toString('hex'), 'ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');
    assert.equal(p256Out.h.toString('hex'), '01');
    const p384Out = responseParams(ok(tpm, buildCommand({ cc: CC.ECC_Parameters, params: u16b(ECC_CURVE.NIST_P384) })), { parameters: eccCurveDetail }).parameters;
    assert.equal(p384Out.keySize, 384);
    assert.deepEqual(p384Out.kdf, { scheme: ALG.KDF1_SP800_56A, hashAlg: ALG.SHA384 });
    assert.equal(p384Out.p.length, 48);
    assert.equal(p384Out.gX.toString('hex').slice(0, 16), 'aa87ca22be8b0537');
  });

  test('an unimplemented curve is TPM_RC_CURVE + P1 (0x1E6)', () => {
    const tpm = startedEngine();
    for (const c of [ECC_CURVE.NIST_P521, ECC_CURVE.BN_P256, 0x7777]) {
      fails(tpm, buildCommand({ cc: CC.ECC_Parameters, params: u16b(c) }), RC.CURVE_P1);
    }
  });
});
