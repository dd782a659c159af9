/**
 * HMAC sessions, parameter encryption, StartAuthSession and FlushContext, with every HMAC, KDFa
 * and cipher computed independently with node:crypto.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createHmac } from 'node:crypto';
import { ALG, CAP, CC, PT, RH, SESSION_ATTR } from '../../src/tpm/tpm2/constants.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import {
  buildCommand,
  getCapability,
  hashSequenceStart,
  parse,
  params,
  tpm2b,
  u16b,
  u32b,
  type Response,
} from '../helpers/tpm2-commands.ts';
import { H, exec, fails, nodeHashName, ok, readPcr, startedEngine } from '../helpers/tpm2-engine.ts';

const RC = {
  SIZE_P1: 0x1d5,
  VALUE_P2: 0x2c4,
  MODE_P4: 0x4c9,
  HANDLE_P1: 0x1cb,
  SESSION_MEMORY: 0x903,
  REFERENCE_S0: 0x918,
  BAD_AUTH_S1: 0x9a2,
};

function kdfa(alg: number, key: Uint8Array, label: string, u: Uint8Array, v: Uint8Array, bits: number): Buffer {
  const out: Buffer[] = [];
  const bitsBuf = u32b(bits);
  for (let i = 1, have = 0; have * 8 < bits; i++) {
    const block = createHmac(nodeHashName(alg), key).update(u32b(i)).update(label).update(Buffer.from([0])).update(u).update(v).update(bitsBuf).digest();
    out.push(block);
    have += block.length;
  }
  return Buffer.concat(out).subarray(0, Math.ceil(bits / 8));
}

const hmac = (alg: number, key: Uint8Array, ...parts: Uint8Array[]) => {
  const h = createHmac(nodeHashName(alg), key);
  for (const p of parts) h.update(p);
  return h.digest();
};

interface Sess {
  handle: number;
  authHash: number;
  nonceTPM: Buffer;
  sessionKey: Buffer;
}

const NULL_SYM = u16b(ALG.NULL);

function startSession(
  tpm: Tpm2Engine,
  opts: { authHash?: number; sym?: Buffer; nonceCaller?: Buffer; bind?: number; bindAuth?: Buffer; type?: number } = {},
): Sess {
  const authHash = opts.authHash ?? ALG.SHA256;
  const nonceCaller = opts.nonceCaller ?? Buffer.alloc(16, 0x11);
  const r = ok(
    tpm,
    buildCommand({
      cc: CC.StartAuthSession,
      handles: [RH.NULL, opts.bind ?? RH.NULL],
      params: params(tpm2b(nonceCaller), tpm2b(''), Buffer.from([opts.type ?? 0]), opts.sym ?? NULL_SYM, u16b(authHash)),
    }),
  );
  const rd = r.reader();
  const nonceTPM = Buffer.from(rd.bytes(rd.u16()));
  assert.equal(rd.remaining, 0);
  const size = nonceTPM.length;
  const sessionKey = opts.bindAuth?.length ? kdfa(authHash, opts.bindAuth, 'ATH', nonceTPM, nonceCaller, size * 8) : Buffer.alloc(0);
  return { handle: r.handle!, authHash, nonceTPM, sessionKey };
}

/** A command authorized by one HMAC session, with the HMAC computed as Part 1 §19.6 specifies. */
function hmacCommand(
  s: Sess,
  cc: number,
  handles: number[],
  names: Buffer[],
  paramBytes: Buffer,
  opts: { authValue?: Buffer; nonceCaller?: Buffer; attributes?: number; tamper?: boolean } = {},
) {
  const nonceCaller = opts.nonceCaller ?? Buffer.alloc(32, 0x22);
  const attributes = opts.attributes ?? SESSION_ATTR.continueSession;
  const cpHash = H(s.authHash, u32b(cc), ...names, paramBytes);
  const key = Buffer.concat([s.sessionKey, opts.authValue ?? Buffer.alloc(0)]);
  const mac = hmac(s.authHash, key, cpHash, nonceCaller, s.nonceTPM, Buffer.from([attributes]));
  if (opts.tamper) mac[0]! ^= 1;
  const cmd = buildCommand({ cc, handles, sessions: [{ handle: s.handle, nonce: nonceCaller, attributes, password: mac }], params: paramBytes });
  return { cmd, nonceCaller, attributes, key };
}

