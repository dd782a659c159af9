/**
 * Attestation: Quote, Certify, CertifyCreation, GetTime, NV_Certify, the audit commands
 * (SetCommandCodeAuditStatus, GetCommandAuditDigest, GetSessionAuditDigest) and the TPMS_ATTEST
 * they sign, with the privacy obfuscation of clockInfo and firmwareVersion. Digests, KDFa
 * outputs and signatures are computed or checked independently with node:crypto.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { constants, verify as nodeVerify } from 'node:crypto';
import { ALG, CC, RH, SESSION_ATTR, ST, SU } from '../../src/tpm/tpm2/constants.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { digestBuf } from '../../src/tpm/tpm2/types/basic.ts';
import { creationTicket, type Ticket } from '../../src/tpm/tpm2/types/creation.ts';
import { NV_ATTR, nvPublic2b } from '../../src/tpm/tpm2/types/nv.ts';
import { pcrSelectionList, type PcrSelection } from '../../src/tpm/tpm2/types/pcr.ts';
import { OBJECT_ATTR as A, type Public } from '../../src/tpm/tpm2/types/public.ts';
import type { Scheme } from '../../src/tpm/tpm2/types/public-parms.ts';
import { attest, attest2b, type Attest } from '../../src/tpm/tpm2/types/attest.ts';
import { sigScheme, signature, type Signature } from '../../src/tpm/tpm2/types/signature.ts';
import { decode, encode } from '../../src/tpm/wire/codec.ts';
import { auditLog, recordCommandAudit, updateSessionAudit } from '../../src/tpm/tpm2/audit.ts';
import {
  buildCommand,
  enc,
  params,
  pcrExtend,
  pw,
  responseParams,
  selection,
  shutdown,
  startup,
  tpm2b,
  u16b,
  u32b,
  type Response,
} from '../helpers/tpm2-commands.ts';
import { H, HMAC, fails, manualClock, ok, readPcr, startedEngine } from '../helpers/tpm2-engine.ts';
import {
  EMPTY,
  NULL_SCHEME,
  RESTRICTED,
  SIGN,
  createPrimary,
  eccTemplate,
  flush,
  hmacTemplate,
  nodeKey,
  rsaKey,
  scheme,
  storageTemplate,
} from '../helpers/tpm2-keys.ts';

const RC = {
  EXCLUSIVE: 0x121,
  KEY_H1: 0x19c,
  KEY_H2: 0x29c,
  VALUE_H1: 0x184,
  VALUE_H3: 0x384,
  TYPE_H3: 0x38a,
  SCHEME_P2: 0x2d2,
  SCHEME_P3: 0x3d2,
  TICKET_P4: 0x4e0,
  VALUE_P1: 0x1c4,
  SIZE_P1: 0x1d5,
  HANDLE_H3: 0x38b,
  NV_RANGE: 0x146,
  NV_AUTHORIZATION: 0x149,
  NV_UNINITIALIZED: 0x14a,
  BAD_AUTH_S1: 0x9a2,
};

/** The firmware version DEFAULT_IDENTITY reports: TPM_PT_FIRMWARE_VERSION_1 || _2. */
const FIRMWARE = (1n << 32n) | 0n;
const NULL_HANDLE_NAME = u32b(RH.NULL);

// ---------------------------------------------------------------------------------------------
// Helpers

interface Attestation {
  bytes: Buffer;
  attest: Attest;
  signature: Signature;
}

function attestation(r: Response, field: string): Attestation {
  const out = responseParams(r, { [field]: attest2b, signature }) as Record<string, unknown>;
  const bytes = out[field] as Buffer;
  return { bytes, attest: decode(attest, bytes), signature: out.signature as Signature };
}

function quoteCmd(key: number, qualifyingData: Buffer, selections: PcrSelection[], inScheme: Scheme = NULL_SCHEME, auth = ''): Buffer {
  return buildCommand({
    cc: CC.Quote,
    handles: [key],
    sessions: [pw(auth)],
    params: params(tpm2b(qualifyingData), enc(sigScheme, inScheme), enc(pcrSelectionList, selections)),
  });
}

/** Checks a signature over the attestation bytes with node:crypto and the key's public area. */
function assertSigned(pub: Public, a: Attestation): void {
  const sig = a.signature;
  const hashName = { [ALG.SHA1]: 'sha1', [ALG.SHA256]: 'sha256', [ALG.SHA384]: 'sha384', [ALG.SHA512]: 'sha512' }[(sig as { hash: number }).hash]!;
  switch (sig.sigAlg) {
    case ALG.ECDSA:
      assert.ok(nodeVerify(hashName, a.bytes, { key: nodeKey(pub), dsaEncoding: 'ieee-p1363' }, Buffer.concat([sig.r, sig.s])), 'ECDSA signature');
      return;
    case ALG.RSASSA:
      assert.ok(nodeVerify(hashName, a.bytes, nodeKey(pub), sig.sig), 'RSASSA signature');
      return;
    case ALG.RSAPSS:
      assert.ok(nodeVerify(hashName, a.bytes, { key: nodeKey(pub), padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_AUTO }, sig.sig), 'RSA-PSS signature');
      return;
    default:
      assert.fail(`unexpected signature algorithm 0x${sig.sigAlg.toString(16)}`);
  }
}

/** KDFa(SHA-256, key, label, contextU, '', bits) written out from Part 1 (one or more HMAC blocks). */
function kdfa(key: Buffer, label: string, contextU: Buffer, bits: number): Buffer {
  const out: Buffer[] = [];
  for (let i = 1; out.length * 32 < bits / 8; i++) out.push(HMAC(ALG.SHA256, key, u32b(i), Buffer.from(`${label}\0`), contextU, u32b(bits)));
  return Buffer.concat(out).subarray(0, bits / 8);
}

/** What the privacy obfuscation adds for a signer whose qualifiedSigner is `qs`. */
function obfuscation(tpm: Tpm2Engine, qs: Buffer): { firmware: bigint; reset: number; restart: number } {
  const k = kdfa(tpm.nv.hierarchy.proofs.owner, 'OBFUSCATE', qs, 128);
  return { firmware: k.readBigUInt64BE(0), reset: k.readUInt32BE(8), restart: k.readUInt32BE(12) };
}

