/**
 * Sign, VerifySignature, HMAC and HMAC sequences (HMAC_Start, SequenceUpdate, SequenceComplete),
 * each with the exact response code Part 3 gives. Every signature the TPM makes is checked with
 * node:crypto, and every signature it checks is made with node:crypto.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, generateKeyPairSync, sign as nodeSign, verify as nodeVerify } from 'node:crypto';
import { ALG, CC, ECC_CURVE, RH, ST } from '../../src/tpm/tpm2/constants.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { digestBuf, hashCheckTicket, type HashCheckTicket } from '../../src/tpm/tpm2/types/basic.ts';
import { OBJECT_ATTR as A } from '../../src/tpm/tpm2/types/public.ts';
import type { Scheme } from '../../src/tpm/tpm2/types/public-parms.ts';
import { tkVerified } from '../../src/tpm/tpm2/types/policy.ts';
import { sigScheme, signature, type Signature } from '../../src/tpm/tpm2/types/signature.ts';
import { decode } from '../../src/tpm/wire/codec.ts';
import {
  buildCommand,
  enc,
  eventSequenceComplete,
  hash,
  hashSequenceStart,
  params,
  parse,
  pw,
  responseParams,
  sequenceComplete,
  sequenceUpdate,
  tpm2b,
  u16b,
} from '../helpers/tpm2-commands.ts';
import { H, HMAC, fails, ok, startedEngine } from '../helpers/tpm2-engine.ts';
import { Tpm2Client, Tpm2CommandError } from '../../src/hwtpm/tpm2-client.ts';
import { srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import {
  EMPTY,
  NULL_SCHEME,
  RESTRICTED,
  SIGN,
  createPrimary,
  eccTemplate,
  externalPublic,
  flush,
  hmacTemplate,
  loadExternal,
  nodeKey,
  rsaKey,
  scheme,
  storageTemplate,
} from '../helpers/tpm2-keys.ts';

const RC = {
  SCHEME: 0x092,
  SIZE_P1: 0x1d5,
  SCHEME_P2: 0x2d2,
  TICKET_P3: 0x3e0,
  KEY_H1: 0x19c,
  TYPE_H1: 0x18a,
  ATTRIBUTES_H1: 0x182,
  VALUE_P2: 0x2c4,
  HASH_P2: 0x2c3,
  SIGNATURE_P2: 0x2db,
  MODE_H2: 0x289,
  BAD_AUTH_S1: 0x9a2,
  OBJECT_MEMORY: 0x902,
  REFERENCE_H0: 0x910,
  AUTH_UNAVAILABLE: 0x12f,
};

const NULL_TICKET: HashCheckTicket = { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: EMPTY };

function signCmd(key: number, digest: Buffer, inScheme: Scheme, ticket: HashCheckTicket = NULL_TICKET, auth = ''): Buffer {
  return buildCommand({
    cc: CC.Sign,
    handles: [key],
    sessions: [pw(auth)],
    params: params(tpm2b(digest), enc(sigScheme, inScheme), enc(hashCheckTicket, ticket)),
  });
}

function signOk(tpm: Tpm2Engine, key: number, digest: Buffer, inScheme: Scheme, ticket?: HashCheckTicket): Signature {
  return responseParams(ok(tpm, signCmd(key, digest, inScheme, ticket)), { signature }).signature;
}

function verifyCmd(key: number, digest: Buffer, sig: Signature | Buffer): Buffer {
  return buildCommand({ cc: CC.VerifySignature, handles: [key], params: params(tpm2b(digest), Buffer.isBuffer(sig) ? sig : enc(signature, sig)) });
}

function ecdsaBytes(sig: Signature): Buffer {
  assert.equal(sig.sigAlg, ALG.ECDSA);
  const s = sig as Extract<Signature, { r: Buffer }>;
  return Buffer.concat([s.r, s.s]);
}

function rsaBytes(sig: Signature, alg: number): Buffer {
  assert.equal(sig.sigAlg, alg);
  return (sig as Extract<Signature, { sig: Buffer }>).sig;
}

const MESSAGE = Buffer.from('attest to this, please');

// ---------------------------------------------------------------------------------------------

describe('TPM2_Sign', () => {
  test('an unrestricted ECC P-256 key signs a SHA-256 digest with ECDSA: (r, s) node:crypto verifies over the message', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(SIGN));
    const sig = signOk(tpm, key.handle, H(ALG.SHA256, MESSAGE), scheme(ALG.ECDSA));
    assert.equal(sig.sigAlg, ALG.ECDSA);
    assert.equal((sig as { hash: number }).hash, ALG.SHA256);
    assert.ok(nodeVerify('sha256', MESSAGE, { key: nodeKey(key.pub), dsaEncoding: 'ieee-p1363' }, ecdsaBytes(sig)));
  });

  test('a P-384 key signs SHA-384 and (truncating) SHA-512 digests with ECDSA', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(SIGN, NULL_SCHEME, ECC_CURVE.NIST_P384));
    for (const [alg, name] of [
      [ALG.SHA384, 'sha384'],
      [ALG.SHA512, 'sha512'],
    ] as const) {
      const sig = signOk(tpm, key.handle, H(alg, MESSAGE), scheme(ALG.ECDSA, alg));
      assert.equal((sig as { r: Buffer }).r.length, 48);
      assert.ok(nodeVerify(name, MESSAGE, { key: nodeKey(key.pub), dsaEncoding: 'ieee-p1363' }, ecdsaBytes(sig)), name);
    }
  });

  test('an RSA-2048 key signs with RSASSA-PKCS1-v1_5 and with RSA-PSS whose salt is the digest size', () => {
    const tpm = startedEngine();
    const key = rsaKey(tpm, SIGN);
    const pub = nodeKey(key.pub);
    const ssa = signOk(tpm, key.handle, H(ALG.SHA256, MESSAGE), scheme(ALG.RSASSA));
    assert.equal(rsaBytes(ssa, ALG.RSASSA).length, 256);
    assert.ok(nodeVerify('sha256', MESSAGE, pub, rsaBytes(ssa, ALG.RSASSA)));
    for (const [alg, name, saltLength] of [
      [ALG.SHA256, 'sha256', 32],
      [ALG.SHA384, 'sha384', 48],
      [ALG.SHA1, 'sha1', 20],
    ] as const) {
      const pss = signOk(tpm, key.handle, H(alg, MESSAGE), scheme(ALG.RSAPSS, alg));
      const opts = { key: pub, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength };
      assert.ok(nodeVerify(name, MESSAGE, opts, rsaBytes(pss, ALG.RSAPSS)), `${name}, salt ${saltLength}`);
      // The salt is exactly the digest size: a verifier insisting on another length refuses it.
      assert.ok(!nodeVerify(name, MESSAGE, { ...opts, saltLength: saltLength - 1 }, rsaBytes(pss, ALG.RSAPSS)));
    }
  });

  test('a keyed-hash key signs with HMAC: the signature is HMAC(key, digest)', () => {
    const tpm = startedEngine();
    const secret = Buffer.alloc(32, 0x5c);
    const key = createPrimary(tpm, hmacTemplate(A.fixedTPM | A.fixedParent | A.userWithAuth | A.sign), { data: secret });
    const d = H(ALG.SHA256, MESSAGE);
    const sig = signOk(tpm, key.handle, d, scheme(ALG.HMAC));
    assert.deepEqual(sig, { sigAlg: ALG.HMAC, hash: ALG.SHA256, digest: HMAC(ALG.SHA256, secret, d) });
  });

  test('with inScheme TPM_ALG_NULL the key signs with its own scheme', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(SIGN, scheme(ALG.ECDSA, ALG.SHA384)));
    const sig = signOk(tpm, key.handle, H(ALG.SHA384, MESSAGE), NULL_SCHEME);
    assert.equal((sig as { hash: number }).hash, ALG.SHA384);
    assert.ok(nodeVerify('sha384', MESSAGE, { key: nodeKey(key.pub), dsaEncoding: 'ieee-p1363' }, ecdsaBytes(sig)));
  });

  test('a key with a scheme refuses another scheme or hash: TPM_RC_SCHEME for parameter 2', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(SIGN, scheme(ALG.ECDSA, ALG.SHA256)));
    fails(tpm, signCmd(key.handle, H(ALG.SHA384, MESSAGE), scheme(ALG.ECDSA, ALG.SHA384)), RC.SCHEME_P2);
    fails(tpm, signCmd(key.handle, H(ALG.SHA256, MESSAGE), scheme(ALG.RSASSA)), RC.SCHEME_P2);
  });

  test('a key without a scheme and TPM_ALG_NULL input have no scheme: TPM_RC_SCHEME for parameter 2', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(SIGN));
    fails(tpm, signCmd(key.handle, H(ALG.SHA256, MESSAGE), NULL_SCHEME), RC.SCHEME_P2);
  });

  test('a scheme of another key type is TPM_RC_SCHEME (unnumbered, as CryptSign returns it)', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(SIGN));
    fails(tpm, signCmd(key.handle, H(ALG.SHA256, MESSAGE), scheme(ALG.RSAPSS)), RC.SCHEME);
    fails(tpm, signCmd(key.handle, H(ALG.SHA256, MESSAGE), scheme(ALG.HMAC)), RC.SCHEME);
  });

  test('an unimplemented scheme (ECDAA, SM2) fails to unmarshal: TPM_RC_SCHEME for parameter 2', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(SIGN));
    for (const s of [ALG.ECDAA, ALG.SM2, ALG.ECSCHNORR, ALG.OAEP]) {
      const cmd = buildCommand({
        cc: CC.Sign,
        handles: [key.handle],
        sessions: [pw('')],
        params: params(tpm2b(H(ALG.SHA256, MESSAGE)), u16b(s), u16b(ALG.SHA256), enc(hashCheckTicket, NULL_TICKET)),
      });
      fails(tpm, cmd, RC.SCHEME_P2);
    }
  });

  test('without a ticket the digest must be the size of the scheme hash: TPM_RC_SIZE for parameter 1', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(SIGN));
    fails(tpm, signCmd(key.handle, H(ALG.SHA1, MESSAGE), scheme(ALG.ECDSA)), RC.SIZE_P1);
    fails(tpm, signCmd(key.handle, EMPTY, scheme(ALG.ECDSA)), RC.SIZE_P1);
  });

  test('an object that is not a signing key is TPM_RC_KEY for handle 1', () => {
    const tpm = startedEngine();
    const storage = createPrimary(tpm, storageTemplate());
    fails(tpm, signCmd(storage.handle, H(ALG.SHA256, MESSAGE), scheme(ALG.ECDSA)), RC.KEY_H1);
  });

  test('a key loaded without its private part cannot sign: its authValue is unavailable (TPM_RC_AUTH_UNAVAILABLE)', () => {
    const tpm = startedEngine();
    const ext = loadExternal(tpm, externalPublic(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey));
    fails(tpm, signCmd(ext.handle, H(ALG.SHA256, MESSAGE), scheme(ALG.ECDSA)), RC.AUTH_UNAVAILABLE);
  });

  test('the key authorization is checked: a wrong password is TPM_RC_BAD_AUTH for session 1', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(SIGN | A.noDA), { auth: 'secret' });
    fails(tpm, signCmd(key.handle, H(ALG.SHA256, MESSAGE), scheme(ALG.ECDSA), NULL_TICKET, 'wrong'), RC.BAD_AUTH_S1);
    ok(tpm, signCmd(key.handle, H(ALG.SHA256, MESSAGE), scheme(ALG.ECDSA), NULL_TICKET, 'secret'));
  });

  describe('restricted keys', () => {
    test('a restricted key refuses a digest without a hash-check ticket: TPM_RC_TICKET for parameter 3', () => {
      const tpm = startedEngine();
      const key = createPrimary(tpm, eccTemplate(RESTRICTED, scheme(ALG.ECDSA)));
      fails(tpm, signCmd(key.handle, H(ALG.SHA256, MESSAGE), NULL_SCHEME), RC.TICKET_P3);
    });

    test('a restricted key signs a digest with the ticket TPM2_Hash made for it', () => {
      const tpm = startedEngine();
      const key = createPrimary(tpm, eccTemplate(RESTRICTED, scheme(ALG.ECDSA)));
      const h = parse.hash(ok(tpm, hash(MESSAGE, ALG.SHA256, RH.OWNER)));
      assert.equal(h.validation.hierarchy, RH.OWNER);
      const sig = signOk(tpm, key.handle, h.outHash, NULL_SCHEME, h.validation);
      assert.ok(nodeVerify('sha256', MESSAGE, { key: nodeKey(key.pub), dsaEncoding: 'ieee-p1363' }, ecdsaBytes(sig)));
    });

    test('a restricted key signs a digest with the ticket a hash sequence made', () => {
      const tpm = startedEngine();
      const key = createPrimary(tpm, eccTemplate(RESTRICTED, scheme(ALG.ECDSA)));
      const big = Buffer.alloc(3000, 0x41);
      const seq = ok(tpm, hashSequenceStart('', ALG.SHA256)).handle!;
      ok(tpm, sequenceUpdate(seq, big.subarray(0, 1024)));
      ok(tpm, sequenceUpdate(seq, big.subarray(1024, 2048)));
      const done = parse.sequenceComplete(ok(tpm, sequenceComplete(seq, big.subarray(2048), RH.ENDORSEMENT)));
      const sig = signOk(tpm, key.handle, done.result, NULL_SCHEME, done.validation);
      assert.ok(nodeVerify('sha256', big, { key: nodeKey(key.pub), dsaEncoding: 'ieee-p1363' }, ecdsaBytes(sig)));
    });

    test('a restricted key refuses to sign a digest of data that begins with TPM_GENERATED_VALUE: no ticket exists for it', () => {
      const tpm = startedEngine();
      const key = createPrimary(tpm, eccTemplate(RESTRICTED, scheme(ALG.ECDSA)));
      const forged = Buffer.concat([Buffer.from([0xff, 0x54, 0x43, 0x47]), Buffer.from('a fake TPMS_ATTEST')]);
      const h = parse.hash(ok(tpm, hash(forged, ALG.SHA256, RH.OWNER)));
      assert.equal(h.validation.hierarchy, RH.NULL, 'TPM2_Hash gives the NULL ticket');
      fails(tpm, signCmd(key.handle, h.outHash, NULL_SCHEME, h.validation), RC.TICKET_P3);
      // Nor will a ticket made for other data, or claimed for another hierarchy, do.
      const other = parse.hash(ok(tpm, hash(MESSAGE, ALG.SHA256, RH.OWNER)));
      fails(tpm, signCmd(key.handle, h.outHash, NULL_SCHEME, other.validation), RC.TICKET_P3);
      fails(tpm, signCmd(key.handle, other.outHash, NULL_SCHEME, { ...other.validation, hierarchy: RH.PLATFORM }), RC.TICKET_P3);
    });

    test('a ticket made with another hash does not fit the scheme hash: TPM_RC_TICKET for parameter 3', () => {
      const tpm = startedEngine();
      const key = createPrimary(tpm, eccTemplate(RESTRICTED, scheme(ALG.ECDSA)));
      const h = parse.hash(ok(tpm, hash(MESSAGE, ALG.SHA384, RH.OWNER)));
      fails(tpm, signCmd(key.handle, h.outHash, NULL_SCHEME, h.validation), RC.TICKET_P3);
    });

    test('an unrestricted key given a ticket checks it too', () => {
      const tpm = startedEngine();
      const key = createPrimary(tpm, eccTemplate(SIGN));
      const h = parse.hash(ok(tpm, hash(MESSAGE, ALG.SHA256, RH.OWNER)));
      ok(tpm, signCmd(key.handle, h.outHash, scheme(ALG.ECDSA), h.validation));
      fails(tpm, signCmd(key.handle, H(ALG.SHA256, 'other'), scheme(ALG.ECDSA), h.validation), RC.TICKET_P3);
    });
  });
});

describe('TPM2_VerifySignature', () => {
  test('a signature the TPM made verifies, and the ticket is HMAC(ownerProof, TPM_ST_VERIFIED || digest || keyName)', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(SIGN));
    const d = H(ALG.SHA256, MESSAGE);
    const sig = signOk(tpm, key.handle, d, scheme(ALG.ECDSA));
    const v = responseParams(ok(tpm, verifyCmd(key.handle, d, sig)), { validation: tkVerified }).validation;
    assert.equal(v.tag, ST.VERIFIED);
    assert.equal(v.hierarchy, RH.OWNER);
    assert.deepEqual(v.digest, HMAC(ALG.SHA256, tpm.nv.hierarchy.proofs.owner, u16b(ST.VERIFIED), d, key.name));
  });

  test('node:crypto signatures verify with external keys (ECDSA, RSASSA, RSA-PSS with any salt) and get the NULL ticket', () => {
    const tpm = startedEngine();
    const d = H(ALG.SHA256, MESSAGE);
    const nullTicket = { tag: ST.VERIFIED, hierarchy: RH.NULL, digest: EMPTY };
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const ecKey = loadExternal(tpm, externalPublic(ec.publicKey));
    const rs = nodeSign('sha256', MESSAGE, { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
    const ecSig: Signature = { sigAlg: ALG.ECDSA, hash: ALG.SHA256, r: rs.subarray(0, 32), s: rs.subarray(32) };
    assert.deepEqual(responseParams(ok(tpm, verifyCmd(ecKey.handle, d, ecSig)), { validation: tkVerified }).validation, nullTicket);
    flush(tpm, ecKey.handle);

    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const rsaExt = loadExternal(tpm, externalPublic(rsa.publicKey));
    const sigs: Signature[] = [{ sigAlg: ALG.RSASSA, hash: ALG.SHA256, sig: nodeSign('sha256', MESSAGE, rsa.privateKey) }];
    for (const saltLength of [0, 20, 32, constants.RSA_PSS_SALTLEN_MAX_SIGN]) {
      const sig = nodeSign('sha256', MESSAGE, { key: rsa.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength });
      sigs.push({ sigAlg: ALG.RSAPSS, hash: ALG.SHA256, sig });
    }
    for (const sig of sigs) {
      assert.deepEqual(responseParams(ok(tpm, verifyCmd(rsaExt.handle, d, sig)), { validation: tkVerified }).validation, nullTicket);
    }
  });

  test('ECDSA r and s are accepted without their leading zero bytes', () => {
    const tpm = startedEngine();
    const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const key = loadExternal(tpm, externalPublic(ec.publicKey));
    let sig: Buffer;
    do sig = nodeSign('sha256', MESSAGE, { key: ec.privateKey, dsaEncoding: 'ieee-p1363' });
    while (sig[0] !== 0 && sig[32] !== 0);
    const strip = (b: Buffer) => b.subarray(b.findIndex((x) => x !== 0));
    ok(tpm, verifyCmd(key.handle, H(ALG.SHA256, MESSAGE), { sigAlg: ALG.ECDSA, hash: ALG.SHA256, r: strip(sig.subarray(0, 32)), s: strip(sig.subarray(32)) }));
  });

  test('a signature over another digest, or a damaged one, is TPM_RC_SIGNATURE for parameter 2', () => {
    const tpm = startedEngine();
    const key = rsaKey(tpm, SIGN);
    const d = H(ALG.SHA256, MESSAGE);
    const ssa = signOk(tpm, key.handle, d, scheme(ALG.RSASSA));
    const pss = signOk(tpm, key.handle, d, scheme(ALG.RSAPSS));
    ok(tpm, verifyCmd(key.handle, d, ssa));
    ok(tpm, verifyCmd(key.handle, d, pss));
    fails(tpm, verifyCmd(key.handle, H(ALG.SHA256, 'other'), ssa), RC.SIGNATURE_P2);
    fails(tpm, verifyCmd(key.handle, H(ALG.SHA256, 'other'), pss), RC.SIGNATURE_P2);
    const bad = Buffer.from(rsaBytes(ssa, ALG.RSASSA));
    bad[100]! ^= 1;
    fails(tpm, verifyCmd(key.handle, d, { sigAlg: ALG.RSASSA, hash: ALG.SHA256, sig: bad }), RC.SIGNATURE_P2);
    // The RSASSA signature presented as RSA-PSS, or with another hash, does not verify either.
    fails(tpm, verifyCmd(key.handle, d, { sigAlg: ALG.RSAPSS, hash: ALG.SHA256, sig: rsaBytes(ssa, ALG.RSASSA) }), RC.SIGNATURE_P2);
    fails(tpm, verifyCmd(key.handle, d, { sigAlg: ALG.RSASSA, hash: ALG.SHA1, sig: rsaBytes(ssa, ALG.RSASSA) }), RC.SIGNATURE_P2);
  });

  test('a damaged ECDSA signature, or one with r = 0, is TPM_RC_SIGNATURE for parameter 2', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(SIGN));
    const d = H(ALG.SHA256, MESSAGE);
    const sig = signOk(tpm, key.handle, d, scheme(ALG.ECDSA)) as Extract<Signature, { r: Buffer }>;
    const s2 = Buffer.from(sig.s);
    s2[5]! ^= 0x80;
    fails(tpm, verifyCmd(key.handle, d, { ...sig, s: s2 }), RC.SIGNATURE_P2);
    fails(tpm, verifyCmd(key.handle, d, { ...sig, r: Buffer.alloc(32) }), RC.SIGNATURE_P2);
  });

  test('a signature of a scheme the key cannot check is TPM_RC_SCHEME for parameter 2', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(SIGN));
    const d = H(ALG.SHA256, MESSAGE);
    fails(tpm, verifyCmd(key.handle, d, { sigAlg: ALG.RSASSA, hash: ALG.SHA256, sig: Buffer.alloc(256, 1) }), RC.SCHEME_P2);
    fails(tpm, verifyCmd(key.handle, d, { sigAlg: ALG.HMAC, hash: ALG.SHA256, digest: Buffer.alloc(32) }), RC.SCHEME_P2);
    // An unimplemented scheme does not unmarshal.
    fails(tpm, verifyCmd(key.handle, d, Buffer.concat([u16b(ALG.ECDAA), u16b(ALG.SHA256), tpm2b(Buffer.alloc(32)), tpm2b(Buffer.alloc(32))])), RC.SCHEME_P2);
  });

  test('the NULL signature never verifies: TPM_RC_SIGNATURE for parameter 2', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(SIGN));
    fails(tpm, verifyCmd(key.handle, H(ALG.SHA256, MESSAGE), { sigAlg: ALG.NULL }), RC.SIGNATURE_P2);
  });

  test('a key without the sign attribute is TPM_RC_ATTRIBUTES for handle 1', () => {
    const tpm = startedEngine();
    const storage = createPrimary(tpm, storageTemplate());
    fails(tpm, verifyCmd(storage.handle, H(ALG.SHA256, MESSAGE), { sigAlg: ALG.ECDSA, hash: ALG.SHA256, r: Buffer.alloc(32, 1), s: Buffer.alloc(32, 1) }), RC.ATTRIBUTES_H1);
  });

  test('an HMAC signature verifies with its keyed-hash key; a key with a scheme accepts only that scheme and hash', () => {
    const tpm = startedEngine();
    const secret = Buffer.alloc(32, 0x36);
    const key = createPrimary(tpm, hmacTemplate(A.fixedTPM | A.fixedParent | A.userWithAuth | A.sign, scheme(ALG.HMAC)), { data: secret });
    const d = H(ALG.SHA256, MESSAGE);
    const v = responseParams(ok(tpm, verifyCmd(key.handle, d, { sigAlg: ALG.HMAC, hash: ALG.SHA256, digest: HMAC(ALG.SHA256, secret, d) })), { validation: tkVerified });
    assert.deepEqual(v.validation.digest, HMAC(ALG.SHA256, tpm.nv.hierarchy.proofs.owner, u16b(ST.VERIFIED), d, key.name));
    fails(tpm, verifyCmd(key.handle, d, { sigAlg: ALG.HMAC, hash: ALG.SHA256, digest: HMAC(ALG.SHA256, Buffer.alloc(32), d) }), RC.SIGNATURE_P2);
    fails(tpm, verifyCmd(key.handle, d, { sigAlg: ALG.HMAC, hash: ALG.SHA1, digest: HMAC(ALG.SHA1, secret, d) }), RC.SIGNATURE_P2);
  });
});

describe('TPM2_HMAC', () => {
  const KEY = Buffer.from('0123456789abcdef0123456789abcdef');
  const HMAC_ATTRS = A.fixedTPM | A.fixedParent | A.userWithAuth | A.sign;
  const hmacCmd = (h: number, data: Buffer, alg: number) =>
    buildCommand({ cc: CC.HMAC, handles: [h], sessions: [pw('')], params: params(tpm2b(data), u16b(alg)) });
  const outHmac = (tpm: Tpm2Engine, cmd: Buffer) => responseParams(ok(tpm, cmd), { outHMAC: digestBuf }).outHMAC;

  test('a keyed-hash key without a scheme computes HMAC with the hash the caller names', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, hmacTemplate(HMAC_ATTRS), { data: KEY });
    for (const alg of [ALG.SHA1, ALG.SHA256, ALG.SHA384, ALG.SHA512]) assert.deepEqual(outHmac(tpm, hmacCmd(key.handle, MESSAGE, alg)), HMAC(alg, KEY, MESSAGE));
  });

  test('a key with a scheme uses its own hash for TPM_ALG_NULL and refuses another: TPM_RC_VALUE for parameter 2', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, hmacTemplate(HMAC_ATTRS, scheme(ALG.HMAC, ALG.SHA384)), { data: KEY });
    assert.deepEqual(outHmac(tpm, hmacCmd(key.handle, MESSAGE, ALG.NULL)), HMAC(ALG.SHA384, KEY, MESSAGE));
    assert.deepEqual(outHmac(tpm, hmacCmd(key.handle, MESSAGE, ALG.SHA384)), HMAC(ALG.SHA384, KEY, MESSAGE));
    fails(tpm, hmacCmd(key.handle, MESSAGE, ALG.SHA256), RC.VALUE_P2);
  });

  test('a key without a scheme and a NULL hash is TPM_RC_VALUE for parameter 2; an unknown hash TPM_RC_HASH', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, hmacTemplate(HMAC_ATTRS), { data: KEY });
    fails(tpm, hmacCmd(key.handle, MESSAGE, ALG.NULL), RC.VALUE_P2);
    fails(tpm, hmacCmd(key.handle, MESSAGE, ALG.SM3_256), RC.HASH_P2);
  });

  test('only an unrestricted keyed-hash signing key will do: TPM_RC_TYPE, _ATTRIBUTES, _KEY for handle 1', () => {
    const tpm = startedEngine();
    const ecc = createPrimary(tpm, eccTemplate(SIGN));
    fails(tpm, hmacCmd(ecc.handle, MESSAGE, ALG.SHA256), RC.TYPE_H1);
    flush(tpm, ecc.handle);
    const restricted = createPrimary(tpm, hmacTemplate(HMAC_ATTRS | A.restricted, scheme(ALG.HMAC)), { data: KEY });
    fails(tpm, hmacCmd(restricted.handle, MESSAGE, ALG.SHA256), RC.ATTRIBUTES_H1);
    flush(tpm, restricted.handle);
    const sealed = createPrimary(tpm, hmacTemplate(A.fixedTPM | A.fixedParent | A.userWithAuth), { data: KEY });
    fails(tpm, hmacCmd(sealed.handle, MESSAGE, ALG.SHA256), RC.KEY_H1);
  });
});

describe('derivation parents', () => {
  test('are not implemented: a keyed-hash restricted decryption template is TPM_RC_ATTRIBUTES for parameter 2, whether the TPM or the caller gives its secret', async () => {
    const tpm = startedEngine();
    const client = new Tpm2Client(async (c) => tpm.execute(c, 0));
    const derivationParent = hmacTemplate(A.fixedTPM | A.fixedParent | A.userWithAuth | A.restricted | A.decrypt, { scheme: ALG.XOR, hashAlg: ALG.SHA256, kdf: ALG.KDF1_SP800_108 });
    await assert.rejects(client.createPrimary(RH.OWNER, { ...derivationParent, objectAttributes: derivationParent.objectAttributes | A.sensitiveDataOrigin }), (e) => e instanceof Tpm2CommandError && e.rc === 0x2c2);
    const srk = await client.createPrimary(RH.OWNER, srkTemplate());
    await assert.rejects(client.create(srk.handle, derivationParent, { data: Buffer.alloc(32, 9) }), (e) => e instanceof Tpm2CommandError && e.rc === 0x2c2);
  });
});

describe('HMAC sequences', () => {
  const KEY = Buffer.from('an HMAC key of some length');
  const HMAC_ATTRS = A.fixedTPM | A.fixedParent | A.userWithAuth | A.sign;
  const start = (h: number, alg: number, auth = '') =>
    buildCommand({ cc: CC.HMAC_Start, handles: [h], sessions: [pw('')], params: params(tpm2b(auth), u16b(alg)) });

  test('HMAC_Start, SequenceUpdate and SequenceComplete give the HMAC of all the data, with the NULL ticket', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, hmacTemplate(HMAC_ATTRS), { data: KEY });
    const data = Buffer.alloc(2500);
    for (let i = 0; i < data.length; i++) data[i] = i * 7;
    for (const alg of [ALG.SHA256, ALG.SHA512]) {
      const seq = ok(tpm, start(key.handle, alg, 'seq')).handle!;
      assert.equal(seq >>> 24, 0x80);
      ok(tpm, sequenceUpdate(seq, data.subarray(0, 1000), 'seq'));
      ok(tpm, sequenceUpdate(seq, data.subarray(1000, 2000), 'seq'));
      const done = parse.sequenceComplete(ok(tpm, sequenceComplete(seq, data.subarray(2000), RH.OWNER, 'seq')));
      assert.deepEqual(done.result, HMAC(alg, KEY, data));
      assert.deepEqual(done.validation, { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: EMPTY });
      // SequenceComplete flushed it.
      fails(tpm, sequenceUpdate(seq, 'more', 'seq'), RC.REFERENCE_H0);
    }
  });

  test('the sequence takes the key scheme hash for TPM_ALG_NULL and refuses another: TPM_RC_VALUE for parameter 2', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, hmacTemplate(HMAC_ATTRS, scheme(ALG.HMAC, ALG.SHA1)), { data: KEY });
    const seq = ok(tpm, start(key.handle, ALG.NULL)).handle!;
    assert.deepEqual(parse.sequenceComplete(ok(tpm, sequenceComplete(seq, MESSAGE))).result, HMAC(ALG.SHA1, KEY, MESSAGE));
    fails(tpm, start(key.handle, ALG.SHA256), RC.VALUE_P2);
  });

  test('the sequence needs its own authValue: a wrong one is TPM_RC_BAD_AUTH for session 1', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, hmacTemplate(HMAC_ATTRS), { data: KEY });
    const seq = ok(tpm, start(key.handle, ALG.SHA256, 'right')).handle!;
    fails(tpm, sequenceUpdate(seq, 'x', 'wrong'), RC.BAD_AUTH_S1);
    ok(tpm, sequenceUpdate(seq, 'x', 'right'));
  });

  test('an HMAC sequence is not an event sequence: EventSequenceComplete is TPM_RC_MODE for handle 2', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, hmacTemplate(HMAC_ATTRS), { data: KEY });
    const seq = ok(tpm, start(key.handle, ALG.SHA256)).handle!;
    fails(tpm, eventSequenceComplete(16, seq, 'x'), RC.MODE_H2);
  });

  test('an HMAC sequence survives ContextSave, FlushContext and ContextLoad', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, hmacTemplate(HMAC_ATTRS), { data: KEY });
    const seq = ok(tpm, start(key.handle, ALG.SHA256)).handle!;
    ok(tpm, sequenceUpdate(seq, 'first part, '));
    const saved = ok(tpm, buildCommand({ cc: CC.ContextSave, handles: [seq] })).params;
    flush(tpm, seq);
    const loaded = ok(tpm, buildCommand({ cc: CC.ContextLoad, params: saved })).handle!;
    const done = parse.sequenceComplete(ok(tpm, sequenceComplete(loaded, 'second part')));
    assert.deepEqual(done.result, HMAC(ALG.SHA256, KEY, Buffer.from('first part, second part')));
  });

  test('HMAC_Start checks the key as HMAC does, and needs a free object slot: TPM_RC_OBJECT_MEMORY', () => {
    const tpm = startedEngine();
    const ecc = createPrimary(tpm, eccTemplate(SIGN));
    fails(tpm, start(ecc.handle, ALG.SHA256), RC.TYPE_H1);
    const key = createPrimary(tpm, hmacTemplate(HMAC_ATTRS), { data: KEY });
    ok(tpm, start(key.handle, ALG.SHA256));
    fails(tpm, start(key.handle, ALG.SHA256), RC.OBJECT_MEMORY);
  });
});

describe('wire forms', () => {
  test('TPMT_SIGNATURE encodings: RSA sig is a TPM2B, ECDSA two TPM2B_ECC_PARAMETERs, HMAC a TPMT_HA', () => {
    assert.deepEqual(enc(signature, { sigAlg: ALG.RSASSA, hash: ALG.SHA256, sig: Buffer.from([1, 2]) }), Buffer.from('0014000b00020102', 'hex'));
    assert.deepEqual(enc(signature, { sigAlg: ALG.ECDSA, hash: ALG.SHA256, r: Buffer.from([1]), s: Buffer.from([2]) }), Buffer.from('0018000b000101000102', 'hex'));
    assert.deepEqual(enc(signature, { sigAlg: ALG.NULL }), Buffer.from('0010', 'hex'));
    const mac = Buffer.alloc(20, 9);
    assert.deepEqual(decode(signature, Buffer.concat([u16b(ALG.HMAC), u16b(ALG.SHA1), mac])), { sigAlg: ALG.HMAC, hash: ALG.SHA1, digest: mac });
  });
});
