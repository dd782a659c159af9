/**
 * Duplicate and Import (Part 3, 13.1 and 13.3; Part 1, 23.3): the inner wrapper (caller's or TPM's
 * key, integrity by the object's nameAlg), the outer wrapper (seed shared with the new parent,
 * "DUPLICATE"), the encryptedDuplication rules, and blobs made or opened with node:crypto alone.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { ALG, CC, ECC_CURVE, RH } from '../../src/tpm/tpm2/constants.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { dataBuf } from '../../src/tpm/tpm2/types/basic.ts';
import { privateBuf } from '../../src/tpm/tpm2/types/creation.ts';
import { OBJECT_ATTR as A, public2b, sensitiveArea, type Public, type Sensitive } from '../../src/tpm/tpm2/types/public.ts';
import { encryptedSecret } from '../../src/tpm/tpm2/types/secret.ts';
import type { SymDef } from '../../src/tpm/tpm2/types/public-parms.ts';
import { Reader, Writer } from '../../src/tpm/wire/buffer.ts';
import { buildCommand, enc, params, pw, responseParams, tpm2b, u16b } from '../helpers/tpm2-commands.ts';
import { exec, fails, ok, startedEngine } from '../helpers/tpm2-engine.ts';
import {
  aesCfb,
  commandCodePolicy,
  create,
  createLoaded,
  createPrimary,
  eccStorage,
  externalRsa,
  flush,
  load,
  loadExternal,
  objectNameOf,
  outerUnwrap,
  outerWrap,
  policyAuth,
  policyCommandCode,
  recoverSecretOutside,
  rsaSigningKey,
  rsaStorage,
  sealedData,
  shareSecret,
  startPolicySession,
  type Loaded,
} from '../helpers/tpm2-objects.ts';

const RC = {
  AUTH_TYPE: 0x124,
  ATTRIBUTES_H1: 0x182,
  TYPE_H1: 0x18a,
  ATTRIBUTES_P1: 0x1c2,
  SIZE_P1: 0x1d5,
  HIERARCHY_H2: 0x285,
  TYPE_H2: 0x28a,
  ATTRIBUTES_P2: 0x2c2,
  SYMMETRIC_P2: 0x2d6,
  TYPE_P3: 0x3ca,
  INTEGRITY_P3: 0x3df,
  SIZE_P3: 0x3d5,
  INSUFFICIENT_P3: 0x3da,
  BINDING_P3: 0x3e5,
  ATTRIBUTES_P4: 0x4c2,
  VALUE_P4: 0x4c4,
};

const SEALED = Buffer.from('a secret that moves between parents');
const DUP_POLICY = commandCodePolicy(CC.Duplicate);
const AES128: SymDef = { algorithm: ALG.AES, keyBits: 128, mode: ALG.CFB };
const NULL_SYM: SymDef = { algorithm: ALG.NULL, keyBits: 0, mode: ALG.NULL };
type Sym = SymDef;

const symDef = (s: Sym) => (s.algorithm === ALG.NULL ? u16b(ALG.NULL) : params(u16b(s.algorithm), u16b(s.keyBits), u16b(s.mode)));

/** A sealed object that may be duplicated under policy PolicyCommandCode(Duplicate). */
function duplicable(extra = 0): Public {
  return sealedData(A.userWithAuth | A.noDA | extra, DUP_POLICY);
}

function duplicateCommand(tpm: Tpm2Engine, object: number, newParent: number, encryptionKeyIn: Buffer, sym: Sym): Buffer {
  const s = startPolicySession(tpm);
  policyCommandCode(tpm, s, CC.Duplicate);
  return buildCommand({ cc: CC.Duplicate, handles: [object, newParent], sessions: [policyAuth(s)], params: params(tpm2b(encryptionKeyIn), symDef(sym)) });
}

function duplicate(tpm: Tpm2Engine, object: number, newParent: number, encryptionKeyIn: Buffer, sym: Sym) {
  return responseParams(ok(tpm, duplicateCommand(tpm, object, newParent, encryptionKeyIn, sym)), {
    encryptionKeyOut: dataBuf,
    duplicate: privateBuf,
    outSymSeed: encryptedSecret,
  });
}