function assertObfuscated(tpm: Tpm2Engine, a: Attest): void {
  const o = obfuscation(tpm, a.qualifiedSigner);
  assert.equal(a.firmwareVersion, BigInt.asUintN(64, FIRMWARE + o.firmware), 'firmwareVersion obfuscated');
  assert.equal(a.clockInfo.resetCount, (tpm.nv.resetCount + o.reset) >>> 0, 'resetCount obfuscated');
  assert.equal(a.clockInfo.restartCount, (tpm.nv.restartCount + o.restart) >>> 0, 'restartCount obfuscated');
}

function assertPlain(tpm: Tpm2Engine, a: Attest): void {
  assert.equal(a.firmwareVersion, FIRMWARE);
  assert.equal(a.clockInfo.resetCount, tpm.nv.resetCount);
  assert.equal(a.clockInfo.restartCount, tpm.nv.restartCount);
}

const ECDSA_KEY = () => eccTemplate(RESTRICTED, scheme(ALG.ECDSA));
const NONCE = Buffer.from('a fresh nonce from the verifier');

function certifyCmd(object: number, signer: number, qualifyingData: Buffer = NONCE, inScheme: Scheme = NULL_SCHEME, objectAuth = ''): Buffer {
  return buildCommand({
    cc: CC.Certify,
    handles: [object, signer],
    sessions: [pw(objectAuth), pw('')],
    params: params(tpm2b(qualifyingData), enc(sigScheme, inScheme)),
  });
}

function certifyCreationCmd(signer: number, object: number, creationHash: Buffer, ticket: Ticket, inScheme: Scheme = NULL_SCHEME): Buffer {
  return buildCommand({
    cc: CC.CertifyCreation,
    handles: [signer, object],
    sessions: [pw('')],
    params: params(tpm2b(NONCE), tpm2b(creationHash), enc(sigScheme, inScheme), enc(creationTicket, ticket)),
  });
}

function getTimeCmd(signer: number, privacy: number = RH.ENDORSEMENT, inScheme: Scheme = NULL_SCHEME): Buffer {
  return buildCommand({ cc: CC.GetTime, handles: [privacy, signer], sessions: [pw(''), pw('')], params: params(tpm2b(NONCE), enc(sigScheme, inScheme)) });
}

// ---------------------------------------------------------------------------------------------

describe('TPM2_Quote', () => {
  test('a restricted ECC key quotes: TPMS_ATTEST names the key, carries the nonce and H(selected PCRs), and the signature verifies', () => {
    const tpm = startedEngine();
    ok(tpm, pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: H(ALG.SHA256, 'measured boot') }]));
    const key = createPrimary(tpm, ECDSA_KEY());
    const sel = [selection(ALG.SHA256, [0, 1, 16])];
    const q = attestation(ok(tpm, quoteCmd(key.handle, NONCE, sel)), 'quoted');
    assert.deepEqual(q.bytes.subarray(0, 6), Buffer.from('ff54434780' + '18', 'hex'), 'magic TPM_GENERATED_VALUE, type TPM_ST_ATTEST_QUOTE');
    const a = q.attest;
    assert.equal(a.type, ST.ATTEST_QUOTE);
    const qn = Buffer.concat([u16b(ALG.SHA256), H(ALG.SHA256, u32b(RH.OWNER), key.name)]);
    assert.deepEqual(a.qualifiedSigner, qn);
    assert.deepEqual(a.extraData, NONCE);
    if (a.type !== ST.ATTEST_QUOTE) return;
    assert.deepEqual(a.attested.pcrSelect, sel);
    assert.deepEqual(a.attested.pcrDigest, H(ALG.SHA256, readPcr(tpm, 0), readPcr(tpm, 1), readPcr(tpm, 16)));
    assertSigned(key.pub, q);
  });

  test('quotes signed with nonces an ECDSA key precomputed while idle verify, and no two share r', async () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, ECDSA_KEY());
    const rs = new Set<string>();
    for (let i = 0; i < 24; i++) {
      const q = attestation(ok(tpm, quoteCmd(key.handle, NONCE, [selection(ALG.SHA256, [i % 8])])), 'quoted');
      assertSigned(key.pub, q);
      if (q.signature.sigAlg === ALG.ECDSA) rs.add(q.signature.r.toString('hex'));
      // Idle turns of the event loop, in which the key's pool refills.
      for (let t = 0; t < 8; t++) await new Promise((ok) => setImmediate(ok));
    }
    assert.equal(rs.size, 24);
  });

  test('restricted RSA-2048 keys quote with RSASSA and with RSA-PSS', () => {
    const tpm = startedEngine();
    for (const s of [ALG.RSASSA, ALG.RSAPSS]) {
      const key = rsaKey(tpm, RESTRICTED, scheme(s));
      const q = attestation(ok(tpm, quoteCmd(key.handle, NONCE, [selection(ALG.SHA256, [0])])), 'quoted');
      assert.equal(q.signature.sigAlg, s);
      assertSigned(key.pub, q);
      flush(tpm, key.handle);
    }
  });

  test('an unrestricted key quotes with the scheme the caller names', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(SIGN));
    const q = attestation(ok(tpm, quoteCmd(key.handle, NONCE, [selection(ALG.SHA1, [0])], scheme(ALG.ECDSA, ALG.SHA512))), 'quoted');
    assertSigned(key.pub, q);
    assert.equal((q.signature as { hash: number }).hash, ALG.SHA512);
  });

  test('pcrDigest is computed with the scheme hash over the banks in selection order', () => {
    const tpm = startedEngine();
    ok(tpm, pcrExtend(2, [{ hashAlg: ALG.SHA1, digest: H(ALG.SHA1, 'x') }, { hashAlg: ALG.SHA256, digest: H(ALG.SHA256, 'y') }]));
    const key = createPrimary(tpm, eccTemplate(RESTRICTED, scheme(ALG.ECDSA, ALG.SHA384)));
    const sel = [selection(ALG.SHA256, [2, 3]), selection(ALG.SHA1, [2])];
    const q = attestation(ok(tpm, quoteCmd(key.handle, NONCE, sel)), 'quoted');
    assert.ok(q.attest.type === ST.ATTEST_QUOTE);
    assert.deepEqual(q.attest.attested.pcrDigest, H(ALG.SHA384, readPcr(tpm, 2, ALG.SHA256), readPcr(tpm, 3, ALG.SHA256), readPcr(tpm, 2, ALG.SHA1)));
    assertSigned(key.pub, q);
  });

  test('PCRs that do not exist are dropped from the quoted selection (FilterPcr)', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, ECDSA_KEY());
    const q = attestation(ok(tpm, quoteCmd(key.handle, NONCE, [selection(ALG.SHA256, [5, 30], 4)])), 'quoted');
    assert.ok(q.attest.type === ST.ATTEST_QUOTE);
    assert.deepEqual(q.attest.attested.pcrSelect, [selection(ALG.SHA256, [5], 4)]);
    assert.deepEqual(q.attest.attested.pcrDigest, H(ALG.SHA256, readPcr(tpm, 5)));
  });

  test('an empty selection quotes the digest of nothing', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, ECDSA_KEY());
    const q = attestation(ok(tpm, quoteCmd(key.handle, EMPTY, [])), 'quoted');
    assert.ok(q.attest.type === ST.ATTEST_QUOTE);
    assert.deepEqual(q.attest.attested.pcrDigest, H(ALG.SHA256));
    assert.deepEqual(q.attest.extraData, EMPTY);
  });

  test('a key that cannot sign is TPM_RC_KEY for handle 1; TPM_RH_NULL is not a Quote key (TPM_RC_VALUE for handle 1)', () => {
    const tpm = startedEngine();
    const storage = createPrimary(tpm, storageTemplate());
    fails(tpm, quoteCmd(storage.handle, NONCE, []), RC.KEY_H1);
    fails(tpm, quoteCmd(RH.NULL, NONCE, []), RC.VALUE_H1);
  });

  test('a scheme other than the key’s is TPM_RC_SCHEME for parameter 2', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, ECDSA_KEY());
    fails(tpm, quoteCmd(key.handle, NONCE, [], scheme(ALG.ECDSA, ALG.SHA384)), RC.SCHEME_P2);
  });

  test('qualifyingData longer than a TPMT_HA is TPM_RC_SIZE for parameter 1', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, ECDSA_KEY());
    fails(tpm, quoteCmd(key.handle, Buffer.alloc(67), []), RC.SIZE_P1);
  });

  test('the key authorization is required: a wrong password is TPM_RC_BAD_AUTH for session 1', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccTemplate(RESTRICTED | A.noDA, scheme(ALG.ECDSA)), { auth: 'ak' });
    fails(tpm, quoteCmd(key.handle, NONCE, [], NULL_SCHEME, 'nope'), RC.BAD_AUTH_S1);
    ok(tpm, quoteCmd(key.handle, NONCE, [], NULL_SCHEME, 'ak'));
  });

  test('an HMAC key quotes: the signature is HMAC(key, H(TPMS_ATTEST))', () => {
    const tpm = startedEngine();
    const secret = Buffer.alloc(32, 7);
    const key = createPrimary(tpm, hmacTemplate(A.fixedTPM | A.fixedParent | A.userWithAuth | A.sign | A.restricted, scheme(ALG.HMAC)), { data: secret });
    const q = attestation(ok(tpm, quoteCmd(key.handle, NONCE, [selection(ALG.SHA256, [0])])), 'quoted');
    assert.deepEqual(q.signature, { sigAlg: ALG.HMAC, hash: ALG.SHA256, digest: HMAC(ALG.SHA256, secret, H(ALG.SHA256, q.bytes)) });
  });

  test('clockInfo reports the TPM clock and its safe flag', () => {
    const clock = manualClock(5_000);
    const tpm = startedEngine({ now: clock.now });
    const key = createPrimary(tpm, ECDSA_KEY(), { hierarchy: RH.ENDORSEMENT });
    const first = attestation(ok(tpm, quoteCmd(key.handle, NONCE, [])), 'quoted').attest;
    clock.advance(2_500);
    const second = attestation(ok(tpm, quoteCmd(key.handle, NONCE, [])), 'quoted').attest;
    assert.equal(second.clockInfo.clock - first.clockInfo.clock, 2_500n);
    assert.equal(second.clockInfo.safe, tpm.nv.clockSafe);
  });
});

