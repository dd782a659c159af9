/**
 * Policy sessions (Part 1 §19.7, Part 3 §23): trial digests of every policy command computed
 * independently here with node:crypto, real sessions checking their assertions and authorizing
 * entities whose authPolicy they match, the conditions enforced at authorization, tickets, and
 * tpm2-tools' trial-session digests against this engine's.
 */
import { describe, test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { constants, generateKeyPairSync, sign as nodeSign, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ALG, CC, ECC_CURVE, RH, SESSION_ATTR, ST } from '../../src/tpm/tpm2/constants.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import type { TransientObject } from '../../src/tpm/tpm2/state/objects.ts';
import { encode } from '../../src/tpm/wire/codec.ts';
import { OBJECT_ATTR, objectName, publicArea, type Public } from '../../src/tpm/tpm2/types/public.ts';
import { NULL_SCHEME, NULL_SYM } from '../../src/tpm/tpm2/types/public-parms.ts';
import { verifiedTicket } from '../../src/tpm/tpm2/auth/tickets.ts';
import { checkAuthorizations, planSessions } from '../../src/tpm/tpm2/auth/authorize.ts';
import {
  buildCommand,
  clockSet,
  params,
  pcrExtend,
  pw,
  tpm2b,
  u16b,
  u32b,
  type Response,
  type SessionSpec,
} from '../helpers/tpm2-commands.ts';
import { H, HMAC, fails, manualClock, ok, readPcr, startedEngine } from '../helpers/tpm2-engine.ts';
import { VtpmdServer, interopUnavailable, tempDir } from '../interop/harness.ts';

const SE = { HMAC: 0, POLICY: 1, TRIAL: 3 } as const;

/** Expected response codes, numbered as the dispatcher numbers them. */
const RC = {
  VALUE_P1: 0x1c4,
  VALUE_P2: 0x2c4,
  VALUE_P4: 0x4c4,
  SIZE_P1: 0x1d5,
  SIZE_P2: 0x2d5,
  SIZE_P3: 0x3d5,
  HASH_P3: 0x3c3,
  HASH_H2: 0x283,
  VALUE: 0x084,
  NONCE_P1: 0x1cf,
  RANGE_P1: 0x1cd,
  EXPIRED_P1: 0x1e3,
  EXPIRED_P4: 0x4e3,
  TICKET_P5: 0x5e0,
  SIGNATURE_P5: 0x5db,
  SCHEME_P5: 0x5d2,
  POLICY_CC_P1: 0x1e4,
  ATTRIBUTES_H1: 0x182,
  HANDLE_S2: 0xa8b,
  ATTRIBUTES_S1: 0x982,
  POLICY_FAIL_S1: 0x99d,
  POLICY_CC_S1: 0x9a4,
  BAD_AUTH_S1: 0x9a2,
  EXPIRED_S1: 0x9a3,
  MODE_S1: 0x989,
  PCR_CHANGED: 0x128,
  POLICY: 0x126,
  CPHASH: 0x151,
  COMMAND_CODE: 0x143,
  LOCALITY: 0x907,
  AUTH_UNAVAILABLE: 0x12f,
  AUTH_TYPE: 0x124,
  NV_AUTHORIZATION: 0x149,
  NV_UNINITIALIZED: 0x14a,
  RANGE: 0x08d,
};

const ZERO = (alg: number = ALG.SHA256): Buffer => Buffer.alloc(H(alg).length);

/** policyDigest' = H(policyDigest || cc || parts…), computed here without the engine. */
const ext = (alg: number, old: Buffer, cc: number, ...parts: Uint8Array[]) => H(alg, old, u32b(cc), ...parts);
/** PolicyUpdate: H(H(old || cc || name) || policyRef). */
const update = (alg: number, old: Buffer, cc: number, name: Buffer, ref: Buffer) => H(alg, ext(alg, old, cc, name), ref);
const handleName = (h: number) => u32b(h);

interface Sess {
  handle: number;
  authHash: number;
  nonceTPM: Buffer;
}

function startSession(tpm: Tpm2Engine, type: number, authHash: number = ALG.SHA256): Sess {
  const r = ok(
    tpm,
    buildCommand({
      cc: CC.StartAuthSession,
      handles: [RH.NULL, RH.NULL],
      params: params(tpm2b(Buffer.alloc(16, 0x11)), tpm2b(''), Buffer.from([type]), u16b(ALG.NULL), u16b(authHash)),
    }),
  );
  const rd = r.reader();
  return { handle: r.handle!, authHash, nonceTPM: Buffer.from(rd.bytes(rd.u16())) };
}

/** A policy command on a session (handles after any authorized ones), optionally with sessions. */
function policy(cc: number, handles: number[], paramBytes: Buffer = Buffer.alloc(0), sessions?: SessionSpec[]): Buffer {
  return buildCommand({ cc, handles, params: paramBytes, sessions });
}

function getDigest(tpm: Tpm2Engine, s: Sess): Buffer {
  const r = ok(tpm, policy(CC.PolicyGetDigest, [s.handle]));
  const rd = r.reader();
  return Buffer.from(rd.bytes(rd.u16()));
}

const u8b = (v: number) => Buffer.from([v]);
const u64b = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(v);
  return b;
};
const i32b = (v: number) => u32b(v >>> 0);
const pcrSel = (alg: number, pcrs: number[]) => {
  const sel = Buffer.alloc(3);
  for (const p of pcrs) sel[p >> 3]! |= 1 << (p & 7);
  return Buffer.concat([u32b(1), u16b(alg), u8b(3), sel]);
};

const commandCode = (s: Sess, code: number) => policy(CC.PolicyCommandCode, [s.handle], u32b(code));
const policyPcr = (s: Sess, sel: Buffer, pcrDigest: Buffer = Buffer.alloc(0)) => policy(CC.PolicyPCR, [s.handle], params(tpm2b(pcrDigest), sel));
const policySecretParams = (nonceTPM: Buffer, cpHashA: Buffer, policyRef: Buffer, expiration: number) =>
  params(tpm2b(nonceTPM), tpm2b(cpHashA), tpm2b(policyRef), i32b(expiration));
function parseTicketResponse(r: Response) {
  const rd = r.reader();
  const timeout = Buffer.from(rd.bytes(rd.u16()));
  const tag = rd.u16();
  const hierarchy = rd.u32();
  const digest = Buffer.from(rd.bytes(rd.u16()));
  assert.equal(rd.remaining, 0);
  return { timeout, ticket: { tag, hierarchy, digest } };
}
const ticketBytes = (t: { tag: number; hierarchy: number; digest: Buffer }) => params(u16b(t.tag), u32b(t.hierarchy), tpm2b(t.digest));

/** A policy session as the authorization of a command, with an HMAC when a key is given. */
function policyAuth(s: Sess, opts: { cc?: number; names?: Buffer[]; params?: Buffer; key?: Buffer; password?: Buffer | string; attributes?: number } = {}): SessionSpec {
  const nonce = Buffer.alloc(16, 0x33);
  const attributes = opts.attributes ?? SESSION_ATTR.continueSession;
  let mac: Buffer | string = opts.password ?? Buffer.alloc(0);
  if (opts.key) {
    const cpHash = H(s.authHash, u32b(opts.cc!), ...opts.names!, opts.params!);
    mac = HMAC(s.authHash, opts.key, cpHash, nonce, s.nonceTPM, u8b(attributes));
  }
  return { handle: s.handle, nonce, attributes, password: mac };
}

const NEW_TIME = 1_000_000n;
const clockSetParams = u64b(NEW_TIME);

function setOwnerPolicy(tpm: Tpm2Engine, digest: Buffer, alg: number = ALG.SHA256): void {
  tpm.nv.hierarchy.policies.owner = { alg, digest };
}

/** Objects placed in a slot directly, as a loaded key would be. */
interface TestKey {
  handle: number;
  name: Buffer;
  privateKey: KeyObject;
}

function loadKey(tpm: Tpm2Engine, kind: 'rsa' | 'ecc', opts: { attributes?: number; authPolicy?: Buffer; auth?: string } = {}): TestKey {
  const attributes = opts.attributes ?? OBJECT_ATTR.sign | OBJECT_ATTR.userWithAuth | OBJECT_ATTR.sensitiveDataOrigin | OBJECT_ATTR.noDA;
  let pub: Public;
  let privateKey: KeyObject;
  if (kind === 'rsa') {
    const k = generateKeyPairSync('rsa', { modulusLength: 2048 });
    privateKey = k.privateKey;
    const n = Buffer.from(k.publicKey.export({ format: 'jwk' }).n!, 'base64url');
    pub = {
      type: ALG.RSA,
      nameAlg: ALG.SHA256,
      objectAttributes: attributes,
      authPolicy: opts.authPolicy ?? Buffer.alloc(0),
      parameters: { type: ALG.RSA, symmetric: NULL_SYM, scheme: NULL_SCHEME, keyBits: 2048, exponent: 0 },
      unique: { rsa: n },
    };
  } else {
    const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    privateKey = k.privateKey;
    const jwk = k.publicKey.export({ format: 'jwk' });
    pub = {
      type: ALG.ECC,
      nameAlg: ALG.SHA256,
      objectAttributes: attributes,
      authPolicy: opts.authPolicy ?? Buffer.alloc(0),
      parameters: { type: ALG.ECC, symmetric: NULL_SYM, scheme: { scheme: ALG.ECDSA, hashAlg: ALG.SHA256 }, curveID: ECC_CURVE.NIST_P256, kdf: NULL_SCHEME },
      unique: { ecc: { x: Buffer.from(jwk.x!, 'base64url'), y: Buffer.from(jwk.y!, 'base64url') } },
    };
  }
  const name = objectName(pub, encode(publicArea, pub));
  const obj: TransientObject & { hierarchy: number } = {
    kind: 'key',
    auth: Buffer.from(opts.auth ?? ''),
    public: pub,
    authPolicy: pub.authPolicy,
    noDA: (attributes & OBJECT_ATTR.noDA) !== 0,
    name,
    hierarchy: RH.OWNER,
  };
  return { handle: tpm.objects.add(obj), name, privateKey };
}