/** Checks the response HMAC and rolls the session's nonceTPM. */
function checkResponse(s: Sess, cc: number, r: Response, nonceCaller: Buffer, key: Buffer): void {
  assert.equal(r.sessions.length, 1);
  const a = r.sessions[0]!;
  assert.equal(a.nonce.length, s.nonceTPM.length);
  assert.notDeepEqual(a.nonce, s.nonceTPM, 'a fresh nonceTPM');
  const rpHash = H(s.authHash, u32b(0), u32b(cc), r.params);
  assert.deepEqual(a.hmac, hmac(s.authHash, key, rpHash, a.nonce, nonceCaller, Buffer.from([a.attributes])));
  s.nonceTPM = a.nonce;
}

const extendParams = (fill: number) => Buffer.concat([u32b(1), u16b(ALG.SHA256), Buffer.alloc(32, fill)]);
const handleName = (h: number) => u32b(h);

describe('HMAC sessions', () => {
  test('StartAuthSession starts an unbound, unsalted HMAC session with a nonceTPM of the authHash size', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, { authHash: ALG.SHA384, nonceCaller: Buffer.alloc(20, 1) });
    assert.equal(s.handle >>> 24, 0x02);
    assert.equal(s.nonceTPM.length, 48);
  });

  test('GetCapability(HANDLES, TPM_HT_LOADED_SESSION) lists a loaded session', () => {
    // Part 2 TPM_HT_LOADED_SESSION (0x02): "references both loaded HMAC and loaded policy authorization sessions".
    const tpm = startedEngine();
    const s = startSession(tpm);
    const caps = parse.getCapability(ok(tpm, getCapability(CAP.HANDLES, 0x02000000, 8))).capabilityData;
    assert.deepEqual((caps as { items: number[] }).items, [s.handle]);
  });

  test('TPM_PT_HR_LOADED and TPM_PT_HR_LOADED_AVAIL count loaded sessions', () => {
    const tpm = startedEngine();
    startSession(tpm);
    const props = (parse.getCapability(ok(tpm, getCapability(CAP.TPM_PROPERTIES, PT.HR_LOADED, 2))).capabilityData as {
      properties: { property: number; value: number }[];
    }).properties;
    assert.deepEqual(props, [
      { property: PT.HR_LOADED, value: 1 },
      { property: PT.HR_LOADED_AVAIL, value: 2 },
    ]);
  });

  test('an HMAC session authorizes PCR_Extend and the response HMAC verifies over rpHash and the new nonceTPM', () => {
    const tpm = startedEngine();
    const s = startSession(tpm);
    for (const fill of [1, 2]) {
      const { cmd, nonceCaller, key } = hmacCommand(s, CC.PCR_Extend, [4], [handleName(4)], extendParams(fill));
      const r = ok(tpm, cmd);
      checkResponse(s, CC.PCR_Extend, r, nonceCaller, key);
    }
    const v1 = H(ALG.SHA256, Buffer.alloc(32), Buffer.alloc(32, 1));
    assert.deepEqual(readPcr(tpm, 4), H(ALG.SHA256, v1, Buffer.alloc(32, 2)));
  });

  test('a wrong HMAC for a PCR returns TPM_RC_BAD_AUTH + S1 (0x9A2) and does not extend', () => {
    const tpm = startedEngine();
    const s = startSession(tpm);
    fails(tpm, hmacCommand(s, CC.PCR_Extend, [4], [handleName(4)], extendParams(1), { tamper: true }).cmd, RC.BAD_AUTH_S1);
    assert.deepEqual(readPcr(tpm, 4), Buffer.alloc(32));
  });

  test('a session bound to a sequence authorizes it with the session key alone', () => {
    const tpm = startedEngine();
    const seq = ok(tpm, hashSequenceStart('seq-secret', ALG.SHA256)).handle!;
    const s = startSession(tpm, { bind: seq, bindAuth: Buffer.from('seq-secret'), nonceCaller: Buffer.alloc(32, 0x33) });
    assert.equal(s.sessionKey.length, 32);
    // The Name of a sequence object is the Empty Buffer.
    const { cmd, nonceCaller, key } = hmacCommand(s, CC.SequenceUpdate, [seq], [Buffer.alloc(0)], tpm2b('abc'));
    checkResponse(s, CC.SequenceUpdate, ok(tpm, cmd), nonceCaller, key);
  });

  test('an unbound session authorizes a sequence with its authValue in the HMAC key', () => {
    const tpm = startedEngine();
    const seq = ok(tpm, hashSequenceStart('pw', ALG.SHA256)).handle!;
    const s = startSession(tpm);
    const { cmd } = hmacCommand(s, CC.SequenceUpdate, [seq], [Buffer.alloc(0)], tpm2b('abc'), { authValue: Buffer.from('pw') });
    ok(tpm, cmd);
  });

  test('an HMAC session used without continueSession is flushed after the command', () => {
    const tpm = startedEngine();
    const s = startSession(tpm);
    ok(tpm, hmacCommand(s, CC.PCR_Extend, [4], [handleName(4)], extendParams(1), { attributes: 0 }).cmd);
    fails(tpm, hmacCommand(s, CC.PCR_Extend, [4], [handleName(4)], extendParams(1)).cmd, RC.REFERENCE_S0);
  });

  test('FlushContext removes a session, and flushing it again returns TPM_RC_HANDLE + P1 (0x1CB)', () => {
    const tpm = startedEngine();
    const s = startSession(tpm);
    ok(tpm, buildCommand({ cc: CC.FlushContext, params: u32b(s.handle) }));
    fails(tpm, hmacCommand(s, CC.PCR_Extend, [4], [handleName(4)], extendParams(1)).cmd, RC.REFERENCE_S0);
    fails(tpm, buildCommand({ cc: CC.FlushContext, params: u32b(s.handle) }), RC.HANDLE_P1);
  });

  test('FlushContext removes a hash sequence', () => {
    const tpm = startedEngine();
    const seq = ok(tpm, hashSequenceStart()).handle!;
    ok(tpm, buildCommand({ cc: CC.FlushContext, params: u32b(seq) }));
    const caps = parse.getCapability(ok(tpm, getCapability(CAP.HANDLES, 0x80000000, 8))).capabilityData;
    assert.deepEqual((caps as { items: number[] }).items, []);
  });

  test('StartAuthSession beyond the three session slots returns TPM_RC_SESSION_MEMORY (0x903)', () => {
    const tpm = startedEngine();
    for (let i = 0; i < 3; i++) startSession(tpm);
    const cmd = buildCommand({
      cc: CC.StartAuthSession,
      handles: [RH.NULL, RH.NULL],
      params: params(tpm2b(Buffer.alloc(16)), tpm2b(''), Buffer.from([0]), NULL_SYM, u16b(ALG.SHA256)),
    });
    fails(tpm, cmd, RC.SESSION_MEMORY);
  });

  function startCmd(nonce: Buffer, authHash: number, sym: Buffer = NULL_SYM, salt: Buffer = Buffer.alloc(0)) {
    return buildCommand({
      cc: CC.StartAuthSession,
      handles: [RH.NULL, RH.NULL],
      params: params(tpm2b(nonce), tpm2b(salt), Buffer.from([0]), sym, u16b(authHash)),
    });
  }

  test('StartAuthSession with a nonceCaller shorter than 16 octets returns TPM_RC_SIZE + P1 (0x1D5)', () => {
    fails(startedEngine(), startCmd(Buffer.alloc(15), ALG.SHA256), RC.SIZE_P1);
  });

  test('StartAuthSession with a nonceCaller longer than the authHash digest returns TPM_RC_SIZE + P1 (0x1D5)', () => {
    // Part 3 §11.1 TPM2_StartAuthSession: TPM_RC_SIZE "nonceCaller is less than 16 octets or is greater
    // than the size of the digest produced by authHash".
    fails(startedEngine(), startCmd(Buffer.alloc(32), ALG.SHA1), RC.SIZE_P1);
  });

  test('StartAuthSession with an encryptedSalt but tpmKey TPM_RH_NULL returns TPM_RC_VALUE + P2 (0x2C4)', () => {
    fails(startedEngine(), startCmd(Buffer.alloc(16), ALG.SHA256, NULL_SYM, Buffer.alloc(8)), RC.VALUE_P2);
  });

  test('StartAuthSession with AES in a mode other than CFB returns TPM_RC_MODE + P4 (0x4C9)', () => {
    fails(startedEngine(), startCmd(Buffer.alloc(16), ALG.SHA256, Buffer.concat([u16b(ALG.AES), u16b(128), u16b(ALG.CTR)])), RC.MODE_P4);
  });
});