const importCommand = (parent: number, encryptionKey: Buffer, objectPublic: Public, dup: Buffer, inSymSeed: Buffer, sym: Sym) =>
  buildCommand({
    cc: CC.Import,
    handles: [parent],
    sessions: [pw('')],
    params: params(tpm2b(encryptionKey), enc(public2b, objectPublic), tpm2b(dup), tpm2b(inSymSeed), symDef(sym)),
  });

function importBlob(tpm: Tpm2Engine, parent: number, encryptionKey: Buffer, objectPublic: Public, dup: Buffer, inSymSeed: Buffer, sym: Sym): Buffer {
  return responseParams(ok(tpm, importCommand(parent, encryptionKey, objectPublic, dup, inSymSeed, sym)), { outPrivate: privateBuf }).outPrivate;
}

function unseal(tpm: Tpm2Engine, h: number, password: string): Buffer {
  return ok(tpm, buildCommand({ cc: CC.Unseal, handles: [h], sessions: [pw(password)] })).params.subarray(2);
}

/** TPM2B_SENSITIVE as the wire carries it. */
function sensitive2bBytes(s: Sensitive): Buffer {
  const w = new Writer(128);
  const at = w.reserveU16();
  sensitiveArea.encode(w, s);
  w.patchU16(at, w.length - 2);
  return Buffer.from(w.finish());
}