/** TPMS_NV_PUBLIC bytes and the NV index's Name, computed here. */
function nvIndexName(handle: number, attributes: number, authPolicy: Buffer, dataSize: number): Buffer {
  const body = Buffer.concat([u32b(handle), u16b(ALG.SHA256), u32b(attributes >>> 0), tpm2b(authPolicy), u16b(dataSize)]);
  return Buffer.concat([u16b(ALG.SHA256), H(ALG.SHA256, body)]);
}

const NV = { AUTHREAD: 1 << 18, POLICYREAD: 1 << 19, OWNERREAD: 1 << 17, AUTHWRITE: 1 << 2, OWNERWRITE: 1 << 1, WRITTEN: 1 << 29, NO_DA: 1 << 25 };
const NV_IX = 0x01500001;

function defineIndex(tpm: Tpm2Engine, attributes: number, data: Buffer, opts: { auth?: string; authPolicy?: Buffer } = {}): Buffer {
  tpm.nv.nvIndices.set({
    handle: NV_IX,
    nameAlg: ALG.SHA256,
    attributes: attributes >>> 0,
    authPolicy: opts.authPolicy ?? Buffer.alloc(0),
    dataSize: data.length,
    auth: Buffer.from(opts.auth ?? ''),
    data: Buffer.from(data),
  });
  return nvIndexName(NV_IX, attributes, opts.authPolicy ?? Buffer.alloc(0), data.length);
}

// ---------------------------------------------------------------------------------------------

describe('policy sessions: trial digests', () => {
  test('a new trial or policy session has a policyDigest of zeros of its hash size', () => {
    const tpm = startedEngine();
    assert.deepEqual(getDigest(tpm, startSession(tpm, SE.TRIAL)), Buffer.alloc(32));
    assert.deepEqual(getDigest(tpm, startSession(tpm, SE.POLICY, ALG.SHA384)), Buffer.alloc(48));
    assert.deepEqual(getDigest(tpm, startSession(tpm, SE.TRIAL, ALG.SHA1)), Buffer.alloc(20));
  });

  test('PolicyGetDigest and the policy commands refuse an HMAC session handle with TPM_RC_VALUE + H1', () => {
    const tpm = startedEngine();
    const h = startSession(tpm, SE.HMAC);
    fails(tpm, policy(CC.PolicyGetDigest, [h.handle]), 0x184);
    fails(tpm, policy(CC.PolicyAuthValue, [h.handle]), 0x184);
  });

  test('PolicyPCR without pcrDigest extends H(TPML_PCR_SELECTION || H(PCR values)) of the current PCRs', () => {
    const tpm = startedEngine();
    ok(tpm, pcrExtend(1, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 5) }]));
    const s = startSession(tpm, SE.TRIAL);
    const sel = pcrSel(ALG.SHA256, [0, 1]);
    ok(tpm, policyPcr(s, sel));
    const pcrDigest = H(ALG.SHA256, readPcr(tpm, 0), readPcr(tpm, 1));
    assert.deepEqual(getDigest(tpm, s), ext(ALG.SHA256, ZERO(), CC.PolicyPCR, sel, pcrDigest));
  });

  test('PolicyPCR in a trial session takes a given pcrDigest as it is, matching the PCRs or not', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL, ALG.SHA384);
    const sel = pcrSel(ALG.SHA1, [7]);
    const given = Buffer.alloc(48, 0xab);
    ok(tpm, policyPcr(s, sel, given));
    assert.deepEqual(getDigest(tpm, s), ext(ALG.SHA384, ZERO(ALG.SHA384), CC.PolicyPCR, sel, given));
  });

  test('PolicyPCR with a selection wider than the PCRs is TPM_RC_VALUE + P2', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    const wide = Buffer.concat([u32b(1), u16b(ALG.SHA256), u8b(4), Buffer.from([1, 0, 0, 0])]);
    fails(tpm, policyPcr(s, wide), RC.VALUE_P2);
  });

  test('PolicyAuthValue and PolicyPassword both extend TPM_CC_PolicyAuthValue', () => {
    const tpm = startedEngine();
    const a = startSession(tpm, SE.TRIAL);
    const b = startSession(tpm, SE.TRIAL);
    ok(tpm, policy(CC.PolicyAuthValue, [a.handle]));
    ok(tpm, policy(CC.PolicyPassword, [b.handle]));
    const expected = ext(ALG.SHA256, ZERO(), CC.PolicyAuthValue);
    assert.deepEqual(getDigest(tpm, a), expected);
    assert.deepEqual(getDigest(tpm, b), expected);
  });

  test('PolicyCommandCode, PolicyLocality, PolicyNvWritten extend their code, locality byte and YES/NO', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    ok(tpm, commandCode(s, CC.ClockSet));
    ok(tpm, policy(CC.PolicyLocality, [s.handle], u8b(0x03)));
    ok(tpm, policy(CC.PolicyNvWritten, [s.handle], u8b(1)));
    let d = ext(ALG.SHA256, ZERO(), CC.PolicyCommandCode, u32b(CC.ClockSet));
    d = ext(ALG.SHA256, d, CC.PolicyLocality, u8b(3));
    d = ext(ALG.SHA256, d, CC.PolicyNvWritten, u8b(1));
    assert.deepEqual(getDigest(tpm, s), d);
  });

  test('PolicyCpHash, PolicyNameHash and PolicyTemplate extend their digest', () => {
    const tpm = startedEngine();
    const x = Buffer.alloc(32, 0x42);
    for (const cc of [CC.PolicyCpHash, CC.PolicyNameHash, CC.PolicyTemplate]) {
      const s = startSession(tpm, SE.TRIAL);
      ok(tpm, policy(cc, [s.handle], tpm2b(x)));
      assert.deepEqual(getDigest(tpm, s), ext(ALG.SHA256, ZERO(), cc, x), `cc 0x${cc.toString(16)}`);
      ok(tpm, buildCommand({ cc: CC.FlushContext, params: u32b(s.handle) }));
    }
  });

  test('PolicyCpHash / PolicyNameHash of the wrong size are TPM_RC_SIZE + P1; a second, different cpHash is TPM_RC_CPHASH', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    fails(tpm, policy(CC.PolicyCpHash, [s.handle], tpm2b(Buffer.alloc(20))), RC.SIZE_P1);
    fails(tpm, policy(CC.PolicyNameHash, [s.handle], tpm2b(Buffer.alloc(31))), RC.SIZE_P1);
    ok(tpm, policy(CC.PolicyCpHash, [s.handle], tpm2b(Buffer.alloc(32, 1))));
    ok(tpm, policy(CC.PolicyCpHash, [s.handle], tpm2b(Buffer.alloc(32, 1))));
    fails(tpm, policy(CC.PolicyCpHash, [s.handle], tpm2b(Buffer.alloc(32, 2))), RC.CPHASH);
    fails(tpm, policy(CC.PolicyNameHash, [s.handle], tpm2b(Buffer.alloc(32, 1))), RC.CPHASH);
    fails(tpm, policy(CC.PolicyTemplate, [s.handle], tpm2b(Buffer.alloc(32, 1))), RC.CPHASH);
  });

  test('PolicyOR in a trial session extends H(zeros || TPM_CC_PolicyOR || digests…)', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    const a = Buffer.alloc(32, 0xa);
    const b = Buffer.alloc(32, 0xb);
    ok(tpm, policy(CC.PolicyOR, [s.handle], params(u32b(2), tpm2b(a), tpm2b(b))));
    assert.deepEqual(getDigest(tpm, s), ext(ALG.SHA256, ZERO(), CC.PolicyOR, a, b));
  });

  test('PolicyOR with fewer than two digests is TPM_RC_SIZE + P1', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    fails(tpm, policy(CC.PolicyOR, [s.handle], params(u32b(1), tpm2b(Buffer.alloc(32)))), RC.SIZE_P1);
  });

  test('PolicyCounterTimer extends H(operandB || offset || operation)', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    const operandB = u64b(5000n);
    ok(tpm, policy(CC.PolicyCounterTimer, [s.handle], params(tpm2b(operandB), u16b(8), u16b(0x0007))));
    const args = H(ALG.SHA256, operandB, u16b(8), u16b(0x0007));
    assert.deepEqual(getDigest(tpm, s), ext(ALG.SHA256, ZERO(), CC.PolicyCounterTimer, args));
  });

  test('PolicyCounterTimer beyond TPMS_TIME_INFO is TPM_RC_VALUE + P2 (offset) or TPM_RC_RANGE; an unknown TPM_EO is TPM_RC_VALUE + P3', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    fails(tpm, policy(CC.PolicyCounterTimer, [s.handle], params(tpm2b(u8b(0)), u16b(26), u16b(0))), RC.VALUE_P2);
    fails(tpm, policy(CC.PolicyCounterTimer, [s.handle], params(tpm2b(u64b(0n)), u16b(20), u16b(0))), RC.RANGE);
    fails(tpm, policy(CC.PolicyCounterTimer, [s.handle], params(tpm2b(u8b(0)), u16b(0), u16b(12))), 0x3c4);
  });

  test('PolicyNV in a trial session extends H(argHash || nvName) without reading the index', () => {
    const tpm = startedEngine();
    const name = defineIndex(tpm, NV.OWNERWRITE | NV.OWNERREAD, Buffer.alloc(8));
    const s = startSession(tpm, SE.TRIAL);
    const operandB = Buffer.from([1, 2]);
    ok(tpm, policy(CC.PolicyNV, [RH.OWNER, NV_IX, s.handle], params(tpm2b(operandB), u16b(2), u16b(0)), [pw()]));
    const args = H(ALG.SHA256, operandB, u16b(2), u16b(0));
    assert.deepEqual(getDigest(tpm, s), ext(ALG.SHA256, ZERO(), CC.PolicyNV, args, name));
  });

  test('PolicySecret in a trial session extends PolicyUpdate(name, policyRef) and returns a NULL ticket', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    const ref = Buffer.from('ref');
    const r = ok(tpm, policy(CC.PolicySecret, [RH.OWNER, s.handle], policySecretParams(Buffer.alloc(0), Buffer.alloc(0), ref, 0), [pw()]));
    const { timeout, ticket } = parseTicketResponse(r);
    assert.equal(timeout.length, 0);
    assert.deepEqual(ticket, { tag: ST.AUTH_SECRET, hierarchy: RH.NULL, digest: Buffer.alloc(0) });
    assert.deepEqual(getDigest(tpm, s), update(ALG.SHA256, ZERO(), CC.PolicySecret, handleName(RH.OWNER), ref));
  });

  test('PolicySigned in a trial session needs no signature and extends PolicyUpdate(keyName, policyRef)', () => {
    const tpm = startedEngine();
    const key = loadKey(tpm, 'ecc');
    const s = startSession(tpm, SE.TRIAL);
    ok(tpm, policy(CC.PolicySigned, [key.handle, s.handle], params(policySecretParams(Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0), 0), u16b(ALG.NULL))));
    assert.deepEqual(getDigest(tpm, s), update(ALG.SHA256, ZERO(), CC.PolicySigned, key.name, Buffer.alloc(0)));
  });

  test('PolicyAuthorize in a trial session resets the digest and extends PolicyUpdate(keySign, policyRef)', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    ok(tpm, policy(CC.PolicyAuthValue, [s.handle]));
    const keySign = Buffer.concat([u16b(ALG.SHA256), Buffer.alloc(32, 9)]);
    const ref = Buffer.from('v1');
    const nullTicket = ticketBytes({ tag: ST.VERIFIED, hierarchy: RH.NULL, digest: Buffer.alloc(0) });
    ok(tpm, policy(CC.PolicyAuthorize, [s.handle], params(tpm2b(Buffer.alloc(32)), tpm2b(ref), tpm2b(keySign), nullTicket)));
    assert.deepEqual(getDigest(tpm, s), update(ALG.SHA256, ZERO(), CC.PolicyAuthorize, keySign, ref));
  });

  test('PolicyAuthorize with a keySign of an unknown hash is TPM_RC_HASH + P3, of the wrong size TPM_RC_SIZE + P3', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    const nullTicket = ticketBytes({ tag: ST.VERIFIED, hierarchy: RH.NULL, digest: Buffer.alloc(0) });
    const bad = (keySign: Buffer) => policy(CC.PolicyAuthorize, [s.handle], params(tpm2b(Buffer.alloc(32)), tpm2b(''), tpm2b(keySign), nullTicket));
    fails(tpm, bad(Buffer.concat([u16b(0x0099), Buffer.alloc(32)])), RC.HASH_P3);
    fails(tpm, bad(Buffer.concat([u16b(ALG.SHA256), Buffer.alloc(20)])), RC.SIZE_P3);
  });

  test('PolicyDuplicationSelect extends objectName only when includeObject is YES', () => {
    const tpm = startedEngine();
    const obj = Buffer.concat([u16b(ALG.SHA256), Buffer.alloc(32, 1)]);
    const parent = Buffer.concat([u16b(ALG.SHA256), Buffer.alloc(32, 2)]);
    for (const include of [0, 1]) {
      const s = startSession(tpm, SE.TRIAL);
      ok(tpm, policy(CC.PolicyDuplicationSelect, [s.handle], params(tpm2b(obj), tpm2b(parent), u8b(include))));
      const expected = include
        ? ext(ALG.SHA256, ZERO(), CC.PolicyDuplicationSelect, obj, parent, u8b(1))
        : ext(ALG.SHA256, ZERO(), CC.PolicyDuplicationSelect, parent, u8b(0));
      assert.deepEqual(getDigest(tpm, s), expected);
      // It sets the command code to Duplicate: another command code is refused.
      fails(tpm, commandCode(s, CC.ClockSet), RC.VALUE_P1);
      ok(tpm, buildCommand({ cc: CC.FlushContext, params: u32b(s.handle) }));
    }
  });

  test('a chain of policy commands composes: PolicyCommandCode then PolicyAuthValue then PolicyOR', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    ok(tpm, commandCode(s, CC.ClockSet));
    ok(tpm, policy(CC.PolicyAuthValue, [s.handle]));
    const branch = ext(ALG.SHA256, ext(ALG.SHA256, ZERO(), CC.PolicyCommandCode, u32b(CC.ClockSet)), CC.PolicyAuthValue);
    assert.deepEqual(getDigest(tpm, s), branch);
    const other = Buffer.alloc(32, 0xee);
    ok(tpm, policy(CC.PolicyOR, [s.handle], params(u32b(2), tpm2b(branch), tpm2b(other))));
    assert.deepEqual(getDigest(tpm, s), ext(ALG.SHA256, ZERO(), CC.PolicyOR, branch, other));
  });
});

