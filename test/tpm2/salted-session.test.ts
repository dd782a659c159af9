/**
 * Salted sessions (Part 1, 19.6.11 and 21; Part 3, 11.1): StartAuthSession with tpmKey = an RSA or
 * ECC decryption key decrypts encryptedSalt ("SECRET") and keys the session with
 * KDFa(authHash, bindAuth || salt, "ATH", nonceTPM, nonceCaller). Every salt, HMAC and cipher here
 * is computed with node:crypto alone.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createDecipheriv, createHash, createHmac } from 'node:crypto';
import { ALG, CC, ECC_CURVE, RH, SESSION_ATTR } from '../../src/tpm/tpm2/constants.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { OBJECT_ATTR as A, type Public } from '../../src/tpm/tpm2/types/public.ts';
import { buildCommand, params, tpm2b, u16b, u32b, type Response } from '../helpers/tpm2-commands.ts';
import { exec, fails, ok, startedEngine } from '../helpers/tpm2-engine.ts';
import {
  aesKey,
  createLoaded,
  createPrimary,
  eccPointBytes,
  eccStorage,
  externalRsa,
  kdfa,
  loadExternal,
  rsaDecryptKey,
  rsaSigningKey,
  rsaStorage,
  sealedData,
  shareSecret,
} from '../helpers/tpm2-objects.ts';

const RC = {
  ATTRIBUTES_H1: 0x182,
  HANDLE_H1: 0x18b,
  KEY_H1: 0x19c,
  VALUE_P2: 0x2c4,
  BAD_AUTH_S1: 0x9a2,
};

const AES128_CFB = params(u16b(ALG.AES), u16b(128), u16b(ALG.CFB));
const SEALED = Buffer.from('the disk key, sealed');
const PASSWORD = 'unseal-me';

interface Salted {
  handle: number;
  nonceTPM: Buffer;
  nonceCaller: Buffer;
  sessionKey: Buffer;
}

function startAuthSession(tpmKey: number, bind: number, encryptedSalt: Buffer, nonceCaller: Buffer, authHash: number = ALG.SHA256, sym: Buffer = AES128_CFB): Buffer {
  return buildCommand({
    cc: CC.StartAuthSession,
    handles: [tpmKey, bind],
    params: params(tpm2b(nonceCaller), tpm2b(encryptedSalt), Buffer.from([0]), sym, u16b(authHash)),
  });
}

/** Starts a session salted for `keyPub` (loaded at `tpmKey`); the session key is computed here. */
function saltedSession(tpm: Tpm2Engine, tpmKey: number, keyPub: Public, opts: { bind?: number; bindAuth?: Buffer; authHash?: number } = {}): Salted {
  const authHash = opts.authHash ?? ALG.SHA256;
  const hLen = createHash(authHash === ALG.SHA256 ? 'sha256' : authHash === ALG.SHA384 ? 'sha384' : 'sha1').digest().length;
  const nonceCaller = Buffer.alloc(hLen, 0x21);
  const { seed: salt, secret } = shareSecret(keyPub, 'SECRET');
  const r = ok(tpm, startAuthSession(tpmKey, opts.bind ?? RH.NULL, secret, nonceCaller, authHash));
  const rd = r.reader();
  const nonceTPM = Buffer.from(rd.bytes(rd.u16()));
  const sessionKey = kdfa(authHash, Buffer.concat([opts.bindAuth ?? Buffer.alloc(0), salt]), 'ATH', nonceTPM, nonceCaller, hLen * 8);
  return { handle: r.handle!, nonceTPM, nonceCaller, sessionKey };
}

const ATTRS = SESSION_ATTR.continueSession | SESSION_ATTR.encrypt;

