import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ALG, CC, RH, SESSION_ATTR, ST, SU } from '../../src/tpm/tpm2/constants.ts';
import {
  buildCommand,
  getRandom,
  hexRc,
  params,
  parse,
  parseResponse,
  pcrEvent,
  pcrExtend,
  pcrRead,
  pw,
  responseProblem,
  selection,
  startup,
  tpm2b,
  u16b,
  u32b,
} from '../helpers/tpm2-commands.ts';
import { H, exec, fails, newEngine, ok, pcrUpdateCounter, readPcr, startedEngine } from '../helpers/tpm2-engine.ts';

const RC = {
  BAD_TAG: 0x01e,
  SIZE: 0x095,
  INSUFFICIENT: 0x09a,
  COMMAND_SIZE: 0x142,
  COMMAND_CODE: 0x143,
  AUTHSIZE: 0x144,
  AUTH_CONTEXT: 0x145,
  AUTH_MISSING: 0x125,
  VALUE_H1: 0x184,
  VALUE_H2: 0x284,
  INSUFFICIENT_P1: 0x1da,
  INSUFFICIENT_P3: 0x3da,
  SIZE_P1: 0x1d5,
  HASH_P2: 0x2c3,
  NONCE_S1: 0x98f,
  ATTRIBUTES_S1: 0x982,
  HANDLE_S1: 0x98b,
  RESERVED_BITS_S1: 0x9a1,
  REFERENCE_S0: 0x918,
  REFERENCE_S1: 0x919,
};

const DIGEST = [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 0xab) }];
const extendParams = () => Buffer.concat([u32b(1), u16b(ALG.SHA256), Buffer.alloc(32, 0xab)]);

function raw(tpm: ReturnType<typeof newEngine>, bytes: Buffer) {
  const out = tpm.execute(bytes);
  assert.equal(responseProblem(out), null, `response ${out.toString('hex')} is well formed`);
  return out;
}

const rcOf = (b: Buffer) => b.readUInt32BE(6);