describe('privacy of clockInfo and firmwareVersion', () => {
  test('an owner-hierarchy key sees resetCount, restartCount and firmwareVersion offset by KDFa(shProof, "OBFUSCATE", qualifiedSigner)', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, ECDSA_KEY());
    const q = attestation(ok(tpm, quoteCmd(key.handle, NONCE, [])), 'quoted');
    assertObfuscated(tpm, q.attest);
    assertSigned(key.pub, q);
  });

  test('two owner keys see different offsets: their attestations cannot be linked by the counters', () => {
    const tpm = startedEngine();
    const a = createPrimary(tpm, ECDSA_KEY());
    const b = createPrimary(tpm, eccTemplate(RESTRICTED, scheme(ALG.ECDSA, ALG.SHA384)));
    const qa = attestation(ok(tpm, quoteCmd(a.handle, NONCE, [])), 'quoted').attest;
    const qb = attestation(ok(tpm, quoteCmd(b.handle, NONCE, [])), 'quoted').attest;
    assert.notEqual(qa.clockInfo.resetCount, qb.clockInfo.resetCount);
    assert.notEqual(qa.firmwareVersion, qb.firmwareVersion);
  });

  test('endorsement- and platform-hierarchy keys see the real counters and firmware version', () => {
    const tpm = startedEngine();
    for (const hierarchy of [RH.ENDORSEMENT, RH.PLATFORM]) {
      const key = createPrimary(tpm, ECDSA_KEY(), { hierarchy });
      const q = attestation(ok(tpm, quoteCmd(key.handle, NONCE, [])), 'quoted');
      assertPlain(tpm, q.attest);
      flush(tpm, key.handle);
    }
  });

  test('a NULL-hierarchy key is obfuscated too, and the offsets follow TPM Restart counts', () => {
    const tpm = startedEngine();
    ok(tpm, shutdown(SU.STATE));
    tpm.powerOn();
    ok(tpm, startup(SU.STATE));
    assert.equal(tpm.nv.restartCount, 1);
    const key = createPrimary(tpm, ECDSA_KEY(), { hierarchy: RH.NULL });
    assertObfuscated(tpm, attestation(ok(tpm, quoteCmd(key.handle, NONCE, [])), 'quoted').attest);
  });
});

