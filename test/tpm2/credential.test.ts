/**
 * MakeCredential and ActivateCredential (Part 3, 12.5 and 12.6; Part 1, 24): the credential blob
 * is a TPM2B_ID_OBJECT { integrityHMAC, encIdentity } whose seed is shared with the EK ("IDENTITY"),
 * checked here against blobs made and opened with node:crypto alone.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ALG, CC, ECC_CURVE, RH } from '../../src/tpm/tpm2/constants.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { OBJECT_ATTR as A } from '../../src/tpm/tpm2/types/public.ts';
import { buildCommand, params, responseParams, tpm2b } from '../helpers/tpm2-commands.ts';
import { fails, ok, startedEngine } from '../helpers/tpm2-engine.ts';
import { digestBuf } from '../../src/tpm/tpm2/types/basic.ts';
import { encryptedSecret, idObject } from '../../src/tpm/tpm2/types/secret.ts';
import {
  createLoaded,
  createPrimary,
  eccPointBytes,
  eccStorage,
  externalEcc,
  externalRsa,
  loadExternal,
  outerUnwrap,
  outerWrap,
  recoverSecretOutside,
  rsaDecryptKey,
  rsaSigningKey,
  rsaStorage,
  sess,
  shareSecret,
  type Auth,
  type Loaded,
} from '../helpers/tpm2-objects.ts';

const RC = {
  VALUE: 0x084,
  TYPE_H1: 0x18a,
  SIZE_P1: 0x1d5,
  INTEGRITY_P1: 0x1df,
  AUTH_TYPE: 0x124,
  TYPE_H2: 0x28a,
  VALUE_P2: 0x2c4,
  SIZE_P2: 0x2d5,
  INSUFFICIENT_P2: 0x2da,
  ECC_POINT_P2: 0x2e7,
};

const makeCredential = (h: number, credential: Buffer, objectName: Buffer) =>
  buildCommand({ cc: CC.MakeCredential, handles: [h], params: params(tpm2b(credential), tpm2b(objectName)) });

const activateCredential = (activate: number, key: number, blob: Buffer, secret: Buffer, activateAuth: Auth = '', keyAuth: Auth = '') =>
  buildCommand({ cc: CC.ActivateCredential, handles: [activate, key], sessions: [sess(activateAuth), sess(keyAuth)], params: params(tpm2b(blob), tpm2b(secret)) });

function make(tpm: Tpm2Engine, h: number, credential: Buffer, name: Buffer): { blob: Buffer; secret: Buffer } {
  const out = responseParams(ok(tpm, makeCredential(h, credential, name)), { credentialBlob: idObject, secret: encryptedSecret });
  return { blob: out.credentialBlob, secret: out.secret };
}

function activate(tpm: Tpm2Engine, activateHandle: number, key: number, blob: Buffer, secret: Buffer): Buffer {
  return responseParams(ok(tpm, activateCredential(activateHandle, key, blob, secret)), { certInfo: digestBuf }).certInfo;
}

/** An EK-like key (restricted decrypt, AES-128-CFB) in the endorsement hierarchy and an AK under it. */
function ekAndAk(tpm: Tpm2Engine, kind: 'rsa' | 'ecc'): { ek: Loaded; ak: Loaded } {
  const ek = createPrimary(tpm, kind === 'rsa' ? rsaStorage(1024) : eccStorage(ECC_CURVE.NIST_P256), RH.ENDORSEMENT);
  const ak = createLoaded(tpm, ek.handle, rsaSigningKey());
  return { ek, ak };
}

const CREDENTIAL = Buffer.from('a credential from the privacy CA');