describe('policy sessions: PolicyRestart and session state', () => {
  test('PolicyRestart returns the digest to zeros and drops the recorded command code', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, commandCode(s, CC.ClockSet));
    fails(tpm, commandCode(s, CC.ClockRateAdjust), RC.VALUE_P1);
    ok(tpm, policy(CC.PolicyRestart, [s.handle]));
    assert.deepEqual(getDigest(tpm, s), Buffer.alloc(32));
    ok(tpm, commandCode(s, CC.ClockRateAdjust));
    assert.deepEqual(getDigest(tpm, s), ext(ALG.SHA256, ZERO(), CC.PolicyCommandCode, u32b(CC.ClockRateAdjust)));
  });

  test('PolicyCommandCode naming a command this TPM does not implement is TPM_RC_POLICY_CC + P1', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    fails(tpm, commandCode(s, 0x1ff), RC.POLICY_CC_P1);
  });

  test('PolicyLocality of zero, or disjoint from an earlier one, is TPM_RC_RANGE + P1; ordinary and extended do not mix', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.POLICY);
    fails(tpm, policy(CC.PolicyLocality, [s.handle], u8b(0)), RC.RANGE_P1);
    ok(tpm, policy(CC.PolicyLocality, [s.handle], u8b(0x06)));
    ok(tpm, policy(CC.PolicyLocality, [s.handle], u8b(0x0c)));
    fails(tpm, policy(CC.PolicyLocality, [s.handle], u8b(0x01)), RC.RANGE_P1);
    fails(tpm, policy(CC.PolicyLocality, [s.handle], u8b(0x40)), RC.RANGE_P1);
  });

  test('PolicyNvWritten asking the opposite of an earlier PolicyNvWritten is TPM_RC_VALUE + P1', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyNvWritten, [s.handle], u8b(1)));
    fails(tpm, policy(CC.PolicyNvWritten, [s.handle], u8b(0)), RC.VALUE_P1);
  });

  test('PolicyDuplicationSelect after PolicyCommandCode is TPM_RC_COMMAND_CODE', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, commandCode(s, CC.ClockSet));
    fails(tpm, policy(CC.PolicyDuplicationSelect, [s.handle], params(tpm2b(''), tpm2b(''), u8b(0))), RC.COMMAND_CODE);
  });

  test('PolicyTicket in a trial session is TPM_RC_ATTRIBUTES + H1', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    const t = ticketBytes({ tag: ST.AUTH_SECRET, hierarchy: RH.OWNER, digest: Buffer.alloc(32) });
    fails(tpm, policy(CC.PolicyTicket, [s.handle], params(tpm2b(u64b(1n)), tpm2b(''), tpm2b(''), tpm2b(handleName(RH.OWNER)), t)), RC.ATTRIBUTES_H1);
  });
});