describe('TPM2_Certify', () => {
  test('Certify signs the Name and Qualified Name of an object with the sign key', () => {
    const tpm = startedEngine();
    const signer = createPrimary(tpm, ECDSA_KEY(), { hierarchy: RH.ENDORSEMENT });
    const object = createPrimary(tpm, storageTemplate());
    const c = attestation(ok(tpm, certifyCmd(object.handle, signer.handle)), 'certifyInfo');
    assert.equal(c.attest.type, ST.ATTEST_CERTIFY);
    assert.ok(c.attest.type === ST.ATTEST_CERTIFY);
    assert.deepEqual(c.attest.attested.name, object.name);
    assert.deepEqual(c.attest.attested.qualifiedName, Buffer.concat([u16b(ALG.SHA256), H(ALG.SHA256, u32b(RH.OWNER), object.name)]));
    assert.deepEqual(c.attest.extraData, NONCE);
    assertPlain(tpm, c.attest);
    assertSigned(signer.pub, c);
  });

  test('a key may certify itself, and an RSA-PSS key certifies too', () => {
    const tpm = startedEngine();
    const key = rsaKey(tpm, SIGN);
    const c = attestation(ok(tpm, certifyCmd(key.handle, key.handle, NONCE, scheme(ALG.RSAPSS))), 'certifyInfo');
    assert.ok(c.attest.type === ST.ATTEST_CERTIFY);
    assert.deepEqual(c.attest.attested.name, key.name);
    assertSigned(key.pub, c);
  });

  test('with TPM_RH_NULL as the sign handle the attestation is unsigned and names TPM_RH_NULL as its signer', () => {
    const tpm = startedEngine();
    const object = createPrimary(tpm, storageTemplate());
    const c = attestation(ok(tpm, certifyCmd(object.handle, RH.NULL)), 'certifyInfo');
    assert.deepEqual(c.signature, { sigAlg: ALG.NULL });
    assert.deepEqual(c.attest.qualifiedSigner, NULL_HANDLE_NAME);
    assertObfuscated(tpm, c.attest);
  });

  test('a sign key that cannot sign is TPM_RC_KEY for handle 2; a wrong scheme TPM_RC_SCHEME for parameter 2', () => {
    const tpm = startedEngine();
    const signer = createPrimary(tpm, ECDSA_KEY());
    const object = createPrimary(tpm, storageTemplate());
    fails(tpm, certifyCmd(signer.handle, object.handle), RC.KEY_H2);
    fails(tpm, certifyCmd(object.handle, signer.handle, NONCE, scheme(ALG.RSASSA)), RC.SCHEME_P2);
  });

  test('the object’s authorization (ADMIN role) is checked: a wrong password is TPM_RC_BAD_AUTH for session 1', () => {
    const tpm = startedEngine();
    const signer = createPrimary(tpm, ECDSA_KEY());
    const object = createPrimary(tpm, eccTemplate(SIGN | A.noDA), { auth: 'object' });
    fails(tpm, certifyCmd(object.handle, signer.handle, NONCE, NULL_SCHEME, 'wrong'), RC.BAD_AUTH_S1);
    ok(tpm, certifyCmd(object.handle, signer.handle, NONCE, NULL_SCHEME, 'object'));
  });
});

describe('TPM2_CertifyCreation', () => {
  test('CertifyCreation vouches for the creationHash of a primary object, given its creation ticket', () => {
    const tpm = startedEngine();
    const signer = createPrimary(tpm, ECDSA_KEY());
    const object = createPrimary(tpm, storageTemplate());
    const c = attestation(ok(tpm, certifyCreationCmd(signer.handle, object.handle, object.creationHash!, object.creationTicket!)), 'certifyInfo');
    assert.ok(c.attest.type === ST.ATTEST_CREATION);
    assert.deepEqual(c.attest.attested, { objectName: object.name, creationHash: object.creationHash });
    assertSigned(signer.pub, c);
  });

  test('the ticket of an ordinary object (Create, then Load) is accepted too', () => {
    const tpm = startedEngine();
    const key = rsaKey(tpm, SIGN);
    const c = attestation(ok(tpm, certifyCreationCmd(key.handle, key.handle, key.creationHash!, key.creationTicket!, scheme(ALG.RSASSA))), 'certifyInfo');
    assertSigned(key.pub, c);
  });

  test('a creationHash, object or hierarchy the ticket was not made for is TPM_RC_TICKET for parameter 4', () => {
    const tpm = startedEngine();
    const signer = createPrimary(tpm, ECDSA_KEY());
    const object = createPrimary(tpm, storageTemplate());
    const t = object.creationTicket!;
    fails(tpm, certifyCreationCmd(signer.handle, object.handle, H(ALG.SHA256, 'other'), t), RC.TICKET_P4);
    fails(tpm, certifyCreationCmd(signer.handle, signer.handle, object.creationHash!, t), RC.TICKET_P4);
    fails(tpm, certifyCreationCmd(signer.handle, object.handle, object.creationHash!, { ...t, hierarchy: RH.ENDORSEMENT }), RC.TICKET_P4);
  });

  test('a NULL-hierarchy object gets the NULL ticket, which certifies nothing', () => {
    const tpm = startedEngine();
    const signer = createPrimary(tpm, ECDSA_KEY());
    const object = createPrimary(tpm, storageTemplate(), { hierarchy: RH.NULL });
    assert.equal(object.creationTicket!.hierarchy, RH.NULL);
    fails(tpm, certifyCreationCmd(signer.handle, object.handle, object.creationHash!, object.creationTicket!), RC.TICKET_P4);
  });

  test('a sign key that cannot sign is TPM_RC_KEY for handle 1; a wrong scheme TPM_RC_SCHEME for parameter 3', () => {
    const tpm = startedEngine();
    const signer = createPrimary(tpm, ECDSA_KEY());
    const object = createPrimary(tpm, storageTemplate());
    fails(tpm, certifyCreationCmd(object.handle, object.handle, object.creationHash!, object.creationTicket!), RC.KEY_H1);
    fails(tpm, certifyCreationCmd(signer.handle, object.handle, object.creationHash!, object.creationTicket!, scheme(ALG.ECDSA, ALG.SHA1)), RC.SCHEME_P3);
  });
});

describe('TPM2_GetTime', () => {
  test('GetTime attests time, clock and firmware version in the clear; the header of an owner key is obfuscated', () => {
    const clock = manualClock(10_000);
    const tpm = startedEngine({ now: clock.now });
    clock.advance(1234);
    const key = createPrimary(tpm, ECDSA_KEY());
    const g = attestation(ok(tpm, getTimeCmd(key.handle)), 'timeInfo');
    assert.ok(g.attest.type === ST.ATTEST_TIME);
    const t = g.attest.attested;
    assert.equal(t.time.time, 1234n);
    assert.equal(t.time.clockInfo.clock, g.attest.clockInfo.clock);
    assert.equal(t.time.clockInfo.resetCount, tpm.nv.resetCount);
    assert.equal(t.time.clockInfo.restartCount, tpm.nv.restartCount);
    assert.equal(t.firmwareVersion, FIRMWARE);
    assertObfuscated(tpm, g.attest);
    assertSigned(key.pub, g);
  });

  test('GetTime with TPM_RH_NULL gives an unsigned attestation', () => {
    const tpm = startedEngine();
    const g = attestation(ok(tpm, getTimeCmd(RH.NULL)), 'timeInfo');
    assert.deepEqual(g.signature, { sigAlg: ALG.NULL });
    assert.deepEqual(g.attest.qualifiedSigner, NULL_HANDLE_NAME);
  });

  test('the privacy administrator is the endorsement hierarchy: another handle is TPM_RC_VALUE for handle 1', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, ECDSA_KEY());
    fails(tpm, getTimeCmd(key.handle, RH.OWNER), RC.VALUE_H1);
    fails(tpm, getTimeCmd(key.handle, RH.ENDORSEMENT, scheme(ALG.RSASSA)), RC.SCHEME_P2);
  });
});