describe('TPM2_MakeCredential and TPM2_ActivateCredential', () => {
  for (const kind of ['rsa', 'ecc'] as const) {
    test(`${kind.toUpperCase()} EK: ActivateCredential recovers what MakeCredential protected for the AK's Name`, () => {
      const tpm = startedEngine();
      const { ek, ak } = ekAndAk(tpm, kind);
      const { blob, secret } = make(tpm, ek.handle, CREDENTIAL, ak.name);
      assert.deepEqual(activate(tpm, ak.handle, ek.handle, blob, secret), CREDENTIAL);
    });

    test(`${kind.toUpperCase()} EK: a credential made outside the TPM (seed shared with "IDENTITY", KDFa STORAGE/INTEGRITY) activates`, () => {
      const tpm = startedEngine();
      const { ek, ak } = ekAndAk(tpm, kind);
      const { seed, secret } = shareSecret(ek.pub, 'IDENTITY');
      const blob = outerWrap(ALG.SHA256, 128, seed, ak.name, Buffer.concat([Buffer.from([0, CREDENTIAL.length]), CREDENTIAL]));
      assert.deepEqual(activate(tpm, ak.handle, ek.handle, blob, secret), CREDENTIAL);
    });
  }

  test('RSA: the blob MakeCredential returns opens outside the TPM: OAEP(SHA-256, "IDENTITY\\0") seed, then the outer wrapper', () => {
    const tpm = startedEngine();
    const ek = externalRsa(A.restricted | A.decrypt | A.userWithAuth, { symmetric: { algorithm: ALG.AES, keyBits: 128, mode: ALG.CFB } });
    const h = loadExternal(tpm, ek.pub).handle;
    const name = Buffer.concat([Buffer.from([0, 0x0b]), Buffer.alloc(32, 0x42)]);
    const { blob, secret } = make(tpm, h, CREDENTIAL, name);
    assert.equal(secret.length, 128, 'an RSA-1024 OAEP block');
    const seed = recoverSecretOutside(ek, 'IDENTITY', secret);
    assert.equal(seed.length, 32, 'the seed is a nameAlg digest long');
    const plain = outerUnwrap(ALG.SHA256, 128, seed, name, blob);
    assert.equal(blob.length, 2 + 32 + 2 + CREDENTIAL.length);
    assert.deepEqual(plain, Buffer.concat([Buffer.from([0, CREDENTIAL.length]), CREDENTIAL]));
  });

  test('ECC: the secret is an ephemeral point; KDFe(SHA-256, Z, "IDENTITY", Qe.x, Qs.x) gives the seed that opens the blob', () => {
    const tpm = startedEngine();
    const ek = externalEcc(A.restricted | A.decrypt | A.userWithAuth, { symmetric: { algorithm: ALG.AES, keyBits: 128, mode: ALG.CFB } });
    const h = loadExternal(tpm, ek.pub).handle;
    const name = Buffer.concat([Buffer.from([0, 0x0b]), Buffer.alloc(32, 0x17)]);
    const { blob, secret } = make(tpm, h, CREDENTIAL, name);
    assert.equal(secret.length, 2 + 32 + 2 + 32, 'a marshaled P-256 point');
    const seed = recoverSecretOutside(ek, 'IDENTITY', secret);
    assert.deepEqual(outerUnwrap(ALG.SHA256, 128, seed, name, blob), Buffer.concat([Buffer.from([0, CREDENTIAL.length]), CREDENTIAL]));
  });

  test('MakeCredential needs only the public EK (LoadExternal, no private part) and gives a fresh seed each time', () => {
    const tpm = startedEngine();
    const { ek, ak } = ekAndAk(tpm, 'rsa');
    const pubOnly = loadExternal(tpm, ek.pub);
    const a = make(tpm, pubOnly.handle, CREDENTIAL, ak.name);
    const b = make(tpm, pubOnly.handle, CREDENTIAL, ak.name);
    assert.notDeepEqual(a.secret, b.secret);
    assert.deepEqual(activate(tpm, ak.handle, ek.handle, a.blob, a.secret), CREDENTIAL);
    assert.deepEqual(activate(tpm, ak.handle, ek.handle, b.blob, b.secret), CREDENTIAL);
  });

  test('MakeCredential with a key that is not a restricted decryption key is TPM_RC_TYPE + H1 (0x18A)', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, rsaStorage(1024));
    const decrypt = createLoaded(tpm, srk.handle, rsaDecryptKey());
    fails(tpm, makeCredential(decrypt.handle, CREDENTIAL, srk.name), RC.TYPE_H1);
    const signing = createLoaded(tpm, srk.handle, rsaSigningKey());
    fails(tpm, makeCredential(signing.handle, CREDENTIAL, srk.name), RC.TYPE_H1);
  });

  test('a credential longer than the EK nameAlg digest is TPM_RC_SIZE + P1 (0x1D5)', () => {
    const tpm = startedEngine();
    const { ek, ak } = ekAndAk(tpm, 'rsa');
    fails(tpm, makeCredential(ek.handle, Buffer.alloc(33, 1), ak.name), RC.SIZE_P1);
    make(tpm, ek.handle, Buffer.alloc(32, 1), ak.name);
  });

  test('a credential made for another Name fails the integrity check: TPM_RC_INTEGRITY + P1 (0x1DF)', () => {
    const tpm = startedEngine();
    const { ek, ak } = ekAndAk(tpm, 'rsa');
    const { blob, secret } = make(tpm, ek.handle, CREDENTIAL, ek.name);
    fails(tpm, activateCredential(ak.handle, ek.handle, blob, secret), RC.INTEGRITY_P1);
  });

  test('a changed credential blob is TPM_RC_INTEGRITY + P1; a truncated one TPM_RC_INTEGRITY or an unmarshaling code + P1', () => {
    const tpm = startedEngine();
    const { ek, ak } = ekAndAk(tpm, 'ecc');
    const { blob, secret } = make(tpm, ek.handle, CREDENTIAL, ak.name);
    const flipped = Buffer.from(blob);
    flipped[flipped.length - 1]! ^= 1;
    fails(tpm, activateCredential(ak.handle, ek.handle, flipped, secret), RC.INTEGRITY_P1);
    fails(tpm, activateCredential(ak.handle, ek.handle, blob.subarray(0, blob.length - 1), secret), RC.INTEGRITY_P1);
    // An integrity field claiming more bytes than there are.
    fails(tpm, activateCredential(ak.handle, ek.handle, Buffer.from([0, 40, 1, 2]), secret), 0x09a + 0x140);
  });

  test('RSA EK: a secret that is not OAEP with "IDENTITY" is TPM_RC_VALUE + P2; one not of the modulus size TPM_RC_SIZE + P2', () => {
    const tpm = startedEngine();
    const { ek, ak } = ekAndAk(tpm, 'rsa');
    const { blob, secret } = make(tpm, ek.handle, CREDENTIAL, ak.name);
    const other = shareSecret(ek.pub, 'SECRET');
    fails(tpm, activateCredential(ak.handle, ek.handle, blob, other.secret), RC.VALUE_P2);
    fails(tpm, activateCredential(ak.handle, ek.handle, blob, secret.subarray(1)), RC.SIZE_P2);
    fails(tpm, activateCredential(ak.handle, ek.handle, blob, Buffer.alloc(128, 0xff)), RC.SIZE_P2);
  });

  test('ECC EK: a secret point off the curve is TPM_RC_ECC_POINT + P2 (0x2E7); a short one TPM_RC_INSUFFICIENT + P2 (0x2DA)', () => {
    const tpm = startedEngine();
    const { ek, ak } = ekAndAk(tpm, 'ecc');
    const { blob, secret } = make(tpm, ek.handle, CREDENTIAL, ak.name);
    fails(tpm, activateCredential(ak.handle, ek.handle, blob, eccPointBytes(Buffer.alloc(32, 1), Buffer.alloc(32, 2))), RC.ECC_POINT_P2);
    fails(tpm, activateCredential(ak.handle, ek.handle, blob, secret.subarray(0, 40)), RC.INSUFFICIENT_P2);
  });

  test('ActivateCredential with a keyHandle that is not a restricted decryption key is TPM_RC_TYPE + H2 (0x28A)', () => {
    const tpm = startedEngine();
    const { ek, ak } = ekAndAk(tpm, 'rsa');
    const { blob, secret } = make(tpm, ek.handle, CREDENTIAL, ak.name);
    fails(tpm, activateCredential(ek.handle, ak.handle, blob, secret), RC.TYPE_H2);
  });

  test('the activate handle needs the ADMIN role: an object with adminWithPolicy refuses a password (TPM_RC_AUTH_TYPE)', () => {
    const tpm = startedEngine();
    const ek = createPrimary(tpm, rsaStorage(1024), RH.ENDORSEMENT);
    const template = rsaSigningKey();
    template.objectAttributes |= A.adminWithPolicy;
    template.authPolicy = Buffer.alloc(32, 3);
    const ak = createLoaded(tpm, ek.handle, template);
    const { blob, secret } = make(tpm, ek.handle, CREDENTIAL, ak.name);
    fails(tpm, activateCredential(ak.handle, ek.handle, blob, secret), RC.AUTH_TYPE);
  });
});