/** Unseal through the session, with response encryption; checks the response HMAC and returns the data. */
function unsealWith(tpm: Tpm2Engine, s: Salted, item: { handle: number; name: Buffer }, authValue: string, keyOverride?: Buffer): Response {
  const nonceCaller = Buffer.alloc(32, 0x33);
  const key = Buffer.concat([keyOverride ?? s.sessionKey, Buffer.from(authValue)]);
  const cpHash = createHash('sha256').update(u32b(CC.Unseal)).update(item.name).digest();
  const hmac = createHmac('sha256', key).update(cpHash).update(nonceCaller).update(s.nonceTPM).update(Buffer.from([ATTRS])).digest();
  const r = exec(tpm, buildCommand({ cc: CC.Unseal, handles: [item.handle], sessions: [{ handle: s.handle, nonce: nonceCaller, attributes: ATTRS, password: hmac }] }));
  if (r.rc !== 0) return r;
  const reply = r.sessions[0]!;
  const rpHash = createHash('sha256').update(u32b(0)).update(u32b(CC.Unseal)).update(r.params).digest();
  const expected = createHmac('sha256', key).update(rpHash).update(reply.nonce).update(nonceCaller).update(Buffer.from([reply.attributes])).digest();
  assert.deepEqual(reply.hmac, expected, 'the response HMAC is keyed with the salted session key');
  s.nonceTPM = reply.nonce;
  // AES-CFB response encryption: key and IV from KDFa(sessionKey || authValue, "CFB", nonceTPM, nonceCaller).
  const bits = kdfa(ALG.SHA256, key, 'CFB', reply.nonce, nonceCaller, 256);
  const d = createDecipheriv('aes-128-cfb', bits.subarray(0, 16), bits.subarray(16, 32));
  const size = r.params.readUInt16BE(0);
  const plain = Buffer.concat([d.update(r.params.subarray(2, 2 + size)), d.final()]);
  return { ...r, params: plain };
}

function sealedUnder(tpm: Tpm2Engine, parent: number) {
  return createLoaded(tpm, parent, sealedData(), { userAuth: PASSWORD, data: SEALED });
}