describe('command header validation', () => {
  test('a command shorter than the 10-octet header whose size field differs from its length returns TPM_RC_COMMAND_SIZE (0x142)', () => {
    // Part 3 §5.2 item 2: the commandSize must equal the number of octets received (TPM_RC_COMMAND_SIZE).
    const tpm = startedEngine();
    for (const hex of ['80010000000c0000', '80010000000a', '8001000000ff017b']) {
      const out = raw(tpm, Buffer.from(hex, 'hex'));
      assert.equal(hexRc(rcOf(out)), hexRc(RC.COMMAND_SIZE), hex);
    }
  });

  test('a command cut short inside its header is answered with a 10-octet error response', () => {
    const tpm = startedEngine();
    const full = getRandom(8);
    for (let n = 0; n < 10; n++) {
      const cut = Buffer.from(full.subarray(0, n));
      if (n >= 6) cut.writeUInt32BE(n, 2); // size field consistent with the length
      const out = raw(tpm, cut);
      assert.equal(out.length, 10);
      assert.ok([RC.INSUFFICIENT, RC.COMMAND_SIZE].includes(rcOf(out)), `${n} octets: ${hexRc(rcOf(out))}`);
    }
  });

  test('a size field that differs from the number of octets returns TPM_RC_COMMAND_SIZE (0x142)', () => {
    const tpm = startedEngine();
    for (const size of [11, 13, 0, 10, 0xffffffff]) {
      const cmd = buildCommand({ cc: CC.GetRandom, params: u16b(8), size });
      fails(tpm, cmd, RC.COMMAND_SIZE);
    }
  });

  test('a command longer than MAX_COMMAND_SIZE (4096) returns TPM_RC_COMMAND_SIZE (0x142)', () => {
    const tpm = startedEngine();
    const cmd = buildCommand({ cc: CC.Hash, params: Buffer.alloc(4097 - 10) });
    assert.equal(cmd.length, 4097);
    fails(tpm, cmd, RC.COMMAND_SIZE);
  });

  test('a tag other than TPM_ST_NO_SESSIONS or TPM_ST_SESSIONS returns TPM_RC_BAD_TAG (0x01E)', () => {
    const tpm = startedEngine();
    for (const tag of [0x8000, 0x00c1, 0x8003, 0x0000]) {
      const out = raw(tpm, buildCommand({ cc: CC.GetRandom, params: u16b(8), tag }));
      assert.equal(hexRc(rcOf(out)), hexRc(RC.BAD_TAG), `tag 0x${tag.toString(16)}`);
      assert.equal(out.length, 10);
    }
  });

  test('a TPM_RC_BAD_TAG response carries the tag TPM_ST_RSP_COMMAND (0x00C4)', () => {
    // Part 3 §6.1 (Response Values, Tag): for a command tag that is not allowed "the TPM sets tag to
    // TPM_ST_RSP_COMMAND, responseSize to 0x0A and responseCode to TPM_RC_BAD_TAG" (Part 2 §6.9).
    const tpm = startedEngine();
    const out = raw(tpm, buildCommand({ cc: CC.GetRandom, params: u16b(8), tag: 0x00c1 }));
    assert.equal(rcOf(out), RC.BAD_TAG);
    assert.equal(`0x${out.readUInt16BE(0).toString(16).padStart(4, '0')}`, '0x00c4');
  });

  test('an unknown command code returns TPM_RC_COMMAND_CODE (0x143)', () => {
    const tpm = startedEngine();
    // Codes outside the TPM_CC range, a vendor-specific code, and a code in the reserved gap below TPM_CC_FIRST.
    for (const cc of [0x0000ffff, 0x000001ff, 0x20000001, 0x00000000, 0x0000011e]) {
      fails(tpm, buildCommand({ cc }), RC.COMMAND_CODE);
    }
  });

  test('a successful TPM_ST_NO_SESSIONS response has tag 0x8001 and a size field equal to its length', () => {
    const tpm = startedEngine();
    const r = ok(tpm, getRandom(20));
    assert.equal(r.tag, ST.NO_SESSIONS);
    assert.equal(r.size, r.raw.length);
    assert.equal(r.raw.length, 10 + 2 + 20);
  });

  test('a command passed as a Uint8Array view into a larger buffer is executed from its own octets', () => {
    const tpm = startedEngine();
    const cmd = getRandom(4);
    const backing = new Uint8Array(cmd.length + 13).fill(0xee);
    backing.set(cmd, 7);
    const view = backing.subarray(7, 7 + cmd.length);
    const r = parseResponse(tpm.execute(view));
    assert.equal(r.rc, 0);
    assert.equal(parse.getRandom(r).length, 4);
  });
});