describe('policy sessions: authorization', () => {
  test('a policy session whose digest equals the owner policy authorizes ClockSet without an HMAC', () => {
    const tpm = startedEngine();
    setOwnerPolicy(tpm, ext(ALG.SHA256, ZERO(), CC.PolicyCommandCode, u32b(CC.ClockSet)));
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, commandCode(s, CC.ClockSet));
    const r = ok(tpm, clockSet(NEW_TIME, policyAuth(s)));
    assert.equal(r.sessions.length, 1);
    assert.deepEqual(r.sessions[0]!.hmac, Buffer.alloc(0));
    assert.equal(tpm.clock.clock, NEW_TIME);
  });

  test('a policy session whose digest is not the authPolicy is TPM_RC_POLICY_FAIL + S1', () => {
    const tpm = startedEngine();
    setOwnerPolicy(tpm, ext(ALG.SHA256, ZERO(), CC.PolicyCommandCode, u32b(CC.ClockSet)));
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyAuthValue, [s.handle]));
    fails(tpm, clockSet(NEW_TIME, policyAuth(s)), RC.POLICY_FAIL_S1);
  });

  test('an authPolicy made with another hash does not match a session of this hash: TPM_RC_POLICY_FAIL + S1', () => {
    const tpm = startedEngine();
    const digest = ext(ALG.SHA256, ZERO(), CC.PolicyCommandCode, u32b(CC.ClockSet));
    setOwnerPolicy(tpm, digest, ALG.SHA384);
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, commandCode(s, CC.ClockSet));
    fails(tpm, clockSet(NEW_TIME, policyAuth(s)), RC.POLICY_FAIL_S1);
  });

  test('an entity without an authPolicy cannot be authorized by a policy: TPM_RC_AUTH_UNAVAILABLE', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.POLICY);
    fails(tpm, clockSet(NEW_TIME, policyAuth(s)), RC.AUTH_UNAVAILABLE);
  });

  test('a trial session in the authorization area is TPM_RC_ATTRIBUTES + S1, even with a matching digest', () => {
    const tpm = startedEngine();
    setOwnerPolicy(tpm, ext(ALG.SHA256, ZERO(), CC.PolicyCommandCode, u32b(CC.ClockSet)));
    const s = startSession(tpm, SE.TRIAL);
    ok(tpm, commandCode(s, CC.ClockSet));
    fails(tpm, clockSet(NEW_TIME, policyAuth(s)), RC.ATTRIBUTES_S1);
  });

  test('the same session twice in one authorization area is TPM_RC_HANDLE + S2', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.POLICY);
    const a = policyAuth(s);
    const cmd = buildCommand({ cc: CC.ClockSet, handles: [RH.OWNER], sessions: [a, { ...a, attributes: SESSION_ATTR.continueSession | SESSION_ATTR.encrypt }], params: clockSetParams });
    fails(tpm, cmd, RC.HANDLE_S2);
  });

  test('PolicyCommandCode for another command is TPM_RC_POLICY_CC + S1', () => {
    const tpm = startedEngine();
    const digest = ext(ALG.SHA256, ZERO(), CC.PolicyCommandCode, u32b(CC.ClockRateAdjust));
    setOwnerPolicy(tpm, digest);
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, commandCode(s, CC.ClockRateAdjust));
    fails(tpm, clockSet(NEW_TIME, policyAuth(s)), RC.POLICY_CC_S1);
  });

  test('a policy session used with continueSession starts over: its digest is zeros after the command', () => {
    const tpm = startedEngine();
    setOwnerPolicy(tpm, ext(ALG.SHA256, ZERO(), CC.PolicyCommandCode, u32b(CC.ClockSet)));
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, commandCode(s, CC.ClockSet));
    ok(tpm, clockSet(NEW_TIME, policyAuth(s)));
    assert.deepEqual(getDigest(tpm, s), Buffer.alloc(32));
    // and its command code is forgotten with it
    ok(tpm, commandCode(s, CC.ClockRateAdjust));
  });

  test('a policy session used without continueSession is flushed', () => {
    const tpm = startedEngine();
    setOwnerPolicy(tpm, ext(ALG.SHA256, ZERO(), CC.PolicyCommandCode, u32b(CC.ClockSet)));
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, commandCode(s, CC.ClockSet));
    ok(tpm, clockSet(NEW_TIME, policyAuth(s, { attributes: 0 })));
    fails(tpm, policy(CC.PolicyGetDigest, [s.handle]), 0x910);
  });

  test('PolicyPCR: the session authorizes while the PCRs are unchanged, and is TPM_RC_PCR_CHANGED after PCR_Extend', () => {
    const tpm = startedEngine();
    const sel = pcrSel(ALG.SHA256, [0, 1]);
    const pcrDigest = H(ALG.SHA256, readPcr(tpm, 0), readPcr(tpm, 1));
    setOwnerPolicy(tpm, ext(ALG.SHA256, ZERO(), CC.PolicyPCR, sel, pcrDigest));
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, policyPcr(s, sel, pcrDigest));
    ok(tpm, clockSet(NEW_TIME, policyAuth(s)));

    ok(tpm, policyPcr(s, sel));
    ok(tpm, pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 1) }]));
    fails(tpm, clockSet(NEW_TIME, policyAuth(s)), RC.PCR_CHANGED);
    // A second PolicyPCR in the same session cannot cover up the change.
    fails(tpm, policyPcr(s, sel), RC.PCR_CHANGED);
  });

  test('PolicyPCR with a pcrDigest that does not match the PCRs is TPM_RC_VALUE + P1; after PCR_Extend the new digest no longer satisfies the policy', () => {
    const tpm = startedEngine();
    const sel = pcrSel(ALG.SHA256, [1]);
    const before = H(ALG.SHA256, readPcr(tpm, 1));
    setOwnerPolicy(tpm, ext(ALG.SHA256, ZERO(), CC.PolicyPCR, sel, before));
    ok(tpm, pcrExtend(1, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 7) }]));
    const s = startSession(tpm, SE.POLICY);
    fails(tpm, policyPcr(s, sel, before), RC.VALUE_P1);
    ok(tpm, policyPcr(s, sel));
    fails(tpm, clockSet(NEW_TIME, policyAuth(s)), RC.POLICY_FAIL_S1);
  });

  test('PolicyOR: a session in one branch authorizes; a digest in no branch is TPM_RC_VALUE + P1', () => {
    const tpm = startedEngine();
    const branchA = ext(ALG.SHA256, ZERO(), CC.PolicyCommandCode, u32b(CC.ClockSet));
    const branchB = ext(ALG.SHA256, ZERO(), CC.PolicyAuthValue);
    const orDigest = ext(ALG.SHA256, ZERO(), CC.PolicyOR, branchA, branchB);
    setOwnerPolicy(tpm, orDigest);
    const list = params(u32b(2), tpm2b(branchA), tpm2b(branchB));
    const s = startSession(tpm, SE.POLICY);
    fails(tpm, policy(CC.PolicyOR, [s.handle], list), RC.VALUE_P1);
    ok(tpm, commandCode(s, CC.ClockSet));
    ok(tpm, policy(CC.PolicyOR, [s.handle], list));
    assert.deepEqual(getDigest(tpm, s), orDigest);
    ok(tpm, clockSet(NEW_TIME, policyAuth(s)));
  });

  test('PolicyAuthValue: the HMAC is keyed with the authValue and the response HMAC verifies; a wrong one is TPM_RC_BAD_AUTH + S1', () => {
    const tpm = startedEngine();
    tpm.nv.hierarchy.auth.owner = Buffer.from('owner-secret');
    setOwnerPolicy(tpm, ext(ALG.SHA256, ZERO(), CC.PolicyAuthValue));
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyAuthValue, [s.handle]));
    const names = [handleName(RH.OWNER)];
    fails(tpm, clockSet(NEW_TIME, policyAuth(s, { cc: CC.ClockSet, names, params: clockSetParams, key: Buffer.from('wrong') })), RC.BAD_AUTH_S1);
    // An empty HMAC does not do either: the authValue must be proven.
    fails(tpm, clockSet(NEW_TIME, policyAuth(s)), RC.BAD_AUTH_S1);
    const key = Buffer.from('owner-secret');
    const auth = policyAuth(s, { cc: CC.ClockSet, names, params: clockSetParams, key });
    const r = ok(tpm, clockSet(NEW_TIME, auth));
    const a = r.sessions[0]!;
    const rpHash = H(ALG.SHA256, u32b(0), u32b(CC.ClockSet), r.params);
    assert.deepEqual(a.hmac, HMAC(ALG.SHA256, key, rpHash, a.nonce, auth.nonce!, u8b(a.attributes)));
  });

  test('PolicyPassword: the HMAC field carries the password and the response has no HMAC; a wrong one is TPM_RC_BAD_AUTH + S1', () => {
    const tpm = startedEngine();
    tpm.nv.hierarchy.auth.owner = Buffer.from('pw');
    setOwnerPolicy(tpm, ext(ALG.SHA256, ZERO(), CC.PolicyAuthValue));
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyPassword, [s.handle]));
    fails(tpm, clockSet(NEW_TIME, policyAuth(s, { password: 'nope' })), RC.BAD_AUTH_S1);
    const r = ok(tpm, clockSet(NEW_TIME, policyAuth(s, { password: 'pw' })));
    assert.deepEqual(r.sessions[0]!.hmac, Buffer.alloc(0));
  });

  test('PolicyLocality: a command from another locality is TPM_RC_LOCALITY', () => {
    const tpm = startedEngine();
    setOwnerPolicy(tpm, ext(ALG.SHA256, ZERO(), CC.PolicyLocality, u8b(0x08)));
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyLocality, [s.handle], u8b(0x08)));
    fails(tpm, clockSet(NEW_TIME, policyAuth(s)), RC.LOCALITY, 0);
  });

  test('PolicyLocality: the allowed locality authorizes (checked by checkAuthorizations with the command locality)', () => {
    const tpm = startedEngine();
    setOwnerPolicy(tpm, ext(ALG.SHA256, ZERO(), CC.PolicyLocality, u8b(0x08)));
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyLocality, [s.handle], u8b(0x08)));
    const handles = [RH.OWNER];
    const sessions = [{ handle: s.handle, nonce: Buffer.alloc(16), attributes: 1, hmac: Buffer.alloc(0) }];
    const plan = planSessions(tpm, sessions, [0], handles, false, false);
    assert.doesNotThrow(() => checkAuthorizations(tpm, plan, CC.ClockSet, handles, clockSetParams, 3));
    assert.throws(() => checkAuthorizations(tpm, plan, CC.ClockSet, handles, clockSetParams, 2), (e: { rc: number }) => e.rc === RC.LOCALITY);
    assert.throws(() => checkAuthorizations(tpm, plan, CC.ClockSet, handles, clockSetParams), (e: { rc: number }) => e.rc === RC.LOCALITY);
  });

  test('PolicyLocality through the engine at the allowed locality', () => {
    const tpm = startedEngine();
    setOwnerPolicy(tpm, ext(ALG.SHA256, ZERO(), CC.PolicyLocality, u8b(0x08)));
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyLocality, [s.handle], u8b(0x08)));
    ok(tpm, clockSet(NEW_TIME, policyAuth(s)), 3);
  });

  test('PolicyCpHash: the session authorizes only the command with those parameters', () => {
    const tpm = startedEngine();
    const cpHash = H(ALG.SHA256, u32b(CC.ClockSet), handleName(RH.OWNER), clockSetParams);
    setOwnerPolicy(tpm, ext(ALG.SHA256, ZERO(), CC.PolicyCpHash, cpHash));
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyCpHash, [s.handle], tpm2b(cpHash)));
    fails(tpm, clockSet(NEW_TIME + 1n, policyAuth(s)), RC.POLICY_FAIL_S1);
    ok(tpm, clockSet(NEW_TIME, policyAuth(s)));
  });

  test('PolicyNameHash: the session authorizes only commands on those handles', () => {
    const tpm = startedEngine();
    const nameHash = H(ALG.SHA256, handleName(RH.PLATFORM));
    tpm.platformPolicy = { alg: ALG.SHA256, digest: ext(ALG.SHA256, ZERO(), CC.PolicyNameHash, nameHash) };
    setOwnerPolicy(tpm, tpm.platformPolicy.digest);
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyNameHash, [s.handle], tpm2b(nameHash)));
    fails(tpm, clockSet(NEW_TIME, policyAuth(s)), RC.POLICY_FAIL_S1);
    ok(tpm, clockSet(NEW_TIME, policyAuth(s), RH.PLATFORM));
  });

  test('PolicySecret against owner auth: the password authorizes, the digest is PolicyUpdate(ownerName, policyRef), and the session then authorizes', () => {
    const tpm = startedEngine();
    tpm.nv.hierarchy.auth.owner = Buffer.from('owner');
    const ref = Buffer.from('ref');
    const expected = update(ALG.SHA256, ZERO(), CC.PolicySecret, handleName(RH.OWNER), ref);
    const s = startSession(tpm, SE.POLICY);
    fails(tpm, policy(CC.PolicySecret, [RH.OWNER, s.handle], policySecretParams(s.nonceTPM, Buffer.alloc(0), ref, 0), [pw('bad')]), RC.BAD_AUTH_S1);
    ok(tpm, policy(CC.PolicySecret, [RH.OWNER, s.handle], policySecretParams(s.nonceTPM, Buffer.alloc(0), ref, 0), [pw('owner')]));
    assert.deepEqual(getDigest(tpm, s), expected);
    setOwnerPolicy(tpm, expected);
    ok(tpm, clockSet(NEW_TIME, policyAuth(s)));
  });

  test('PolicySecret checks nonceTPM (TPM_RC_NONCE + P1) and the cpHashA size (TPM_RC_SIZE + P2)', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.POLICY);
    fails(tpm, policy(CC.PolicySecret, [RH.OWNER, s.handle], policySecretParams(Buffer.alloc(32, 9), Buffer.alloc(0), Buffer.alloc(0), 0), [pw()]), RC.NONCE_P1);
    fails(tpm, policy(CC.PolicySecret, [RH.OWNER, s.handle], policySecretParams(s.nonceTPM, Buffer.alloc(20), Buffer.alloc(0), 0), [pw()]), RC.SIZE_P2);
  });

  test('PolicySecret with a negative expiration returns a ticket that PolicyTicket accepts in another session, with the same digest', () => {
    const clock = manualClock();
    const tpm = startedEngine({ now: clock.now });
    const ref = Buffer.from('r');
    const cpHashA = H(ALG.SHA256, u32b(CC.ClockSet), handleName(RH.OWNER), clockSetParams);
    const a = startSession(tpm, SE.POLICY);
    const r = ok(tpm, policy(CC.PolicySecret, [RH.OWNER, a.handle], policySecretParams(a.nonceTPM, cpHashA, ref, -60), [pw()]));
    const { timeout, ticket } = parseTicketResponse(r);
    assert.equal(timeout.length, 8);
    assert.equal(ticket.tag, ST.AUTH_SECRET);
    assert.equal(ticket.hierarchy, RH.OWNER);
    assert.equal(ticket.digest.length, 32);
    const expected = update(ALG.SHA256, ZERO(), CC.PolicySecret, handleName(RH.OWNER), ref);
    assert.deepEqual(getDigest(tpm, a), expected);

    const ticketParams = (t: typeof ticket, cp = cpHashA) => params(tpm2b(timeout), tpm2b(cp), tpm2b(ref), tpm2b(handleName(RH.OWNER)), ticketBytes(t));
    const b = startSession(tpm, SE.POLICY);
    fails(tpm, policy(CC.PolicyTicket, [b.handle], ticketParams({ ...ticket, digest: Buffer.alloc(32, 1) })), RC.TICKET_P5);
    fails(tpm, policy(CC.PolicyTicket, [b.handle], ticketParams(ticket, Buffer.alloc(32, 2))), RC.TICKET_P5);
    ok(tpm, policy(CC.PolicyTicket, [b.handle], ticketParams(ticket)));
    assert.deepEqual(getDigest(tpm, b), expected);

    // The ticket expires with the authorization it stands for.
    clock.advance(61_000);
    const c = startSession(tpm, SE.POLICY);
    fails(tpm, policy(CC.PolicyTicket, [c.handle], ticketParams(ticket)), RC.EXPIRED_P1);
  });

  test('a policy whose PolicySecret authorization has expired is TPM_RC_EXPIRED + S1 when used', () => {
    const clock = manualClock();
    const tpm = startedEngine({ now: clock.now });
    const expected = update(ALG.SHA256, ZERO(), CC.PolicySecret, handleName(RH.OWNER), Buffer.alloc(0));
    setOwnerPolicy(tpm, expected);
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicySecret, [RH.OWNER, s.handle], policySecretParams(s.nonceTPM, Buffer.alloc(0), Buffer.alloc(0), 10), [pw()]));
    clock.advance(9_000);
    const t = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicySecret, [RH.OWNER, t.handle], policySecretParams(t.nonceTPM, Buffer.alloc(0), Buffer.alloc(0), 10), [pw()]));
    clock.advance(2_000);
    fails(tpm, clockSet(NEW_TIME, policyAuth(s)), RC.EXPIRED_S1);
    ok(tpm, clockSet(NEW_TIME, policyAuth(t)));
  });

  test('an expiration relative to nonceTPM counts from the session start: one already past is TPM_RC_EXPIRED + P4', () => {
    const clock = manualClock();
    const tpm = startedEngine({ now: clock.now });
    const t = startSession(tpm, SE.POLICY);
    clock.advance(2_000);
    fails(tpm, policy(CC.PolicySecret, [RH.OWNER, t.handle], policySecretParams(t.nonceTPM, Buffer.alloc(0), Buffer.alloc(0), 1), [pw()]), RC.EXPIRED_P4);
  });

  test('an expiration without nonceTPM is an absolute TPM Time in seconds: one already past is TPM_RC_EXPIRED + P4', () => {
    const clock = manualClock();
    const tpm = startedEngine({ now: clock.now });
    const t = startSession(tpm, SE.POLICY);
    clock.advance(5_000);
    fails(tpm, policy(CC.PolicySecret, [RH.OWNER, t.handle], policySecretParams(Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0), 4), [pw()]), RC.EXPIRED_P4);
    ok(tpm, policy(CC.PolicySecret, [RH.OWNER, t.handle], policySecretParams(Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0), 6), [pw()]));
  });

  test('a policy session authorizing PolicySecret needs PolicyPassword or PolicyAuthValue: else TPM_RC_MODE + S1', () => {
    const tpm = startedEngine();
    const nvPolicyPassword = ext(ALG.SHA256, ZERO(), CC.PolicyAuthValue);
    const name = defineIndex(tpm, NV.POLICYREAD | NV.AUTHREAD | NV.OWNERWRITE | NV.WRITTEN, Buffer.alloc(4), { auth: 'nvpw', authPolicy: nvPolicyPassword });
    const target = startSession(tpm, SE.POLICY);

    // The index's policy by itself (a bare digest) would do, but not without a secret.
    const bare = startSession(tpm, SE.POLICY);
    tpm.nv.nvIndices.get(NV_IX)!.authPolicy = ZERO();
    fails(tpm, policy(CC.PolicySecret, [NV_IX, target.handle], policySecretParams(Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0), 0), [policyAuth(bare)]), RC.MODE_S1);
    tpm.nv.nvIndices.get(NV_IX)!.authPolicy = nvPolicyPassword;

    const auth = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyPassword, [auth.handle]));
    ok(tpm, policy(CC.PolicySecret, [NV_IX, target.handle], policySecretParams(Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0), 0), [policyAuth(auth, { password: 'nvpw' })]));
    assert.deepEqual(getDigest(tpm, target), update(ALG.SHA256, ZERO(), CC.PolicySecret, name, Buffer.alloc(0)));
  });

  test('an NV index without POLICYREAD cannot be authorized by its policy for reading: TPM_RC_AUTH_UNAVAILABLE', () => {
    const tpm = startedEngine();
    const digest = ext(ALG.SHA256, ZERO(), CC.PolicyAuthValue);
    defineIndex(tpm, NV.AUTHREAD | NV.OWNERWRITE | NV.WRITTEN, Buffer.alloc(4), { authPolicy: digest });
    const target = startSession(tpm, SE.POLICY);
    const auth = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyPassword, [auth.handle]));
    fails(tpm, policy(CC.PolicySecret, [NV_IX, target.handle], policySecretParams(Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0), 0), [policyAuth(auth)]), RC.AUTH_UNAVAILABLE);
  });

  test('PolicyNvWritten: the index must be in the written state the policy asks for', () => {
    const tpm = startedEngine();
    let d = ext(ALG.SHA256, ZERO(), CC.PolicyNvWritten, u8b(0));
    d = ext(ALG.SHA256, d, CC.PolicyAuthValue);
    defineIndex(tpm, NV.POLICYREAD | NV.OWNERWRITE | NV.WRITTEN, Buffer.alloc(4), { authPolicy: d });
    const target = startSession(tpm, SE.POLICY);
    const auth = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyNvWritten, [auth.handle], u8b(0)));
    ok(tpm, policy(CC.PolicyPassword, [auth.handle]));
    const secret = policy(CC.PolicySecret, [NV_IX, target.handle], policySecretParams(Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0), 0), [policyAuth(auth)]);
    fails(tpm, secret, RC.POLICY_FAIL_S1);
    tpm.nv.nvIndices.get(NV_IX)!.attributes &= ~NV.WRITTEN;
    ok(tpm, secret);
  });

  test('PolicyNV compares the index data with operandB: a false comparison is TPM_RC_POLICY, and the policy then authorizes', () => {
    const tpm = startedEngine();
    tpm.nv.hierarchy.auth.owner = Buffer.from('o');
    const data = Buffer.from([0, 0, 0, 5, 0xf0, 0x0f, 0x80, 0x01]);
    const name = defineIndex(tpm, NV.AUTHREAD | NV.OWNERREAD | NV.OWNERWRITE | NV.WRITTEN, data, { auth: 'ix' });
    const s = startSession(tpm, SE.POLICY);
    const nvCmd = (operandB: Buffer, offset: number, op: number, auth = pw('ix'), authHandle = NV_IX) =>
      policy(CC.PolicyNV, [authHandle, NV_IX, s.handle], params(tpm2b(operandB), u16b(offset), u16b(op)), [auth]);
    const table: [Buffer, number, number, boolean][] = [
      [Buffer.from([0, 0, 0, 5]), 0, 0x0000, true], // EQ
      [Buffer.from([0, 0, 0, 5]), 0, 0x0001, false], // NEQ
      [Buffer.from([0, 0, 0, 4]), 0, 0x0003, true], // UNSIGNED_GT
      [Buffer.from([0x7f]), 6, 0x0003, true], // 0x80 > 0x7f unsigned
      [Buffer.from([0x7f]), 6, 0x0002, false], // 0x80 (-128) > 0x7f signed: no
      [Buffer.from([0x7f]), 6, 0x0004, true], // SIGNED_LT
      [Buffer.from([0xf0]), 4, 0x000a, true], // BITSET
      [Buffer.from([0xf0]), 5, 0x000b, true], // BITCLEAR
      [Buffer.from([0x0f]), 4, 0x000b, true],
      [Buffer.from([0x01]), 4, 0x000a, false],
      [Buffer.from([0x80, 0x01]), 6, 0x0007, true], // UNSIGNED_GE (equal)
      [Buffer.from([0x80, 0x02]), 6, 0x0009, true], // UNSIGNED_LE
    ];
    let expected: Buffer = ZERO();
    for (const [operandB, offset, op, holds] of table) {
      if (!holds) {
        fails(tpm, nvCmd(operandB, offset, op), RC.POLICY);
        continue;
      }
      ok(tpm, nvCmd(operandB, offset, op));
      expected = ext(ALG.SHA256, expected, CC.PolicyNV, H(ALG.SHA256, operandB, u16b(offset), u16b(op)), name);
    }
    assert.deepEqual(getDigest(tpm, s), expected);
    fails(tpm, nvCmd(Buffer.from([1]), 9, 0), RC.VALUE_P2);
    fails(tpm, nvCmd(Buffer.alloc(4), 6, 0), RC.SIZE_P1);
    // The owner reads with OWNERREAD.
    ok(tpm, nvCmd(Buffer.from([0, 0, 0, 5]), 0, 0, pw('o'), RH.OWNER));
    // The policy satisfied by PolicyNV authorizes.
    const policyDigest = ext(ALG.SHA256, ZERO(), CC.PolicyNV, H(ALG.SHA256, Buffer.from([5]), u16b(3), u16b(0)), name);
    setOwnerPolicy(tpm, policyDigest);
    ok(tpm, policy(CC.PolicyRestart, [s.handle]));
    ok(tpm, nvCmd(Buffer.from([5]), 3, 0));
    ok(tpm, clockSet(NEW_TIME, policyAuth(s)));
  });

  test('PolicyNV refuses an unwritten index (TPM_RC_NV_UNINITIALIZED) and the owner without OWNERREAD (TPM_RC_NV_AUTHORIZATION)', () => {
    const tpm = startedEngine();
    defineIndex(tpm, NV.AUTHREAD | NV.OWNERWRITE, Buffer.alloc(4));
    const s = startSession(tpm, SE.POLICY);
    const cmd = (authHandle: number) => policy(CC.PolicyNV, [authHandle, NV_IX, s.handle], params(tpm2b(Buffer.alloc(1)), u16b(0), u16b(0)), [pw()]);
    fails(tpm, cmd(NV_IX), RC.NV_UNINITIALIZED);
    tpm.nv.nvIndices.get(NV_IX)!.attributes |= NV.WRITTEN;
    fails(tpm, cmd(RH.OWNER), RC.NV_AUTHORIZATION);
    ok(tpm, cmd(NV_IX));
  });

  test('PolicyAuthorizeNV: the policy held in an index (a TPMT_HA) is replaced by H(0 || CC || nvName); another policy, another hash or an unreadable index is refused', () => {
    const tpm = startedEngine();
    // PolicyPassword extends as PolicyAuthValue does.
    const approved = ext(ALG.SHA256, ZERO(), CC.PolicyAuthValue);
    const name = defineIndex(tpm, NV.AUTHREAD | NV.AUTHWRITE | NV.WRITTEN, Buffer.concat([u16b(ALG.SHA256), approved]), { auth: 'ix' });
    const authorizeNv = (s: Sess, auth = pw('ix'), authHandle = NV_IX) => policy(CC.PolicyAuthorizeNV, [authHandle, NV_IX, s.handle], Buffer.alloc(0), [auth]);
    const expected = ext(ALG.SHA256, ZERO(), CC.PolicyAuthorizeNV, name);
    // A trial session computes the digest without comparing the index's policy.
    const trial = startSession(tpm, SE.TRIAL);
    ok(tpm, authorizeNv(trial));
    assert.deepEqual(getDigest(tpm, trial), expected);
    const flush = (x: Sess) => ok(tpm, buildCommand({ cc: CC.FlushContext, params: u32b(x.handle) }));
    flush(trial);
    const s = startSession(tpm, SE.POLICY);
    fails(tpm, authorizeNv(s), RC.VALUE);
    ok(tpm, policy(CC.PolicyPassword, [s.handle]));
    ok(tpm, authorizeNv(s));
    assert.deepEqual(getDigest(tpm, s), expected);
    // The owner cannot read this index (no OWNERREAD).
    const s2 = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyPassword, [s2.handle]));
    fails(tpm, authorizeNv(s2, pw(''), RH.OWNER), RC.NV_AUTHORIZATION);
    flush(s2);
    // A SHA-384 session does not match the SHA-256 policy in the index.
    const s384 = startSession(tpm, SE.POLICY, ALG.SHA384);
    fails(tpm, authorizeNv(s384), RC.HASH_H2);
    // The policy satisfied through the index authorizes.
    setOwnerPolicy(tpm, expected);
    ok(tpm, clockSet(NEW_TIME, policyAuth(s)));
  });

  test('PolicyCounterTimer: a false comparison with TPMS_TIME_INFO is TPM_RC_POLICY; a true one extends the digest', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, SE.POLICY);
    // resetCount (offset 16) of a fresh TPM after one Startup is 1.
    fails(tpm, policy(CC.PolicyCounterTimer, [s.handle], params(tpm2b(u32b(2)), u16b(16), u16b(0x0000))), RC.POLICY);
    ok(tpm, policy(CC.PolicyCounterTimer, [s.handle], params(tpm2b(u32b(1)), u16b(16), u16b(0x0000))));
    ok(tpm, policy(CC.PolicyCounterTimer, [s.handle], params(tpm2b(u32b(2)), u16b(16), u16b(0x0005))));
  });

  test('an object with userWithAuth clear refuses its password (TPM_RC_AUTH_UNAVAILABLE) and accepts a policy session', () => {
    const tpm = startedEngine();
    const objPolicy = ext(ALG.SHA256, ZERO(), CC.PolicyAuthValue);
    const key = loadKey(tpm, 'ecc', { attributes: OBJECT_ATTR.sign | OBJECT_ATTR.noDA, authPolicy: objPolicy, auth: 'k' });
    const target = startSession(tpm, SE.POLICY);
    const secret = (auth: SessionSpec) => policy(CC.PolicySecret, [key.handle, target.handle], policySecretParams(Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0), 0), [auth]);
    fails(tpm, secret(pw('k')), RC.AUTH_UNAVAILABLE);
    const auth = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyAuthValue, [auth.handle]));
    const cpParams = policySecretParams(Buffer.alloc(0), Buffer.alloc(0), Buffer.alloc(0), 0);
    const names = [key.name, handleName(target.handle)];
    fails(tpm, secret(policyAuth(auth, { cc: CC.PolicySecret, names, params: cpParams, key: Buffer.from('x') })), RC.BAD_AUTH_S1);
    ok(tpm, secret(policyAuth(auth, { cc: CC.PolicySecret, names, params: cpParams, key: Buffer.from('k') })));
    assert.deepEqual(getDigest(tpm, target), update(ALG.SHA256, ZERO(), CC.PolicySecret, key.name, Buffer.alloc(0)));
  });

  test('the ADMIN role of an object with adminWithPolicy needs a policy session naming the command', () => {
    const tpm = startedEngine();
    const objPolicy = ext(ALG.SHA256, ZERO(), CC.PolicyAuthValue);
    const key = loadKey(tpm, 'ecc', { attributes: OBJECT_ATTR.sign | OBJECT_ATTR.userWithAuth | OBJECT_ATTR.adminWithPolicy | OBJECT_ATTR.noDA, authPolicy: objPolicy });
    const changeAuth = (auth: SessionSpec) => buildCommand({ cc: CC.ObjectChangeAuth, handles: [key.handle, key.handle], sessions: [auth], params: tpm2b('new') });
    fails(tpm, changeAuth(pw()), RC.AUTH_TYPE);
    const s = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyAuthValue, [s.handle]));
    fails(tpm, changeAuth(policyAuth(s)), RC.POLICY_FAIL_S1);
  });

  test('a password for the ADMIN role of an NV index is TPM_RC_AUTH_TYPE', () => {
    const tpm = startedEngine();
    defineIndex(tpm, NV.AUTHREAD | NV.AUTHWRITE, Buffer.alloc(4), { authPolicy: Buffer.alloc(32) });
    fails(tpm, buildCommand({ cc: CC.NV_ChangeAuth, handles: [NV_IX], sessions: [pw()], params: tpm2b('new') }), RC.AUTH_TYPE);
  });
});