function sha256(...parts: Buffer[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** srk (fixedTPM), a second storage key as the new parent, and a duplicable sealed object under srk. */
function setup(tpm: Tpm2Engine, parentTemplate: Public = rsaStorage(1024), objectAttrs = 0) {
  const srk = createPrimary(tpm, rsaStorage(1024));
  const newParent = createLoaded(tpm, srk.handle, parentTemplate);
  const made = create(tpm, srk.handle, duplicable(objectAttrs), { userAuth: 'pw', data: SEALED });
  const object = load(tpm, srk.handle, made.priv, made.pub);
  return { srk, newParent, object };
}

/** Imports a blob under `parent`, loads it there (one slot freed first) and unseals it. */
function importAndUnseal(tpm: Tpm2Engine, parent: Loaded, free: number, pub: Public, blob: { dup: Buffer; seed: Buffer; key: Buffer; sym: Sym }): Buffer {
  const priv = importBlob(tpm, parent.handle, blob.key, pub, blob.dup, blob.seed, blob.sym);
  flush(tpm, free);
  const loaded = load(tpm, parent.handle, priv, pub);
  return unseal(tpm, loaded.handle, 'pw');
}

describe('TPM2_Duplicate and TPM2_Import', () => {
  for (const [label, parentTemplate] of [
    ['RSA new parent', () => rsaStorage(1024)],
    ['ECC new parent', () => eccStorage(ECC_CURVE.NIST_P256)],
  ] as const) {
    test(`${label}: inner wrapper with a TPM-made key and outer wrapper; Import then Load gives the object back`, () => {
      const tpm = startedEngine();
      const { newParent, object } = setup(tpm, parentTemplate());
      const out = duplicate(tpm, object.handle, newParent.handle, Buffer.alloc(0), AES128);
      assert.equal(out.encryptionKeyOut.length, 16, 'the TPM made the inner key and returns it');
      assert.ok(out.outSymSeed.length > 0);
      const data = importAndUnseal(tpm, newParent, object.handle, object.pub, { dup: out.duplicate, seed: out.outSymSeed, key: out.encryptionKeyOut, sym: AES128 });
      assert.deepEqual(data, SEALED);
    });
  }

  test('with the caller inner key: encryptionKeyOut is empty and the same key imports', () => {
    const tpm = startedEngine();
    const { newParent, object } = setup(tpm);
    const key = Buffer.alloc(16, 0xab);
    const out = duplicate(tpm, object.handle, newParent.handle, key, AES128);
    assert.equal(out.encryptionKeyOut.length, 0);
    assert.deepEqual(importAndUnseal(tpm, newParent, object.handle, object.pub, { dup: out.duplicate, seed: out.outSymSeed, key, sym: AES128 }), SEALED);
  });

  test('with neither wrapper (new parent NULL, no inner): the blob is the plain TPM2B_SENSITIVE, authValue padded to the digest', () => {
    const tpm = startedEngine();
    const { object } = setup(tpm);
    const out = duplicate(tpm, object.handle, RH.NULL, Buffer.alloc(0), NULL_SYM);
    assert.equal(out.outSymSeed.length, 0);
    assert.equal(out.encryptionKeyOut.length, 0);
    assert.equal(out.duplicate.readUInt16BE(0), out.duplicate.length - 2);
    const s = sensitiveArea.decode(new Reader(out.duplicate.subarray(2)));
    assert.equal(s.sensitiveType, ALG.KEYEDHASH);
    assert.deepEqual(s.sensitive, SEALED);
    assert.deepEqual(s.authValue, Buffer.concat([Buffer.from('pw'), Buffer.alloc(30)]));
    assert.deepEqual(sha256(s.seedValue, s.sensitive), (object.pub.unique as { digest: Buffer }).digest);
  });

  test('the inner wrapper opens outside: AES-CFB, then TPM2B(H(TPM2B_SENSITIVE || Name)) || TPM2B_SENSITIVE', () => {
    const tpm = startedEngine();
    const { object } = setup(tpm);
    const key = Buffer.alloc(16, 0x5c);
    const out = duplicate(tpm, object.handle, RH.NULL, key, AES128);
    const plain = aesCfb(key, out.duplicate, true);
    assert.equal(plain.readUInt16BE(0), 32);
    const integrity = plain.subarray(2, 34);
    const sens = plain.subarray(34);
    assert.deepEqual(integrity, sha256(sens, object.name));
    assert.equal(sens.readUInt16BE(0), sens.length - 2);
  });

  test('the outer wrapper opens outside: OAEP "DUPLICATE" seed to the new parent, KDFa STORAGE/INTEGRITY with the object Name', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, rsaStorage(1024));
    const made = create(tpm, srk.handle, duplicable(), { userAuth: 'pw', data: SEALED });
    const object = load(tpm, srk.handle, made.priv, made.pub);
    const ext = externalRsa(A.restricted | A.decrypt | A.userWithAuth, { symmetric: AES128 });
    const np = loadExternal(tpm, ext.pub);
    const out = duplicate(tpm, object.handle, np.handle, Buffer.alloc(0), NULL_SYM);
    const seed = recoverSecretOutside(ext, 'DUPLICATE', out.outSymSeed);
    const sens = outerUnwrap(ALG.SHA256, 128, seed, object.name, out.duplicate);
    const s = sensitiveArea.decode(new Reader(sens.subarray(2)));
    assert.deepEqual(s.sensitive, SEALED);
  });

  test('a blob made outside (both wrappers, seed shared with the parent) imports and loads', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, rsaStorage(1024));
    const parent = createLoaded(tpm, srk.handle, eccStorage());
    // An object made outside the TPM: a sealed secret with its obfuscation value.
    const seedValue = Buffer.alloc(32, 0x11);
    const pub: Public = { ...duplicable(A.encryptedDuplication), unique: { digest: sha256(seedValue, SEALED) } };
    const sens = sensitive2bBytes({ sensitiveType: ALG.KEYEDHASH, authValue: Buffer.from('pw'), seedValue, sensitive: SEALED });
    const name = objectNameOf(pub);
    const innerKey = Buffer.alloc(16, 0x77);
    const inner = aesCfb(innerKey, Buffer.concat([u16b(32), sha256(sens, name), sens]), false);
    const { seed, secret } = shareSecret(parent.pub, 'DUPLICATE');
    const dup = outerWrap(ALG.SHA256, 128, seed, name, inner);
    const priv = importBlob(tpm, parent.handle, innerKey, pub, dup, secret, AES128);
    const loaded = load(tpm, parent.handle, priv, pub);
    assert.deepEqual(loaded.name, name);
    assert.deepEqual(unseal(tpm, loaded.handle, 'pw'), SEALED);
  });

  test('Duplicate needs a policy session (DUP role): a password is TPM_RC_AUTH_TYPE', () => {
    const tpm = startedEngine();
    const { newParent, object } = setup(tpm);
    const cmd = buildCommand({ cc: CC.Duplicate, handles: [object.handle, newParent.handle], sessions: [pw('pw')], params: params(tpm2b(''), symDef(NULL_SYM)) });
    fails(tpm, cmd, RC.AUTH_TYPE);
  });

  test('an object with fixedParent is TPM_RC_ATTRIBUTES + H1 (0x182)', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, rsaStorage(1024));
    const fixed = createLoaded(tpm, srk.handle, sealedData(A.fixedTPM | A.fixedParent | A.userWithAuth | A.noDA, DUP_POLICY), { data: SEALED });
    fails(tpm, duplicateCommand(tpm, fixed.handle, RH.NULL, Buffer.alloc(0), NULL_SYM), RC.ATTRIBUTES_H1);
  });

  test('a new parent that is not a storage key is TPM_RC_TYPE + H2 (0x28A)', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, rsaStorage(1024));
    const signer = createLoaded(tpm, srk.handle, rsaSigningKey());
    const made = create(tpm, srk.handle, duplicable(), { data: SEALED });
    const object = load(tpm, srk.handle, made.priv, made.pub);
    fails(tpm, duplicateCommand(tpm, object.handle, signer.handle, Buffer.alloc(0), NULL_SYM), RC.TYPE_H2);
  });

  test('encryptedDuplication: no inner wrapper is TPM_RC_SYMMETRIC + P2 (0x2D6); new parent NULL TPM_RC_HIERARCHY + H2 (0x285)', () => {
    const tpm = startedEngine();
    const { newParent, object } = setup(tpm, rsaStorage(1024), A.encryptedDuplication);
    fails(tpm, duplicateCommand(tpm, object.handle, newParent.handle, Buffer.alloc(0), NULL_SYM), RC.SYMMETRIC_P2);
    fails(tpm, duplicateCommand(tpm, object.handle, RH.NULL, Buffer.alloc(0), AES128), RC.HIERARCHY_H2);
    const out = duplicate(tpm, object.handle, newParent.handle, Buffer.alloc(0), AES128);
    assert.equal(out.encryptionKeyOut.length, 16);
  });

  test('an inner key of the wrong size, or one without an inner wrapper, is TPM_RC_SIZE + P1 (0x1D5)', () => {
    const tpm = startedEngine();
    const { newParent, object } = setup(tpm);
    fails(tpm, duplicateCommand(tpm, object.handle, newParent.handle, Buffer.alloc(15), AES128), RC.SIZE_P1);
    fails(tpm, duplicateCommand(tpm, object.handle, newParent.handle, Buffer.alloc(16), NULL_SYM), RC.SIZE_P1);
  });

  describe('Import checks', () => {
    function blobFor(tpm: Tpm2Engine) {
      const { srk, newParent, object } = setup(tpm);
      const out = duplicate(tpm, object.handle, newParent.handle, Buffer.alloc(0), AES128);
      return { srk, newParent, object, out };
    }

    test('an objectPublic with fixedTPM or fixedParent is TPM_RC_ATTRIBUTES + P2 (0x2C2)', () => {
      const tpm = startedEngine();
      const { newParent, object, out } = blobFor(tpm);
      const pub = { ...object.pub, objectAttributes: object.pub.objectAttributes | A.fixedParent };
      fails(tpm, importCommand(newParent.handle, out.encryptionKeyOut, pub, out.duplicate, out.outSymSeed, AES128), RC.ATTRIBUTES_P2);
    });

    test('a parent that is not a storage key is TPM_RC_TYPE + H1 (0x18A)', () => {
      const tpm = startedEngine();
      const { srk, object, out } = blobFor(tpm);
      flush(tpm, object.handle);
      const signer = createLoaded(tpm, srk.handle, rsaSigningKey());
      fails(tpm, importCommand(signer.handle, out.encryptionKeyOut, object.pub, out.duplicate, out.outSymSeed, AES128), RC.TYPE_H1);
    });

    test('encryptionKey must match symmetricAlg: TPM_RC_SIZE + P1 (0x1D5)', () => {
      const tpm = startedEngine();
      const { newParent, object, out } = blobFor(tpm);
      fails(tpm, importCommand(newParent.handle, Buffer.alloc(0), object.pub, out.duplicate, out.outSymSeed, AES128), RC.SIZE_P1);
      fails(tpm, importCommand(newParent.handle, out.encryptionKeyOut, object.pub, out.duplicate, out.outSymSeed, NULL_SYM), RC.SIZE_P1);
    });

    test('encryptedDuplication without an inner wrapper is TPM_RC_ATTRIBUTES + P1; without an outer one + P4', () => {
      const tpm = startedEngine();
      const { newParent, object, out } = blobFor(tpm);
      const pub = { ...object.pub, objectAttributes: object.pub.objectAttributes | A.encryptedDuplication };
      fails(tpm, importCommand(newParent.handle, Buffer.alloc(0), pub, out.duplicate, out.outSymSeed, NULL_SYM), RC.ATTRIBUTES_P1);
      fails(tpm, importCommand(newParent.handle, out.encryptionKeyOut, pub, out.duplicate, Buffer.alloc(0), AES128), RC.ATTRIBUTES_P4);
    });

    test('a changed blob or a changed public area is TPM_RC_INTEGRITY + P3 (0x3DF); a wrong inner key fails the inner integrity', () => {
      const tpm = startedEngine();
      const { newParent, object, out } = blobFor(tpm);
      const flipped = Buffer.from(out.duplicate);
      flipped[flipped.length - 3]! ^= 0x40;
      fails(tpm, importCommand(newParent.handle, out.encryptionKeyOut, object.pub, flipped, out.outSymSeed, AES128), RC.INTEGRITY_P3);
      const other = { ...object.pub, objectAttributes: object.pub.objectAttributes | A.stClear };
      fails(tpm, importCommand(newParent.handle, out.encryptionKeyOut, other, out.duplicate, out.outSymSeed, AES128), RC.INTEGRITY_P3);
      // Decrypted with the wrong key, the inner integrity field is noise: it fails to unmarshal
      // (TPM_RC_SIZE/INSUFFICIENT) or to match (TPM_RC_INTEGRITY), numbered for the duplicate.
      const r = exec(tpm, importCommand(newParent.handle, Buffer.alloc(16, 1), object.pub, out.duplicate, out.outSymSeed, AES128));
      assert.ok([RC.INTEGRITY_P3, RC.SIZE_P3, RC.INSUFFICIENT_P3].includes(r.rc), `0x${r.rc.toString(16)}`);
    });

    test('an inSymSeed that does not decrypt with the parent is TPM_RC_VALUE + P4 (0x4C4)', () => {
      const tpm = startedEngine();
      const { newParent, object, out } = blobFor(tpm);
      const wrong = shareSecret(newParent.pub, 'SECRET').secret;
      fails(tpm, importCommand(newParent.handle, out.encryptionKeyOut, object.pub, out.duplicate, wrong, AES128), RC.VALUE_P4);
    });

    test('under a fixedTPM parent the sensitive area is checked as Load would: type (TPM_RC_TYPE + P3) and binding (TPM_RC_BINDING + P3)', () => {
      const tpm = startedEngine();
      const srk = createPrimary(tpm, rsaStorage(1024));
      const seedValue = Buffer.alloc(32, 0x22);
      const pub: Public = { ...duplicable(), unique: { digest: sha256(seedValue, SEALED) } };
      const good = sensitive2bBytes({ sensitiveType: ALG.KEYEDHASH, authValue: Buffer.alloc(0), seedValue, sensitive: SEALED });
      importBlob(tpm, srk.handle, Buffer.alloc(0), pub, good, Buffer.alloc(0), NULL_SYM);
      const wrongType = sensitive2bBytes({ sensitiveType: ALG.SYMCIPHER, authValue: Buffer.alloc(0), seedValue, sensitive: Buffer.alloc(16) });
      fails(tpm, importCommand(srk.handle, Buffer.alloc(0), pub, wrongType, Buffer.alloc(0), NULL_SYM), RC.TYPE_P3);
      const unbound = sensitive2bBytes({ sensitiveType: ALG.KEYEDHASH, authValue: Buffer.alloc(0), seedValue, sensitive: Buffer.from('something else') });
      fails(tpm, importCommand(srk.handle, Buffer.alloc(0), pub, unbound, Buffer.alloc(0), NULL_SYM), RC.BINDING_P3);
      // A TPM2B_SENSITIVE whose size disagrees with the blob.
      fails(tpm, importCommand(srk.handle, Buffer.alloc(0), pub, Buffer.concat([good, Buffer.from([0])]), Buffer.alloc(0), NULL_SYM), RC.SIZE_P3);
    });
  });
});