describe('handle, parameter and session numbering', () => {
  test('a bad first handle is numbered H1 (0x184) and a bad second handle H2 (0x284)', () => {
    const tpm = startedEngine();
    fails(tpm, pcrExtend(24, DIGEST), RC.VALUE_H1);
    const esc = buildCommand({ cc: CC.EventSequenceComplete, handles: [0, RH.OWNER], sessions: [pw(), pw()], params: tpm2b('') });
    fails(tpm, esc, RC.VALUE_H2);
  });

  test("a bad hash algorithm in Hash's second parameter returns TPM_RC_HASH + P2 (0x2C3)", () => {
    const tpm = startedEngine();
    fails(tpm, buildCommand({ cc: CC.Hash, params: params(tpm2b('abc'), u16b(0x1234), u32b(RH.OWNER)) }), RC.HASH_P2);
  });

  test('a missing third parameter returns TPM_RC_INSUFFICIENT + P3 (0x3DA)', () => {
    const tpm = startedEngine();
    fails(tpm, buildCommand({ cc: CC.Hash, params: params(tpm2b('abc'), u16b(ALG.SHA256)) }), RC.INSUFFICIENT_P3);
  });

  test('a TPM2B larger than its maximum returns TPM_RC_SIZE numbered by parameter, also after an authorization area', () => {
    const tpm = startedEngine();
    fails(tpm, pcrEvent(0, Buffer.alloc(1025)), RC.SIZE_P1);
  });

  test('a parameter area cut short returns TPM_RC_INSUFFICIENT + P1 (0x1DA)', () => {
    const tpm = startedEngine();
    fails(tpm, buildCommand({ cc: CC.PCR_Extend, handles: [0], sessions: [pw()], params: extendParams().subarray(0, 20) }), RC.INSUFFICIENT_P1);
  });

  test('octets after the last parameter return TPM_RC_SIZE (0x095)', () => {
    const tpm = startedEngine();
    fails(tpm, buildCommand({ cc: CC.GetRandom, params: Buffer.from([0, 8, 0]) }), RC.SIZE);
    fails(tpm, buildCommand({ cc: CC.PCR_Extend, handles: [0], sessions: [pw()], params: Buffer.concat([extendParams(), Buffer.from([1])]) }), RC.SIZE);
    assert.deepEqual(readPcr(tpm, 0), Buffer.alloc(32));
  });
});