describe('TPM2_NV_Certify', () => {
  const IX = 0x01500020;
  function define(tpm: Tpm2Engine, attributes: number, dataSize: number, handle = IX): void {
    ok(
      tpm,
      buildCommand({
        cc: CC.NV_DefineSpace,
        handles: [RH.OWNER],
        sessions: [pw('')],
        params: params(tpm2b(''), enc(nvPublic2b, { nvIndex: handle, nameAlg: ALG.SHA256, attributes, authPolicy: EMPTY, dataSize })),
      }),
    );
  }
  function write(tpm: Tpm2Engine, data: Buffer, handle = IX): void {
    ok(tpm, buildCommand({ cc: CC.NV_Write, handles: [RH.OWNER, handle], sessions: [pw('')], params: params(tpm2b(data), u16b(0)) }));
  }
  function nvCertifyCmd(signer: number, size: number, offset: number, authHandle: number = RH.OWNER, handle = IX, inScheme: Scheme = NULL_SCHEME): Buffer {
    return buildCommand({
      cc: CC.NV_Certify,
      handles: [signer, authHandle, handle],
      sessions: [pw(''), pw('')],
      params: params(tpm2b(NONCE), enc(sigScheme, inScheme), u16b(size), u16b(offset)),
    });
  }
  const ATTRS = NV_ATTR.OWNERWRITE | NV_ATTR.OWNERREAD | NV_ATTR.AUTHREAD | NV_ATTR.AUTHWRITE;
  const DATA = Buffer.from('0123456789abcdefghijklmnopqrstuv');

  function indexName(tpm: Tpm2Engine): Buffer {
    const r = ok(tpm, buildCommand({ cc: CC.NV_ReadPublic, handles: [IX] }));
    return responseParams(r, { nvPublic: nvPublic2b, nvName: digestBuf }).nvName;
  }

  test('NV_Certify attests a range of an index: its Name (as written), the offset and the bytes', () => {
    const tpm = startedEngine();
    define(tpm, ATTRS, 32);
    write(tpm, DATA);
    const key = createPrimary(tpm, ECDSA_KEY());
    const c = attestation(ok(tpm, nvCertifyCmd(key.handle, 10, 5)), 'certifyInfo');
    assert.ok(c.attest.type === ST.ATTEST_NV);
    assert.deepEqual(c.attest.attested, { indexName: indexName(tpm), offset: 5, nvContents: DATA.subarray(5, 15) });
    assertSigned(key.pub, c);
  });

  test('size and offset zero attest the digest of the whole index with the scheme hash (TPM_ST_ATTEST_NV_DIGEST)', () => {
    const tpm = startedEngine();
    define(tpm, ATTRS, 32);
    write(tpm, DATA);
    const key = createPrimary(tpm, eccTemplate(RESTRICTED, scheme(ALG.ECDSA, ALG.SHA384)));
    const c = attestation(ok(tpm, nvCertifyCmd(key.handle, 0, 0)), 'certifyInfo');
    assert.ok(c.attest.type === ST.ATTEST_NV_DIGEST);
    assert.deepEqual(c.attest.attested, { indexName: indexName(tpm), nvDigest: H(ALG.SHA384, DATA) });
    assertSigned(key.pub, c);
  });

  test('the index authorizing itself works, and TPM_RH_NULL gives an unsigned attestation', () => {
    const tpm = startedEngine();
    define(tpm, ATTRS, 32);
    write(tpm, DATA);
    const c = attestation(ok(tpm, nvCertifyCmd(RH.NULL, 4, 0, IX)), 'certifyInfo');
    assert.deepEqual(c.signature, { sigAlg: ALG.NULL });
    assert.ok(c.attest.type === ST.ATTEST_NV);
    assert.deepEqual(c.attest.attested.nvContents, DATA.subarray(0, 4));
  });

  test('read access is checked: unwritten is TPM_RC_NV_UNINITIALIZED, a platform without PPREAD TPM_RC_NV_AUTHORIZATION', () => {
    const tpm = startedEngine();
    define(tpm, ATTRS, 32);
    const key = createPrimary(tpm, ECDSA_KEY());
    fails(tpm, nvCertifyCmd(key.handle, 4, 0), RC.NV_UNINITIALIZED);
    write(tpm, DATA);
    fails(tpm, nvCertifyCmd(key.handle, 4, 0, RH.PLATFORM), RC.NV_AUTHORIZATION);
  });

  test('a range past the end is TPM_RC_NV_RANGE; an undefined index TPM_RC_HANDLE for handle 3', () => {
    const tpm = startedEngine();
    define(tpm, ATTRS, 32);
    write(tpm, DATA);
    const key = createPrimary(tpm, ECDSA_KEY());
    fails(tpm, nvCertifyCmd(key.handle, 8, 30), RC.NV_RANGE);
    fails(tpm, nvCertifyCmd(key.handle, 33, 0), RC.NV_RANGE);
    fails(tpm, nvCertifyCmd(key.handle, 4, 0, RH.OWNER, IX + 1), RC.HANDLE_H3);
  });

  test('a sign key that cannot sign is TPM_RC_KEY for handle 1; a wrong scheme TPM_RC_SCHEME for parameter 2', () => {
    const tpm = startedEngine();
    define(tpm, ATTRS, 32);
    write(tpm, DATA);
    const storage = createPrimary(tpm, storageTemplate());
    fails(tpm, nvCertifyCmd(storage.handle, 4, 0), RC.KEY_H1);
    const key = createPrimary(tpm, ECDSA_KEY());
    fails(tpm, nvCertifyCmd(key.handle, 4, 0, RH.OWNER, IX, scheme(ALG.RSASSA)), RC.SCHEME_P2);
  });
});