describe('TPM2_StartAuthSession with a salt', () => {
  for (const [kind, template] of [
    ['RSA-1024 storage key', () => rsaStorage(1024)],
    ['RSA-2048 storage key', () => rsaStorage(2048)],
    ['ECC P-256 storage key', () => eccStorage(ECC_CURVE.NIST_P256)],
    ['ECC P-384 storage key (SHA-384 nameAlg)', () => eccStorage(ECC_CURVE.NIST_P384, ALG.SHA384)],
  ] as const) {
    test(`${kind}: the TPM derives the session key from the decrypted salt; Unseal through it, response encrypted`, () => {
      const tpm = startedEngine();
      const srk = createPrimary(tpm, template());
      const sealed = sealedUnder(tpm, srk.handle);
      const s = saltedSession(tpm, srk.handle, srk.pub);
      const r = unsealWith(tpm, s, sealed, PASSWORD);
      assert.equal(r.rc, 0);
      assert.deepEqual(r.params, SEALED);
      // The session continues with the rolled nonce.
      assert.deepEqual(unsealWith(tpm, s, sealed, PASSWORD).params, SEALED);
    });
  }

  test('an HMAC keyed without the salt fails: TPM_RC_BAD_AUTH + S1 (the salt is in the key)', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, rsaStorage(1024));
    const sealed = sealedUnder(tpm, srk.handle);
    const s = saltedSession(tpm, srk.handle, srk.pub);
    assert.equal(unsealWith(tpm, s, sealed, PASSWORD, Buffer.alloc(0)).rc, RC.BAD_AUTH_S1);
  });

  test('salted and bound: the session key is KDFa over bindAuth || salt', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, eccStorage());
    const sealed = sealedUnder(tpm, srk.handle);
    const s = saltedSession(tpm, srk.handle, srk.pub, { bind: sealed.handle, bindAuth: Buffer.from(PASSWORD) });
    // Bound to the object it authorizes: the HMAC key is the session key alone.
    const nonceCaller = Buffer.alloc(32, 0x44);
    const attrs = SESSION_ATTR.continueSession;
    const cpHash = createHash('sha256').update(u32b(CC.Unseal)).update(sealed.name).digest();
    const hmac = createHmac('sha256', s.sessionKey).update(cpHash).update(nonceCaller).update(s.nonceTPM).update(Buffer.from([attrs])).digest();
    const r = ok(tpm, buildCommand({ cc: CC.Unseal, handles: [sealed.handle], sessions: [{ handle: s.handle, nonce: nonceCaller, attributes: attrs, password: hmac }] }));
    assert.deepEqual(r.params.subarray(2), SEALED);
  });

  test('an RSA key whose scheme is OAEP with SHA-1 takes a salt made with SHA-1', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, rsaStorage(1024));
    const key = createLoaded(tpm, srk.handle, rsaDecryptKey({ scheme: ALG.OAEP, hashAlg: ALG.SHA1 }));
    const sealed = sealedUnder(tpm, srk.handle);
    // The salt: OAEP with SHA-1 and "SECRET\0"; at most a SHA-1 digest long.
    const withSha1 = { ...key.pub, nameAlg: ALG.SHA1 };
    const s = saltedSession(tpm, key.handle, withSha1);
    assert.deepEqual(unsealWith(tpm, s, sealed, PASSWORD).params, SEALED);
  });

  test('tpmKey that is not RSA or ECC (sealed data, a symmetric key) is TPM_RC_KEY + H1 (0x19C)', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, rsaStorage(1024));
    const sealed = sealedUnder(tpm, srk.handle);
    fails(tpm, startAuthSession(sealed.handle, RH.NULL, Buffer.alloc(32, 1), Buffer.alloc(16, 1)), RC.KEY_H1);
    const aes = createLoaded(tpm, srk.handle, aesKey());
    fails(tpm, startAuthSession(aes.handle, RH.NULL, Buffer.alloc(32, 1), Buffer.alloc(16, 1)), RC.KEY_H1);
  });

  test('an empty encryptedSalt with a tpmKey is TPM_RC_VALUE + P2 (0x2C4)', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, rsaStorage(1024));
    fails(tpm, startAuthSession(srk.handle, RH.NULL, Buffer.alloc(0), Buffer.alloc(16, 1)), RC.VALUE_P2);
  });

  test('a public-only tpmKey is TPM_RC_HANDLE + H1 (0x18B); one without decrypt TPM_RC_ATTRIBUTES + H1 (0x182)', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, rsaStorage(1024));
    const pubOnly = loadExternal(tpm, srk.pub);
    fails(tpm, startAuthSession(pubOnly.handle, RH.NULL, shareSecret(srk.pub, 'SECRET').secret, Buffer.alloc(16, 1)), RC.HANDLE_H1);
    const signer = createLoaded(tpm, srk.handle, rsaSigningKey());
    fails(tpm, startAuthSession(signer.handle, RH.NULL, shareSecret(signer.pub, 'SECRET').secret, Buffer.alloc(16, 1)), RC.ATTRIBUTES_H1);
  });

  test('a salt that does not decrypt is TPM_RC_VALUE + P2: wrong label, wrong size, too long, off-curve point, RSAES key', () => {
    const tpm = startedEngine();
    const rsa = createPrimary(tpm, rsaStorage(1024));
    const nonce = Buffer.alloc(16, 1);
    fails(tpm, startAuthSession(rsa.handle, RH.NULL, shareSecret(rsa.pub, 'IDENTITY').secret, nonce), RC.VALUE_P2);
    fails(tpm, startAuthSession(rsa.handle, RH.NULL, shareSecret(rsa.pub, 'SECRET').secret.subarray(1), nonce), RC.VALUE_P2);
    fails(tpm, startAuthSession(rsa.handle, RH.NULL, Buffer.alloc(128, 0xff), nonce), RC.VALUE_P2);
    // A salt longer than the nameAlg digest.
    fails(tpm, startAuthSession(rsa.handle, RH.NULL, shareSecret(rsa.pub, 'SECRET', Buffer.alloc(33, 7)).secret, nonce), RC.VALUE_P2);
    ok(tpm, buildCommand({ cc: CC.FlushContext, params: u32b(rsa.handle) }));
    const ecc = createPrimary(tpm, eccStorage());
    fails(tpm, startAuthSession(ecc.handle, RH.NULL, eccPointBytes(Buffer.alloc(32, 1), Buffer.alloc(32, 2)), nonce), RC.VALUE_P2);
    fails(tpm, startAuthSession(ecc.handle, RH.NULL, Buffer.from([0, 32, 1]), nonce), RC.VALUE_P2);
    // Secret sharing with RSA is OAEP only: a key whose scheme is RSAES cannot take a salt.
    const rsaes = externalRsa(A.decrypt | A.userWithAuth, { scheme: { scheme: ALG.RSAES, hashAlg: ALG.NULL } });
    const h = loadExternal(tpm, rsaes.pub, rsaes.sensitive).handle;
    fails(tpm, startAuthSession(h, RH.NULL, shareSecret(rsaes.pub, 'SECRET').secret, nonce), RC.VALUE_P2);
  });

  test('a salted session saved with ContextSave and loaded again keeps its key', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, rsaStorage(1024));
    const sealed = sealedUnder(tpm, srk.handle);
    const s = saltedSession(tpm, srk.handle, srk.pub);
    const saved = ok(tpm, buildCommand({ cc: CC.ContextSave, handles: [s.handle] }));
    const loaded = ok(tpm, buildCommand({ cc: CC.ContextLoad, params: saved.params }));
    assert.equal(loaded.handle, s.handle);
    assert.deepEqual(unsealWith(tpm, s, sealed, PASSWORD).params, SEALED);
  });
});