describe('policy sessions: PolicySigned and PolicyAuthorize', () => {
  function signedParams(nonceTPM: Buffer, expiration: number, ref: Buffer, sig: Buffer, cpHashA = Buffer.alloc(0)) {
    return params(tpm2b(nonceTPM), tpm2b(cpHashA), tpm2b(ref), i32b(expiration), sig);
  }
  const aHashInput = (nonceTPM: Buffer, expiration: number, ref: Buffer, cpHashA = Buffer.alloc(0)) => Buffer.concat([nonceTPM, i32b(expiration), cpHashA, ref]);

  for (const variant of ['rsassa', 'rsapss', 'ecdsa'] as const) {
    test(`PolicySigned verifies an ${variant.toUpperCase()} signature over H(nonceTPM || expiration || cpHashA || policyRef)`, () => {
      const tpm = startedEngine();
      const key = loadKey(tpm, variant === 'ecdsa' ? 'ecc' : 'rsa');
      const s = startSession(tpm, SE.POLICY);
      const ref = Buffer.from('approve');
      const data = aHashInput(s.nonceTPM, 0, ref);
      let sig: Buffer;
      if (variant === 'ecdsa') {
        const rs = nodeSign('sha256', data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
        sig = params(u16b(ALG.ECDSA), u16b(ALG.SHA256), tpm2b(rs.subarray(0, 32)), tpm2b(rs.subarray(32)));
      } else {
        const opts = variant === 'rsapss' ? { key: key.privateKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 } : key.privateKey;
        sig = params(u16b(variant === 'rsapss' ? ALG.RSAPSS : ALG.RSASSA), u16b(ALG.SHA256), tpm2b(nodeSign('sha256', data, opts)));
      }
      const tampered = Buffer.from(sig);
      tampered[tampered.length - 1]! ^= 1;
      fails(tpm, policy(CC.PolicySigned, [key.handle, s.handle], signedParams(s.nonceTPM, 0, ref, tampered)), RC.SIGNATURE_P5);
      fails(tpm, policy(CC.PolicySigned, [key.handle, s.handle], signedParams(s.nonceTPM, 0, Buffer.from('other'), sig)), RC.SIGNATURE_P5);
      ok(tpm, policy(CC.PolicySigned, [key.handle, s.handle], signedParams(s.nonceTPM, 0, ref, sig)));
      assert.deepEqual(getDigest(tpm, s), update(ALG.SHA256, ZERO(), CC.PolicySigned, key.name, ref));
    });
  }

  test('PolicySigned: a signature scheme the key cannot verify is TPM_RC_SCHEME + P5, a NULL signature too', () => {
    const tpm = startedEngine();
    const key = loadKey(tpm, 'rsa');
    const s = startSession(tpm, SE.POLICY);
    const eccSig = params(u16b(ALG.ECDSA), u16b(ALG.SHA256), tpm2b(Buffer.alloc(32, 1)), tpm2b(Buffer.alloc(32, 1)));
    fails(tpm, policy(CC.PolicySigned, [key.handle, s.handle], signedParams(Buffer.alloc(0), 0, Buffer.alloc(0), eccSig)), RC.SCHEME_P5);
    fails(tpm, policy(CC.PolicySigned, [key.handle, s.handle], signedParams(Buffer.alloc(0), 0, Buffer.alloc(0), u16b(ALG.NULL))), RC.SCHEME_P5);
  });

  test('PolicySigned with a nonceTPM not the session\'s is TPM_RC_NONCE + P1', () => {
    const tpm = startedEngine();
    const key = loadKey(tpm, 'ecc');
    const s = startSession(tpm, SE.POLICY);
    fails(tpm, policy(CC.PolicySigned, [key.handle, s.handle], signedParams(Buffer.alloc(32, 1), 0, Buffer.alloc(0), u16b(ALG.NULL))), RC.NONCE_P1);
  });

  test('PolicySigned with a negative expiration returns a ticket for PolicyTicket (TPM_ST_AUTH_SIGNED)', () => {
    const tpm = startedEngine();
    const key = loadKey(tpm, 'ecc');
    const s = startSession(tpm, SE.POLICY);
    const data = aHashInput(s.nonceTPM, -30, Buffer.alloc(0));
    const rs = nodeSign('sha256', data, { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
    const sig = params(u16b(ALG.ECDSA), u16b(ALG.SHA256), tpm2b(rs.subarray(0, 32)), tpm2b(rs.subarray(32)));
    const { timeout, ticket } = parseTicketResponse(ok(tpm, policy(CC.PolicySigned, [key.handle, s.handle], signedParams(s.nonceTPM, -30, Buffer.alloc(0), sig))));
    assert.equal(ticket.tag, ST.AUTH_SIGNED);
    assert.equal(ticket.hierarchy, RH.OWNER);
    const t = startSession(tpm, SE.POLICY);
    ok(tpm, policy(CC.PolicyTicket, [t.handle], params(tpm2b(timeout), tpm2b(''), tpm2b(''), tpm2b(key.name), ticketBytes(ticket))));
    assert.deepEqual(getDigest(tpm, t), getDigest(tpm, s));
    // A ticket for PolicySigned does not pass for PolicySecret.
    const u = startSession(tpm, SE.POLICY);
    fails(tpm, policy(CC.PolicyTicket, [u.handle], params(tpm2b(timeout), tpm2b(''), tpm2b(''), tpm2b(key.name), ticketBytes({ ...ticket, tag: ST.AUTH_SECRET }))), RC.TICKET_P5);
  });

  test('PolicyAuthorize: a TPMT_TK_VERIFIED over H(approvedPolicy || policyRef) by keySign turns the approved policy into the authorizing one', () => {
    const tpm = startedEngine();
    const keySign = Buffer.concat([u16b(ALG.SHA256), H(ALG.SHA256, 'approval key')]);
    const ref = Buffer.from('config-7');
    const approved = ext(ALG.SHA256, ZERO(), CC.PolicyCommandCode, u32b(CC.ClockSet));
    const authorizeDigest = update(ALG.SHA256, ZERO(), CC.PolicyAuthorize, keySign, ref);
    setOwnerPolicy(tpm, authorizeDigest);
    const good = verifiedTicket(tpm, RH.OWNER, H(ALG.SHA256, approved, ref), keySign);
    const authorize = (s: Sess, approvedPolicy: Buffer, ticket: { tag: number; hierarchy: number; digest: Buffer }) =>
      policy(CC.PolicyAuthorize, [s.handle], params(tpm2b(approvedPolicy), tpm2b(ref), tpm2b(keySign), ticketBytes(ticket)));

    const s = startSession(tpm, SE.POLICY);
    ok(tpm, commandCode(s, CC.ClockSet));
    fails(tpm, authorize(s, Buffer.alloc(32, 3), good), RC.VALUE_P1);
    fails(tpm, authorize(s, approved, { ...good, digest: Buffer.alloc(32) }), RC.VALUE_P4);
    fails(tpm, authorize(s, approved, verifiedTicket(tpm, RH.ENDORSEMENT, H(ALG.SHA256, approved, Buffer.from('x')), keySign)), RC.VALUE_P4);
    // A NULL-hierarchy ticket (what VerifySignature gives for a NULL-hierarchy key) proves nothing.
    fails(tpm, authorize(s, approved, verifiedTicket(tpm, RH.NULL, H(ALG.SHA256, approved, ref), keySign)), RC.VALUE_P4);
    ok(tpm, authorize(s, approved, good));
    assert.deepEqual(getDigest(tpm, s), authorizeDigest);
    // The command code recorded before PolicyAuthorize still limits the session.
    fails(tpm, buildCommand({ cc: CC.ClockRateAdjust, handles: [RH.OWNER], sessions: [policyAuth(s)], params: u8b(0) }), RC.POLICY_CC_S1);
    const s2 = startSession(tpm, SE.POLICY);
    ok(tpm, commandCode(s2, CC.ClockSet));
    ok(tpm, authorize(s2, approved, good));
    ok(tpm, clockSet(NEW_TIME, policyAuth(s2)));
  });

  test('the TPMT_TK_VERIFIED computation is HMAC(proof, TPM_ST_VERIFIED || digest || keyName) under the hierarchy proof', () => {
    const tpm = startedEngine();
    const d = H(ALG.SHA256, 'x');
    const name = Buffer.concat([u16b(ALG.SHA256), H(ALG.SHA256, 'k')]);
    const t = verifiedTicket(tpm, RH.OWNER, d, name);
    assert.deepEqual(t.digest, HMAC(ALG.SHA256, tpm.nv.hierarchy.proofs.owner, u16b(ST.VERIFIED), d, name));
    assert.equal(t.tag, ST.VERIFIED);
    assert.deepEqual(verifiedTicket(tpm, RH.NULL, d, name), { tag: ST.VERIFIED, hierarchy: RH.NULL, digest: Buffer.alloc(0) });
  });
});

// ---------------------------------------------------------------------------------------------
// tpm2-tools computes policies with trial sessions against a TPM: tpm2_createpolicy needs no
// session files (it starts, uses and flushes its trial session in one process).

describe('tpm2-tools: policy digests and policy sessions', { skip: interopUnavailable('swtpm') }, () => {
  const state = tempDir('vtpmd-policy-interop-');
  const files = tempDir('vtpmd-policy-files-');
  let server: VtpmdServer;
  before(async () => {
    server = await VtpmdServer.start('swtpm', state.path);
    await server.tool('tpm2_startup', ['-c']);
  });
  after(async () => {
    await server?.stop();
    state.remove();
    files.remove();
  });

  test('tpm2_createpolicy --policy-pcr -l sha256:0,1 equals the digest computed here and by an in-process trial session', async () => {
    const out = join(files.path, 'pcr.policy');
    await server.tool('tpm2_createpolicy', ['--policy-pcr', '-l', 'sha256:0,1', '-L', out]);
    const fromTools = readFileSync(out);
    // A freshly started TPM: PCR 0 and 1 are zeros (startup locality 0).
    const sel = pcrSel(ALG.SHA256, [0, 1]);
    const expected = ext(ALG.SHA256, ZERO(), CC.PolicyPCR, sel, H(ALG.SHA256, Buffer.alloc(32), Buffer.alloc(32)));
    assert.equal(fromTools.toString('hex'), expected.toString('hex'));
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    ok(tpm, policyPcr(s, sel));
    assert.equal(getDigest(tpm, s).toString('hex'), expected.toString('hex'));
  });

  test('tpm2_createpolicy --policy-pcr with a PCR values file (-f) over sha1 and sha256 banks equals this engine\'s trial digest', async () => {
    const values = Buffer.concat([H(ALG.SHA1, 'a'), H(ALG.SHA256, 'b'), H(ALG.SHA256, 'c')]);
    const valuesFile = join(files.path, 'pcrs.bin');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(valuesFile, values);
    const out = join(files.path, 'pcr2.policy');
    await server.tool('tpm2_createpolicy', ['--policy-pcr', '-l', 'sha1:7+sha256:4,9', '-f', valuesFile, '-L', out]);
    const fromTools = readFileSync(out);
    const sel = Buffer.concat([u32b(2), u16b(ALG.SHA1), u8b(3), Buffer.from([0x80, 0, 0]), u16b(ALG.SHA256), u8b(3), Buffer.from([0x10, 0x02, 0])]);
    const pcrDigest = H(ALG.SHA256, values);
    const expected = ext(ALG.SHA256, ZERO(), CC.PolicyPCR, sel, pcrDigest);
    assert.equal(fromTools.toString('hex'), expected.toString('hex'));
    const tpm = startedEngine();
    const s = startSession(tpm, SE.TRIAL);
    ok(tpm, policy(CC.PolicyPCR, [s.handle], params(tpm2b(pcrDigest), sel)));
    assert.equal(getDigest(tpm, s).toString('hex'), fromTools.toString('hex'));
  });

  // The tools below keep their session in a file between invocations (ContextSave / ContextLoad).
  const f = (name: string) => join(files.path, name);
  // tpm2_createpolicy leaves its trial session loaded (swtpm sees the same): free the slots.
  const flushLoaded = () => server.tool('tpm2_flushcontext', ['--loaded-session']);

  test('tpm2_policy* tools chained in one trial session write the digests computed here', async () => {
    await flushLoaded();
    await server.tool('tpm2_startauthsession', ['-S', f('trial.ctx')]);
    try {
      await server.tool('tpm2_policycommandcode', ['-S', f('trial.ctx'), '-L', f('a.pol'), 'TPM2_CC_ClockSet']);
      let d = ext(ALG.SHA256, ZERO(), CC.PolicyCommandCode, u32b(CC.ClockSet));
      assert.equal(readFileSync(f('a.pol')).toString('hex'), d.toString('hex'));
      await server.tool('tpm2_policylocality', ['-S', f('trial.ctx'), '-L', f('b.pol'), 'three']);
      d = ext(ALG.SHA256, d, CC.PolicyLocality, u8b(0x08));
      assert.equal(readFileSync(f('b.pol')).toString('hex'), d.toString('hex'));
      await server.tool('tpm2_policyauthvalue', ['-S', f('trial.ctx'), '-L', f('c.pol')]);
      d = ext(ALG.SHA256, d, CC.PolicyAuthValue);
      assert.equal(readFileSync(f('c.pol')).toString('hex'), d.toString('hex'));
      await server.tool('tpm2_policynvwritten', ['-S', f('trial.ctx'), '-L', f('d.pol'), 's']);
      d = ext(ALG.SHA256, d, CC.PolicyNvWritten, u8b(1));
      assert.equal(readFileSync(f('d.pol')).toString('hex'), d.toString('hex'));
      await server.tool('tpm2_policyor', ['-S', f('trial.ctx'), '-L', f('e.pol'), `sha256:${f('a.pol')},${f('d.pol')}`]);
      d = ext(ALG.SHA256, ZERO(), CC.PolicyOR, readFileSync(f('a.pol')), readFileSync(f('d.pol')));
      assert.equal(readFileSync(f('e.pol')).toString('hex'), d.toString('hex'));
      await server.tool('tpm2_policyrestart', ['-S', f('trial.ctx')]);
      await server.tool('tpm2_policysecret', ['-S', f('trial.ctx'), '-c', 'o', '-L', f('g.pol')]);
      d = update(ALG.SHA256, ZERO(), CC.PolicySecret, handleName(RH.OWNER), Buffer.alloc(0));
      assert.equal(readFileSync(f('g.pol')).toString('hex'), d.toString('hex'));
    } finally {
      await server.tool('tpm2_flushcontext', [f('trial.ctx')]);
    }
  });

  test('tpm2_setclock authorized by a policy session: PolicyPassword and PolicyAuthValue (ESYS computes and checks the HMACs)', async () => {
    const trial = async (assertion: string, out: string) => {
      await server.tool('tpm2_startauthsession', ['-S', f('t.ctx')]);
      await server.tool('tpm2_policycommandcode', ['-S', f('t.ctx'), 'TPM2_CC_ClockSet']);
      await server.tool(assertion, ['-S', f('t.ctx'), '-L', f(out)]);
      await server.tool('tpm2_flushcontext', [f('t.ctx')]);
    };
    const realSession = async (assertion: string) => {
      await server.tool('tpm2_startauthsession', ['--policy-session', '-S', f('s.ctx')]);
      await server.tool('tpm2_policycommandcode', ['-S', f('s.ctx'), 'TPM2_CC_ClockSet']);
      await server.tool(assertion, ['-S', f('s.ctx')]);
    };
    await flushLoaded();
    await trial('tpm2_policypassword', 'pw.pol');
    await trial('tpm2_policyauthvalue', 'av.pol');
    await server.tool('tpm2_changeauth', ['-c', 'o', 'ownerpw']);
    try {
      await server.tool('tpm2_setprimarypolicy', ['-C', 'o', '-P', 'ownerpw', '-L', f('pw.pol'), '-g', 'sha256']);
      await realSession('tpm2_policypassword');
      try {
        await assert.rejects(server.tool('tpm2_setclock', ['-c', 'o', '-p', `session:${f('s.ctx')}+wrong`, '90000000']), /0x9A2|BAD_AUTH|authorization/i);
        await server.tool('tpm2_setclock', ['-c', 'o', '-p', `session:${f('s.ctx')}+ownerpw`, '90000000']);
      } finally {
        await server.tool('tpm2_flushcontext', [f('s.ctx')]);
      }
      await server.tool('tpm2_setprimarypolicy', ['-C', 'o', '-P', 'ownerpw', '-L', f('av.pol'), '-g', 'sha256']);
      await realSession('tpm2_policyauthvalue');
      try {
        await assert.rejects(server.tool('tpm2_setclock', ['-c', 'o', '-p', `session:${f('s.ctx')}+wrong`, '91000000']), /0x9A2|BAD_AUTH|authorization/i);
        await server.tool('tpm2_setclock', ['-c', 'o', '-p', `session:${f('s.ctx')}+ownerpw`, '91000000']);
        // The session's policy started over when it was used: it no longer satisfies the owner policy.
        await assert.rejects(server.tool('tpm2_setclock', ['-c', 'o', '-p', `session:${f('s.ctx')}+ownerpw`, '92000000']), /0x99D|policy/i);
      } finally {
        await server.tool('tpm2_flushcontext', [f('s.ctx')]);
      }
      const out = await server.tool('tpm2_readclock', []);
      assert.ok(BigInt(/clock:\s*(\d+)/.exec(out)![1]!) >= 91000000n);
    } finally {
      await server.tool('tpm2_changeauth', ['-c', 'o', '-p', 'ownerpw']);
    }
  });
});