// ---------------------------------------------------------------------------------------------
// Audit

function getAuditCmd(signer: number, inScheme: Scheme = NULL_SCHEME): Buffer {
  return buildCommand({
    cc: CC.GetCommandAuditDigest,
    handles: [RH.ENDORSEMENT, signer],
    sessions: [pw(''), pw('')],
    params: params(tpm2b(NONCE), enc(sigScheme, inScheme)),
  });
}

function setAuditCmd(alg: number, setList: number[], clearList: number[] = []): Buffer {
  const list = (l: number[]) => Buffer.concat([u32b(l.length), ...l.map(u32b)]);
  return buildCommand({ cc: CC.SetCommandCodeAuditStatus, handles: [RH.OWNER], sessions: [pw('')], params: params(u16b(alg), list(setList), list(clearList)) });
}

function commandAudit(tpm: Tpm2Engine, signer: number = RH.NULL) {
  const a = attestation(ok(tpm, getAuditCmd(signer)), 'auditInfo');
  assert.ok(a.attest.type === ST.ATTEST_COMMAND_AUDIT);
  return { ...a, info: a.attest.attested };
}

const ccDigest = (alg: number, ccs: number[]) => H(alg, Buffer.concat([...ccs].sort((x, y) => x - y).map(u32b)));

/**
 * Executes a command the way the dispatcher drives command audit: beginCommandAudit with the
 * handles and parameter area before it runs, endCommandAudit with the response parameter area
 * after it succeeds. Returns the response and what an auditor computes independently.
 */
/** Runs an audited command and returns the cpHash and rpHash it must extend the digest with. */
function auditedExec(tpm: Tpm2Engine, cmd: Buffer, handleCount: number, alg: number): { r: Response; cpHash: Buffer; rpHash: Buffer } {
  const cc = cmd.readUInt32BE(6);
  const handles = Array.from({ length: handleCount }, (_, i) => cmd.readUInt32BE(10 + 4 * i));
  let at = 10 + 4 * handleCount;
  if (cmd.readUInt16BE(0) === ST.SESSIONS) at += 4 + cmd.readUInt32BE(at);
  const cpBuffer = cmd.subarray(at);
  const names = handles.map((h) => tpm.nameOf(h));
  // The dispatcher records audited commands itself; this computes what it should have recorded.
  const r = ok(tpm, cmd);
  return { r, cpHash: H(alg, u32b(cc), ...names, cpBuffer), rpHash: H(alg, u32b(0), u32b(cc), r.params) };
}

describe('command audit', () => {
  test('a new TPM audits only SetCommandCodeAuditStatus, with SHA-256: an empty digest, counter 0', () => {
    const tpm = startedEngine();
    const a = commandAudit(tpm);
    assert.deepEqual(a.info, { auditCounter: 0n, digestAlg: ALG.SHA256, auditDigest: EMPTY, commandDigest: ccDigest(ALG.SHA256, [CC.SetCommandCodeAuditStatus]) });
    assert.deepEqual(a.signature, { sigAlg: ALG.NULL });
  });

  test('SetCommandCodeAuditStatus sets and clears commands; Shutdown, unimplemented codes and SetCommandCodeAuditStatus itself stay as they are', () => {
    const tpm = startedEngine();
    ok(tpm, setAuditCmd(ALG.NULL, [CC.PCR_Extend, CC.Quote, CC.Shutdown, 0x1ff, CC.GetRandom]));
    assert.deepEqual(commandAudit(tpm).info.commandDigest, ccDigest(ALG.SHA256, [CC.SetCommandCodeAuditStatus, CC.PCR_Extend, CC.Quote, CC.GetRandom]));
    ok(tpm, setAuditCmd(ALG.NULL, [], [CC.Quote, CC.SetCommandCodeAuditStatus, CC.PCR_Read]));
    assert.deepEqual(commandAudit(tpm).info.commandDigest, ccDigest(ALG.SHA256, [CC.SetCommandCodeAuditStatus, CC.PCR_Extend, CC.GetRandom]));
  });

  test('the algorithm changes alone: with a list as well it is TPM_RC_VALUE for parameter 1', () => {
    const tpm = startedEngine();
    fails(tpm, setAuditCmd(ALG.SHA384, [CC.Quote]), RC.VALUE_P1);
    ok(tpm, setAuditCmd(ALG.SHA384, []));
    const a = commandAudit(tpm).info;
    assert.equal(a.digestAlg, ALG.SHA384);
    assert.deepEqual(a.commandDigest, ccDigest(ALG.SHA384, [CC.SetCommandCodeAuditStatus]));
    // Naming the current algorithm with a list is not a change of algorithm.
    ok(tpm, setAuditCmd(ALG.SHA384, [CC.Quote]));
  });

  test('each audited command extends the digest: H(digest || cpHash || rpHash) from zeros, and a new digest counts', () => {
    const tpm = startedEngine();
    // SetCommandCodeAuditStatus is itself always audited, so it opens the digest.
    const s = auditedExec(tpm, setAuditCmd(ALG.NULL, [CC.PCR_Extend, CC.GetRandom]), 1, ALG.SHA256);
    const e = auditedExec(tpm, pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: H(ALG.SHA256, 'e') }]), 1, ALG.SHA256);
    const g = auditedExec(tpm, buildCommand({ cc: CC.GetRandom, params: u16b(8) }), 0, ALG.SHA256);
    // A command not in the list leaves the digest alone.
    auditedExec(tpm, buildCommand({ cc: CC.ReadClock }), 0, ALG.SHA256);
    let d: Buffer = Buffer.alloc(32);
    d = H(ALG.SHA256, d, s.cpHash, s.rpHash);
    d = H(ALG.SHA256, d, e.cpHash, e.rpHash);
    d = H(ALG.SHA256, d, g.cpHash, g.rpHash);
    const signer = createPrimary(tpm, ECDSA_KEY(), { hierarchy: RH.ENDORSEMENT });
    const report = commandAudit(tpm, signer.handle);
    assert.equal(report.info.auditCounter, 1n);
    assert.deepEqual(report.info.auditDigest, d);
    assertSigned(signer.pub, report);
    // The signed report started a new digest: the next audited command counts again.
    assert.deepEqual(commandAudit(tpm).info.auditDigest, EMPTY);
    const g2 = auditedExec(tpm, buildCommand({ cc: CC.GetRandom, params: u16b(4) }), 0, ALG.SHA256);
    const next = commandAudit(tpm).info;
    assert.equal(next.auditCounter, 2n);
    assert.deepEqual(next.auditDigest, H(ALG.SHA256, Buffer.alloc(32), g2.cpHash, g2.rpHash));
  });

  test('a report signed with TPM_RH_NULL leaves the digest running', () => {
    const tpm = startedEngine();
    ok(tpm, setAuditCmd(ALG.NULL, [CC.GetRandom]));
    auditedExec(tpm, buildCommand({ cc: CC.GetRandom, params: u16b(8) }), 0, ALG.SHA256);
    const first = commandAudit(tpm).info.auditDigest;
    assert.equal(first.length, 32);
    assert.deepEqual(commandAudit(tpm).info.auditDigest, first);
  });

  test('changing the algorithm clears the digest, and that command is not recorded', () => {
    const tpm = startedEngine();
    ok(tpm, setAuditCmd(ALG.NULL, [CC.GetRandom]));
    auditedExec(tpm, buildCommand({ cc: CC.GetRandom, params: u16b(8) }), 0, ALG.SHA256);
    auditedExec(tpm, setAuditCmd(ALG.SHA1, []), 1, ALG.SHA256);
    const a = commandAudit(tpm).info;
    assert.equal(a.digestAlg, ALG.SHA1);
    assert.deepEqual(a.auditDigest, EMPTY);
    const g = auditedExec(tpm, buildCommand({ cc: CC.GetRandom, params: u16b(8) }), 0, ALG.SHA1);
    assert.deepEqual(commandAudit(tpm).info.auditDigest, H(ALG.SHA1, Buffer.alloc(20), g.cpHash, g.rpHash));
  });

  test('TPM Restart keeps the audit digest; TPM Reset clears it', () => {
    const tpm = startedEngine();
    recordCommandAudit(tpm, H(ALG.SHA256, 'cp'), H(ALG.SHA256, 'rp'));
    const d = commandAudit(tpm).info.auditDigest;
    ok(tpm, shutdown(SU.STATE));
    tpm.powerOn();
    ok(tpm, startup(SU.CLEAR));
    assert.deepEqual(commandAudit(tpm).info.auditDigest, d, 'TPM Restart');
    ok(tpm, shutdown(SU.CLEAR));
    tpm.powerOn();
    ok(tpm, startup(SU.CLEAR));
    assert.deepEqual(commandAudit(tpm).info.auditDigest, EMPTY, 'TPM Reset');
    assert.equal(auditLog(tpm).counter, 1n, 'the counter is NV');
  });

  test('GetCommandAuditDigest checks its sign key and scheme: TPM_RC_KEY for handle 2, TPM_RC_SCHEME for parameter 2', () => {
    const tpm = startedEngine();
    const storage = createPrimary(tpm, storageTemplate());
    fails(tpm, getAuditCmd(storage.handle), RC.KEY_H2);
    const key = createPrimary(tpm, ECDSA_KEY());
    fails(tpm, getAuditCmd(key.handle, scheme(ALG.ECDSA, ALG.SHA1)), RC.SCHEME_P2);
  });
});