describe('parameter encryption', () => {
  /** Hash(data) with `data` encrypted by a decrypt-only session; returns the digest the TPM computed. */
  function hashThroughDecryptSession(tpm: Tpm2Engine, s: Sess, symAlg: 'xor' | 'aes128', plain: Buffer): Response {
    const nonceCaller = Buffer.alloc(16, 0x44);
    let cipher: Buffer;
    if (symAlg === 'xor') {
      // Part 1 §21.2: XOR obfuscation uses the session's authHash with label "XOR", nonceNewer = nonceCaller.
      const mask = kdfa(s.authHash, s.sessionKey, 'XOR', nonceCaller, s.nonceTPM, plain.length * 8);
      cipher = Buffer.from(plain.map((b, i) => b ^ mask[i]!));
    } else {
      const km = kdfa(s.authHash, s.sessionKey, 'CFB', nonceCaller, s.nonceTPM, 128 + 128);
      const c = createCipheriv('aes-128-cfb', km.subarray(0, 16), km.subarray(16, 32));
      cipher = Buffer.concat([c.update(plain), c.final()]);
    }
    const p = params(tpm2b(cipher), u16b(ALG.SHA256), u32b(RH.NULL));
    const attributes = SESSION_ATTR.continueSession | SESSION_ATTR.decrypt;
    const cpHash = H(s.authHash, u32b(CC.Hash), p);
    const mac = hmac(s.authHash, s.sessionKey, cpHash, nonceCaller, s.nonceTPM, Buffer.from([attributes]));
    return exec(tpm, buildCommand({ cc: CC.Hash, sessions: [{ handle: s.handle, nonce: nonceCaller, attributes, password: mac }], params: p }));
  }

  test('a decrypt session with AES-128-CFB delivers the plaintext first parameter to the command', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, { sym: Buffer.concat([u16b(ALG.AES), u16b(128), u16b(ALG.CFB)]) });
    const plain = Buffer.from('secret data to be hashed, more than one AES block long');
    const r = hashThroughDecryptSession(tpm, s, 'aes128', plain);
    assert.equal(r.rc, 0);
    assert.deepEqual(parse.hash(r).outHash, H(ALG.SHA256, plain));
  });

  test('a decrypt session with XOR (hash = authHash) delivers the plaintext first parameter', () => {
    const tpm = startedEngine();
    const s = startSession(tpm, { sym: Buffer.concat([u16b(ALG.XOR), u16b(ALG.SHA256)]) });
    const plain = Buffer.from('xor obfuscated');
    const r = hashThroughDecryptSession(tpm, s, 'xor', plain);
    assert.equal(r.rc, 0);
    assert.deepEqual(parse.hash(r).outHash, H(ALG.SHA256, plain));
  });

  test('XOR parameter obfuscation uses the session authHash even when the XOR definition names another hash', () => {
    // Part 1 §21.2 XOR(parameter, hashAlg, sessionValue, nonceNewer, nonceOlder) with hashAlg the session's
    // authHash, as the reference implementation (CryptXORObfuscation(session->authHashAlg, ...)) and
    // tpm2-tss (rsrc_session->authHash) compute it.
    const tpm = startedEngine();
    const s = startSession(tpm, { sym: Buffer.concat([u16b(ALG.XOR), u16b(ALG.SHA1)]) });
    const plain = Buffer.from('xor obfuscated with a different hash');
    const r = hashThroughDecryptSession(tpm, s, 'xor', plain);
    assert.equal(r.rc, 0);
    assert.deepEqual(parse.hash(r).outHash, H(ALG.SHA256, plain));
  });
});