describe('authorization area', () => {
  test('PCR_Extend with tag TPM_ST_NO_SESSIONS returns TPM_RC_AUTH_MISSING (0x125)', () => {
    const tpm = startedEngine();
    fails(tpm, buildCommand({ cc: CC.PCR_Extend, handles: [0], params: extendParams() }), RC.AUTH_MISSING);
  });

  test('TPM_ST_SESSIONS with an authorizationSize of zero returns TPM_RC_AUTHSIZE (0x144)', () => {
    const tpm = startedEngine();
    const cmd = buildCommand({ cc: CC.PCR_Extend, handles: [0], tag: ST.SESSIONS, params: Buffer.concat([u32b(0), extendParams()]) });
    fails(tpm, cmd, RC.AUTHSIZE);
  });

  test('an authorizationSize larger than the rest of the command returns TPM_RC_AUTHSIZE (0x144)', () => {
    const tpm = startedEngine();
    fails(tpm, buildCommand({ cc: CC.PCR_Extend, handles: [0], sessions: [pw()], authSize: 5000, params: extendParams() }), RC.AUTHSIZE);
  });

  test('more than three sessions return TPM_RC_AUTHSIZE (0x144)', () => {
    const tpm = startedEngine();
    fails(tpm, buildCommand({ cc: CC.PCR_Extend, handles: [0], sessions: [pw(), pw(), pw(), pw()], params: extendParams() }), RC.AUTHSIZE);
  });

  test('a password session with a non-empty nonce returns TPM_RC_NONCE + S1 (0x98F)', () => {
    const tpm = startedEngine();
    fails(tpm, pcrExtend(0, DIGEST, { nonce: Buffer.alloc(16, 1) }), RC.NONCE_S1);
  });

  test('a password session with audit, encrypt or decrypt set returns TPM_RC_ATTRIBUTES + S1 (0x982)', () => {
    const tpm = startedEngine();
    for (const a of [SESSION_ATTR.audit, SESSION_ATTR.encrypt, SESSION_ATTR.decrypt]) {
      fails(tpm, pcrExtend(0, DIGEST, { attributes: SESSION_ATTR.continueSession | a }), RC.ATTRIBUTES_S1);
    }
  });

  test('session attributes with reserved bits 3-4 set return TPM_RC_RESERVED_BITS + S1 (0x9A1)', () => {
    const tpm = startedEngine();
    fails(tpm, pcrExtend(0, DIGEST, { attributes: 0x08 }), RC.RESERVED_BITS_S1);
    fails(tpm, pcrExtend(0, DIGEST, { attributes: 0x10 }), RC.RESERVED_BITS_S1);
  });

  test('an HMAC or policy session that is not loaded returns TPM_RC_REFERENCE_S0 + N', () => {
    const tpm = startedEngine();
    fails(tpm, pcrExtend(0, DIGEST, { handle: 0x02000000 }), RC.REFERENCE_S0);
    const esc = buildCommand({
      cc: CC.EventSequenceComplete,
      handles: [RH.NULL, 0x80000000],
      sessions: [pw(), { handle: 0x03000001 }],
      params: tpm2b(''),
    });
    const seq = ok(tpm, buildCommand({ cc: CC.HashSequenceStart, params: params(tpm2b(''), u16b(ALG.NULL)) })).handle;
    assert.equal(seq, 0x80000000);
    fails(tpm, esc, RC.REFERENCE_S1);
  });

  test('Startup with TPM_ST_SESSIONS returns TPM_RC_AUTH_CONTEXT (0x145)', () => {
    // Part 3 §5.5 item 1: the command requires TPM_ST_NO_SESSIONS.
    const tpm = newEngine();
    fails(tpm, buildCommand({ cc: CC.Startup, sessions: [pw()], params: u16b(SU.CLEAR) }), RC.AUTH_CONTEXT);
    ok(tpm, startup(SU.CLEAR));
  });

  test('a password session with no handle to authorize is refused with an error numbered by that session', () => {
    // Part 3 §5.5 item 30: a session not used for authorization must set decrypt, encrypt or audit
    // (TPM_RC_ATTRIBUTES), which a password session cannot; the reference implementation returns
    // TPM_RC_HANDLE + S1 for a password session without an associated handle. Either way the error is
    // numbered by session, not TPM_RC_AUTH_CONTEXT (which is for commands that forbid sessions).
    const tpm = startedEngine();
    const r = exec(tpm, buildCommand({ cc: CC.GetRandom, sessions: [pw()], params: u16b(8) }));
    assert.ok([RC.ATTRIBUTES_S1, RC.HANDLE_S1].includes(r.rc), `got ${hexRc(r.rc)}`);
    const r2 = exec(tpm, buildCommand({ cc: CC.PCR_Extend, handles: [0], sessions: [pw(), pw()], params: extendParams() }));
    assert.ok([RC.ATTRIBUTES_S1 + 0x100, RC.HANDLE_S1 + 0x100].includes(r2.rc), `second session: got ${hexRc(r2.rc)}`);
  });

  test('a successful TPM_ST_SESSIONS response carries parameterSize and a password acknowledgement', () => {
    const tpm = startedEngine();
    const r = ok(tpm, pcrEvent(3, 'event'));
    assert.equal(r.tag, ST.SESSIONS);
    assert.equal(r.parameterSize, r.params.length);
    assert.equal(parse.pcrEvent(r).length, 4);
    assert.deepEqual(r.sessions, [{ nonce: Buffer.alloc(0), attributes: SESSION_ATTR.continueSession, hmac: Buffer.alloc(0) }]);
    const noParams = ok(tpm, pcrExtend(3, DIGEST));
    assert.equal(noParams.parameterSize, 0);
    assert.equal(noParams.raw.length, 10 + 4 + 5);
  });

  test('a command that fails authorization changes no TPM state', () => {
    const tpm = startedEngine();
    const before = pcrUpdateCounter(tpm);
    fails(tpm, pcrExtend(5, DIGEST, 'wrong'), 0x9a2);
    assert.equal(pcrUpdateCounter(tpm), before);
    assert.deepEqual(readPcr(tpm, 5), Buffer.alloc(32));
    ok(tpm, pcrExtend(5, DIGEST));
    assert.deepEqual(readPcr(tpm, 5), H(ALG.SHA256, Buffer.alloc(32), DIGEST[0]!.digest));
  });

  test('a PCR_Read needs no session and ignores the locality', () => {
    const tpm = startedEngine();
    for (const locality of [0, 1, 2, 3, 4]) ok(tpm, pcrRead([selection(ALG.SHA256, [0])]), locality);
  });
});