describe('session audit', () => {
  function startHmacSession(tpm: Tpm2Engine, type = 0): number {
    const r = ok(
      tpm,
      buildCommand({
        cc: CC.StartAuthSession,
        handles: [RH.NULL, RH.NULL],
        params: params(tpm2b(Buffer.alloc(16, 0x11)), tpm2b(''), Buffer.from([type]), u16b(ALG.NULL), u16b(ALG.SHA256)),
      }),
    );
    return r.handle!;
  }
  function getSessionAuditCmd(signer: number, session: number): Buffer {
    return buildCommand({
      cc: CC.GetSessionAuditDigest,
      handles: [RH.ENDORSEMENT, signer, session],
      sessions: [pw(''), pw('')],
      params: params(tpm2b(NONCE), enc(sigScheme, NULL_SCHEME)),
    });
  }

  test('a session never used for audit has no audit digest: TPM_RC_TYPE for handle 3', () => {
    const tpm = startedEngine();
    const s = startHmacSession(tpm);
    fails(tpm, getSessionAuditCmd(RH.NULL, s), RC.TYPE_H3);
  });

  test('a policy session is not a TPMI_SH_HMAC: TPM_RC_VALUE for handle 3', () => {
    const tpm = startedEngine();
    const s = startHmacSession(tpm, 1);
    fails(tpm, getSessionAuditCmd(RH.NULL, s), RC.VALUE_H3);
  });

  test('an audit session reports H(H(zeros || cp1 || rp1) || cp2 || rp2) and whether it is exclusive', () => {
    const tpm = startedEngine();
    const handle = startHmacSession(tpm);
    const session = tpm.sessions.get(handle)!;
    // Made first: a command that the audit session does not audit ends its exclusivity.
    const signer = createPrimary(tpm, ECDSA_KEY());
    const cp1 = H(ALG.SHA256, 'cp1');
    const cp2 = H(ALG.SHA256, 'cp2');
    const rp = Buffer.from('response parameters');
    // What the session code does after each command the session audits.
    const bit1 = updateSessionAudit(tpm, { session, attributes: SESSION_ATTR.audit | SESSION_ATTR.continueSession }, CC.GetRandom, cp1, rp);
    const bit2 = updateSessionAudit(tpm, { session, attributes: SESSION_ATTR.audit | SESSION_ATTR.continueSession }, CC.GetRandom, cp2, rp);
    assert.equal(bit1, SESSION_ATTR.auditExclusive);
    assert.equal(bit2, SESSION_ATTR.auditExclusive);
    const rpHash = H(ALG.SHA256, u32b(0), u32b(CC.GetRandom), rp);
    const expected = H(ALG.SHA256, H(ALG.SHA256, Buffer.alloc(32), cp1, rpHash), cp2, rpHash);
    const a = attestation(ok(tpm, getSessionAuditCmd(signer.handle, handle)), 'auditInfo');
    assert.ok(a.attest.type === ST.ATTEST_SESSION_AUDIT);
    assert.deepEqual(a.attest.attested, { exclusiveSession: true, sessionDigest: expected });
    assertSigned(signer.pub, a);
    // A command without the audit session ends its exclusivity; auditReset starts it over.
    updateSessionAudit(tpm, undefined, CC.GetRandom, cp1, rp);
    const b = attestation(ok(tpm, getSessionAuditCmd(RH.NULL, handle)), 'auditInfo');
    assert.ok(b.attest.type === ST.ATTEST_SESSION_AUDIT);
    assert.equal(b.attest.attested.exclusiveSession, false);
    updateSessionAudit(tpm, { session, attributes: SESSION_ATTR.audit | SESSION_ATTR.auditReset }, CC.GetRandom, cp1, rp);
    const c = attestation(ok(tpm, getSessionAuditCmd(RH.NULL, handle)), 'auditInfo');
    assert.ok(c.attest.type === ST.ATTEST_SESSION_AUDIT);
    assert.deepEqual(c.attest.attested, { exclusiveSession: true, sessionDigest: H(ALG.SHA256, Buffer.alloc(32), cp1, rpHash) });
  });

  test("an audit session's digest travels in its saved context and comes back with it", () => {
    const tpm = startedEngine();
    const handle = startHmacSession(tpm);
    const cp = H(ALG.SHA256, 'cp');
    const rp = Buffer.from('response parameters');
    updateSessionAudit(tpm, { session: tpm.sessions.get(handle)!, attributes: SESSION_ATTR.audit | SESSION_ATTR.continueSession }, CC.GetRandom, cp, rp);
    const saved = ok(tpm, buildCommand({ cc: CC.ContextSave, handles: [handle] })).params;
    assert.equal(ok(tpm, buildCommand({ cc: CC.ContextLoad, params: saved })).handle, handle);
    const a = attestation(ok(tpm, getSessionAuditCmd(RH.NULL, handle)), 'auditInfo');
    assert.ok(a.attest.type === ST.ATTEST_SESSION_AUDIT);
    assert.deepEqual(a.attest.attested.sessionDigest, H(ALG.SHA256, Buffer.alloc(32), cp, H(ALG.SHA256, u32b(0), u32b(CC.GetRandom), rp)));
  });
});

describe('TPMS_ATTEST', () => {
  test('a structure without TPM_GENERATED_VALUE, or of an unknown type, does not decode (TPM_RC_VALUE)', () => {
    const good = encode(attest, {
      qualifiedSigner: NULL_HANDLE_NAME,
      extraData: EMPTY,
      clockInfo: { clock: 1n, resetCount: 2, restartCount: 3, safe: true },
      firmwareVersion: 4n,
      type: ST.ATTEST_CERTIFY,
      attested: { name: EMPTY, qualifiedName: EMPTY },
    });
    assert.equal(decode(attest, good).type, ST.ATTEST_CERTIFY);
    const badMagic = Buffer.from(good);
    badMagic[0] = 0;
    assert.throws(() => decode(attest, badMagic), (e: { rc?: number }) => e.rc === 0x084);
    const badType = Buffer.from(good);
    badType.writeUInt16BE(ST.CREATION, 4);
    assert.throws(() => decode(attest, badType), (e: { rc?: number }) => e.rc === 0x084);
  });
});

describe('session audit through the dispatcher', () => {
  function startAuditSession(tpm: Tpm2Engine): number {
    const r = ok(
      tpm,
      buildCommand({
        cc: CC.StartAuthSession,
        handles: [RH.NULL, RH.NULL],
        params: params(tpm2b(Buffer.alloc(16, 0x22)), tpm2b(''), Buffer.from([0]), u16b(ALG.NULL), u16b(ALG.SHA256)),
      }),
    );
    return r.handle!;
  }
  const AUDIT = SESSION_ATTR.audit | SESSION_ATTR.continueSession;
  const getRandomAudited = (handle: number, attributes = AUDIT) =>
    buildCommand({ cc: CC.GetRandom, sessions: [{ handle, nonce: Buffer.alloc(16, 0x33), attributes, password: '' }], params: u16b(8) });
  const auditInfo = (tpm: Tpm2Engine, handle: number) =>
    attestation(
      ok(tpm, buildCommand({ cc: CC.GetSessionAuditDigest, handles: [RH.ENDORSEMENT, RH.NULL, handle], sessions: [pw(''), pw('')], params: params(tpm2b(NONCE), enc(sigScheme, NULL_SCHEME)) })),
      'auditInfo',
    ).attest.attested as { exclusiveSession: boolean; sessionDigest: Buffer };

  test('a session with the audit attribute extends its digest with each command it audits, and the response says it is exclusive', () => {
    const tpm = startedEngine();
    const handle = startAuditSession(tpm);
    const r1 = ok(tpm, getRandomAudited(handle));
    const r2 = ok(tpm, getRandomAudited(handle));
    // The response's session attributes carry audit and auditExclusive.
    const attrsOf = (r: { raw: Buffer; parameterSize?: number }) => r.raw[10 + 4 + r.parameterSize! + 2 + 32]!;
    assert.equal(attrsOf(r1) & (SESSION_ATTR.audit | SESSION_ATTR.auditExclusive), SESSION_ATTR.audit | SESSION_ATTR.auditExclusive);
    assert.equal(attrsOf(r2) & SESSION_ATTR.auditExclusive, SESSION_ATTR.auditExclusive);
    const cp = H(ALG.SHA256, u32b(CC.GetRandom), u16b(8));
    const rp = (r: { params: Buffer }) => H(ALG.SHA256, u32b(0), u32b(CC.GetRandom), r.params);
    const expected = H(ALG.SHA256, H(ALG.SHA256, Buffer.alloc(32), cp, rp(r1)), cp, rp(r2));
    const info = auditInfo(tpm, handle);
    assert.deepEqual(info.sessionDigest, expected);
  });

  test('a command without the audit session ends its exclusivity; auditReset starts the digest over', () => {
    const tpm = startedEngine();
    const handle = startAuditSession(tpm);
    ok(tpm, getRandomAudited(handle));
    ok(tpm, buildCommand({ cc: CC.GetRandom, params: u16b(4) }));
    assert.equal(auditInfo(tpm, handle).exclusiveSession, false);
    const r = ok(tpm, getRandomAudited(handle, AUDIT | SESSION_ATTR.auditReset));
    const cp = H(ALG.SHA256, u32b(CC.GetRandom), u16b(8));
    const info = auditInfo(tpm, handle);
    assert.equal(info.exclusiveSession, true);
    assert.deepEqual(info.sessionDigest, H(ALG.SHA256, Buffer.alloc(32), cp, H(ALG.SHA256, u32b(0), u32b(CC.GetRandom), r.params)));
  });

  test('auditExclusive on a session that is not the exclusive audit session is TPM_RC_EXCLUSIVE', () => {
    const tpm = startedEngine();
    const handle = startAuditSession(tpm);
    fails(tpm, getRandomAudited(handle, AUDIT | SESSION_ATTR.auditExclusive), RC.EXCLUSIVE);
  });
});
