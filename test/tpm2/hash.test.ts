import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ALG, CAP, CC, HR, RH, ST } from '../../src/tpm/tpm2/constants.ts';
import {
  buildCommand,
  eventSequenceComplete,
  getCapability,
  hash,
  hashSequenceStart,
  parse,
  params,
  sequenceComplete,
  sequenceUpdate,
  tpm2b,
  u16b,
} from '../helpers/tpm2-commands.ts';
import { BANKS, H, HMAC, fails, ok, readPcr, startedEngine } from '../helpers/tpm2-engine.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';

const RC = {
  HASH_P1: 0x1c3,
  HASH_P2: 0x2c3,
  VALUE_P3: 0x3c4,
  VALUE_P2: 0x2c4,
  SIZE_P1: 0x1d5,
  INSUFFICIENT_P1: 0x1da,
  MODE_H1: 0x189,
  MODE_H2: 0x289,
  OBJECT_MEMORY: 0x902,
  BAD_AUTH_S1: 0x9a2,
  BAD_AUTH_S2: 0xaa2,
  AUTH_MISSING: 0x125,
  LOCALITY: 0x907,
  REFERENCE_H0: 0x910,
  REFERENCE_H1: 0x911,
};

const GENERATED = Buffer.from([0xff, 0x54, 0x43, 0x47]);
const HASHCHECK_TAG = Buffer.from([0x80, 0x24]);

/** The ticket TPM2_Hash/SequenceComplete must give: HMAC(proof, TPM_ST_HASHCHECK || digest). */
function expectedTicket(tpm: Tpm2Engine, hierarchy: number, alg: number, digest: Buffer): Buffer {
  const proofs = tpm.nv.hierarchy.proofs;
  const proof = hierarchy === RH.OWNER ? proofs.owner : hierarchy === RH.ENDORSEMENT ? proofs.endorsement : proofs.platform;
  return HMAC(alg, proof, HASHCHECK_TAG, digest);
}

function assertNullTicket(t: { tag: number; hierarchy: number; digest: Buffer }): void {
  assert.equal(t.tag, ST.HASHCHECK);
  assert.equal(t.hierarchy, RH.NULL);
  assert.equal(t.digest.length, 0);
}

function start(tpm: Tpm2Engine, auth = '', alg: number = ALG.SHA256): number {
  const r = ok(tpm, hashSequenceStart(auth, alg));
  assert.equal(r.handle! >>> 24, 0x80, 'a transient handle');
  return r.handle!;
}

function transientHandles(tpm: Tpm2Engine): number[] {
  const caps = parse.getCapability(ok(tpm, getCapability(CAP.HANDLES, HR.TRANSIENT, 32))).capabilityData;
  return (caps as { items: number[] }).items;
}

describe('TPM2_Hash', () => {
  test('Hash of SHA-256 returns H(data) and a ticket HMAC(ownerProof, TPM_ST_HASHCHECK || digest) for the owner hierarchy', () => {
    const tpm = startedEngine();
    const data = Buffer.from('the quick brown fox');
    const r = parse.hash(ok(tpm, hash(data, ALG.SHA256, RH.OWNER)));
    assert.deepEqual(r.outHash, H(ALG.SHA256, data));
    assert.equal(r.validation.tag, ST.HASHCHECK);
    assert.equal(r.validation.hierarchy, RH.OWNER);
    assert.ok(r.validation.digest.length > 0);
    assert.deepEqual(r.validation.digest, expectedTicket(tpm, RH.OWNER, ALG.SHA256, r.outHash));
  });

  test('Hash returns the SHA-1, SHA-384 and SHA-512 digests node:crypto computes', () => {
    const tpm = startedEngine();
    const data = Buffer.alloc(1024, 0x5a);
    for (const b of BANKS) {
      const r = parse.hash(ok(tpm, hash(data, b.alg, RH.ENDORSEMENT)));
      assert.deepEqual(r.outHash, H(b.alg, data));
      assert.deepEqual(r.validation.digest, expectedTicket(tpm, RH.ENDORSEMENT, b.alg, r.outHash));
    }
  });

  test('Hash of empty data returns the digest of the empty string', () => {
    const tpm = startedEngine();
    assert.deepEqual(parse.hash(ok(tpm, hash('', ALG.SHA256))).outHash, H(ALG.SHA256, ''));
  });

  test('Hash with hierarchy TPM_RH_NULL returns the NULL ticket (TPM_ST_HASHCHECK, TPM_RH_NULL, empty digest)', () => {
    const tpm = startedEngine();
    const r = parse.hash(ok(tpm, hash('abc', ALG.SHA256, RH.NULL)));
    assert.deepEqual(r.outHash, H(ALG.SHA256, 'abc'));
    assertNullTicket(r.validation);
  });

  test('Hash of data beginning with TPM_GENERATED_VALUE (0xFF544347) returns the NULL ticket', () => {
    const tpm = startedEngine();
    const data = Buffer.concat([GENERATED, Buffer.from('forged attestation')]);
    const r = parse.hash(ok(tpm, hash(data, ALG.SHA256, RH.OWNER)));
    assert.deepEqual(r.outHash, H(ALG.SHA256, data));
    assertNullTicket(r.validation);
  });

  test('Hash of data shorter than four octets gets a real ticket even if it starts like TPM_GENERATED_VALUE', () => {
    const tpm = startedEngine();
    const r = parse.hash(ok(tpm, hash(GENERATED.subarray(0, 3), ALG.SHA256, RH.OWNER)));
    assert.equal(r.validation.hierarchy, RH.OWNER);
    assert.equal(r.validation.digest.length, 32);
  });

  test('Hash with an unimplemented hash algorithm returns TPM_RC_HASH + P2 (0x2C3)', () => {
    const tpm = startedEngine();
    fails(tpm, hash('abc', ALG.SM3_256), RC.HASH_P2);
    fails(tpm, hash('abc', 0x7777), RC.HASH_P2);
  });

  test('Hash with TPM_ALG_NULL returns TPM_RC_HASH + P2 (0x2C3)', () => {
    const tpm = startedEngine();
    fails(tpm, hash('abc', ALG.NULL), RC.HASH_P2);
  });

  test('Hash with a hierarchy that is not a hierarchy returns TPM_RC_VALUE + P3 (0x3C4)', () => {
    const tpm = startedEngine();
    fails(tpm, hash('abc', ALG.SHA256, RH.LOCKOUT), RC.VALUE_P3);
    fails(tpm, hash('abc', ALG.SHA256, 0x80000000), RC.VALUE_P3);
  });

  test('Hash of more than 1024 octets returns TPM_RC_SIZE + P1 (0x1D5)', () => {
    const tpm = startedEngine();
    fails(tpm, hash(Buffer.alloc(1025), ALG.SHA256), RC.SIZE_P1);
  });

  test('Hash whose data runs past the end of the command returns TPM_RC_INSUFFICIENT + P1 (0x1DA)', () => {
    const tpm = startedEngine();
    const cmd = buildCommand({ cc: CC.Hash, params: params(u16b(100), Buffer.alloc(50)) });
    fails(tpm, cmd, RC.INSUFFICIENT_P1);
  });
});

describe('hash sequences', () => {
  test('HashSequenceStart, two SequenceUpdates and SequenceComplete return the digest of all data with a ticket', () => {
    const tpm = startedEngine();
    const h = start(tpm, 'seq-auth');
    ok(tpm, sequenceUpdate(h, 'part one, ', 'seq-auth'));
    ok(tpm, sequenceUpdate(h, Buffer.alloc(1024, 7), 'seq-auth'));
    const r = parse.sequenceComplete(ok(tpm, sequenceComplete(h, 'last', RH.OWNER, 'seq-auth')));
    const expected = H(ALG.SHA256, 'part one, ', Buffer.alloc(1024, 7), 'last');
    assert.deepEqual(r.result, expected);
    assert.equal(r.validation.hierarchy, RH.OWNER);
    assert.deepEqual(r.validation.digest, expectedTicket(tpm, RH.OWNER, ALG.SHA256, expected));
  });

  test('a SHA-384 hash sequence returns the SHA-384 digest', () => {
    const tpm = startedEngine();
    const h = start(tpm, '', ALG.SHA384);
    ok(tpm, sequenceUpdate(h, 'abc'));
    assert.deepEqual(parse.sequenceComplete(ok(tpm, sequenceComplete(h, 'def'))).result, H(ALG.SHA384, 'abcdef'));
  });

  test('SequenceComplete flushes the sequence: GetCapability(HANDLES, TRANSIENT) no longer lists it', () => {
    const tpm = startedEngine();
    const h = start(tpm);
    assert.deepEqual(transientHandles(tpm), [h]);
    ok(tpm, sequenceComplete(h));
    assert.deepEqual(transientHandles(tpm), []);
  });

  test('SequenceComplete with hierarchy TPM_RH_NULL returns the NULL ticket', () => {
    const tpm = startedEngine();
    const h = start(tpm);
    const r = parse.sequenceComplete(ok(tpm, sequenceComplete(h, 'abc', RH.NULL)));
    assert.deepEqual(r.result, H(ALG.SHA256, 'abc'));
    assertNullTicket(r.validation);
  });

  test('a sequence whose data begins with TPM_GENERATED_VALUE completes with the NULL ticket', () => {
    const tpm = startedEngine();
    const h = start(tpm);
    ok(tpm, sequenceUpdate(h, Buffer.concat([GENERATED, Buffer.from('attest')])));
    const r = parse.sequenceComplete(ok(tpm, sequenceComplete(h, 'more', RH.OWNER)));
    assertNullTicket(r.validation);
  });

  test('SequenceComplete with an invalid hierarchy returns TPM_RC_VALUE + P2 (0x2C4) and keeps the sequence', () => {
    const tpm = startedEngine();
    const h = start(tpm);
    fails(tpm, sequenceComplete(h, '', RH.LOCKOUT), RC.VALUE_P2);
    assert.deepEqual(transientHandles(tpm), [h]);
  });

  test('SequenceUpdate without sessions returns TPM_RC_AUTH_MISSING (0x125)', () => {
    const tpm = startedEngine();
    const h = start(tpm);
    fails(tpm, buildCommand({ cc: CC.SequenceUpdate, handles: [h], params: tpm2b('x') }), RC.AUTH_MISSING);
  });

  test('SequenceUpdate with a wrong sequence password returns TPM_RC_BAD_AUTH + S1 (0x9A2): sequence objects are DA-exempt', () => {
    // Part 4 ObjectCreateHashSequence: "A sequence object is DA exempt" (noDA SET); a failed password
    // for a DA-exempt entity is TPM_RC_BAD_AUTH (Part 2 TPM_RC_BAD_AUTH; Part 4 IncrementLockout).
    const tpm = startedEngine();
    const h = start(tpm, 'right');
    fails(tpm, sequenceUpdate(h, 'x', 'wrong'), RC.BAD_AUTH_S1);
  });

  test('a sequence password given with trailing zero octets still authorizes the sequence', () => {
    // Part 1 password authorization / Part 4 CheckPWAuthSession: trailing zeros are removed from the password.
    const tpm = startedEngine();
    const h = start(tpm, 'abc');
    ok(tpm, sequenceUpdate(h, 'x', Buffer.from('abc\0\0')));
  });

  test('a sequence started with an auth that has trailing zeros accepts the password without them', () => {
    const tpm = startedEngine();
    const h = start(tpm, 'abc\0');
    ok(tpm, sequenceUpdate(h, 'x', 'abc'));
  });

  test('SequenceComplete on an event sequence returns TPM_RC_MODE + H1 (0x189)', () => {
    const tpm = startedEngine();
    const h = start(tpm, '', ALG.NULL);
    fails(tpm, sequenceComplete(h), RC.MODE_H1);
  });

  test('EventSequenceComplete on a hash sequence returns TPM_RC_MODE + H2 (0x289)', () => {
    const tpm = startedEngine();
    const h = start(tpm, '', ALG.SHA256);
    fails(tpm, eventSequenceComplete(RH.NULL, h), RC.MODE_H2);
  });

  test('EventSequenceComplete returns the event digest in every algorithm and extends the PCR in every bank', () => {
    const tpm = startedEngine();
    const h = start(tpm, 'ev', ALG.NULL);
    ok(tpm, sequenceUpdate(h, 'kernel ', 'ev'));
    const results = parse.eventSequenceComplete(ok(tpm, eventSequenceComplete(9, h, 'image', '', 'ev')));
    assert.deepEqual(
      results.map((d) => d.hashAlg),
      BANKS.map((b) => b.alg),
    );
    for (const d of results) {
      assert.deepEqual(d.digest, H(d.hashAlg, 'kernel image'));
      assert.deepEqual(readPcr(tpm, 9, d.hashAlg), H(d.hashAlg, Buffer.alloc(d.digest.length), d.digest));
    }
    assert.deepEqual(transientHandles(tpm), []);
  });

  test('EventSequenceComplete on TPM_RH_NULL returns the digests and extends no PCR', () => {
    const tpm = startedEngine();
    const h = start(tpm, '', ALG.NULL);
    const results = parse.eventSequenceComplete(ok(tpm, eventSequenceComplete(RH.NULL, h, 'abc')));
    assert.equal(results.length, 4);
    assert.deepEqual(readPcr(tpm, 9), Buffer.alloc(32));
  });

  test('EventSequenceComplete of PCR 17 at locality 0 returns TPM_RC_LOCALITY (0x907) and keeps the sequence', () => {
    const tpm = startedEngine();
    const h = start(tpm, '', ALG.NULL);
    fails(tpm, eventSequenceComplete(17, h, 'x'), RC.LOCALITY, 0);
    assert.deepEqual(transientHandles(tpm), [h]);
    ok(tpm, eventSequenceComplete(17, h, 'x'), 4);
  });

  test('EventSequenceComplete with a wrong sequence password returns TPM_RC_BAD_AUTH + S2 (0xAA2)', () => {
    const tpm = startedEngine();
    const h = start(tpm, 'right', ALG.NULL);
    fails(tpm, eventSequenceComplete(RH.NULL, h, '', '', 'wrong'), RC.BAD_AUTH_S2);
  });

  test('HashSequenceStart beyond the three object slots returns TPM_RC_OBJECT_MEMORY (0x902)', () => {
    const tpm = startedEngine();
    const handles = [start(tpm), start(tpm), start(tpm)];
    assert.equal(new Set(handles).size, 3);
    fails(tpm, hashSequenceStart('', ALG.SHA256), RC.OBJECT_MEMORY);
    ok(tpm, sequenceComplete(handles[1]!));
    start(tpm);
  });

  test('HashSequenceStart honours a configured number of object slots', () => {
    const tpm = startedEngine({ objectSlots: 5 });
    for (let i = 0; i < 5; i++) start(tpm);
    fails(tpm, hashSequenceStart(), RC.OBJECT_MEMORY);
  });

  test('HashSequenceStart with an auth longer than 64 octets returns TPM_RC_SIZE + P1 (0x1D5)', () => {
    const tpm = startedEngine();
    fails(tpm, hashSequenceStart(Buffer.alloc(65, 1)), RC.SIZE_P1);
  });

  test('HashSequenceStart with an unimplemented hash returns TPM_RC_HASH + P2 (0x2C3)', () => {
    const tpm = startedEngine();
    fails(tpm, hashSequenceStart('', ALG.SM3_256), RC.HASH_P2);
  });

  test('SequenceUpdate naming a transient handle that is not loaded returns TPM_RC_REFERENCE_H0 (0x910)', () => {
    // Part 3 §5.4 Handle Area Validation: a transient handle must reference a loaded object (TPM_RC_REFERENCE_H0 + N).
    const tpm = startedEngine();
    fails(tpm, sequenceUpdate(0x80000000, 'x'), RC.REFERENCE_H0);
  });

  test('a sequence handle used after SequenceComplete returns TPM_RC_REFERENCE_H0 (0x910)', () => {
    const tpm = startedEngine();
    const h = start(tpm);
    ok(tpm, sequenceComplete(h));
    fails(tpm, sequenceUpdate(h, 'x'), RC.REFERENCE_H0);
  });

  test('EventSequenceComplete naming an unloaded sequence returns TPM_RC_REFERENCE_H0 + 1 (0x911)', () => {
    const tpm = startedEngine();
    fails(tpm, eventSequenceComplete(RH.NULL, 0x80000002, 'x'), RC.REFERENCE_H1);
  });

  test('SequenceUpdate with a handle that is not an object returns TPM_RC_VALUE + H1 (0x184)', () => {
    const tpm = startedEngine();
    fails(tpm, sequenceUpdate(RH.OWNER, 'x'), 0x184);
  });

  test('HashSequenceStart returns the sequence handle in the response handle area, ahead of empty parameters', () => {
    const tpm = startedEngine();
    const r = ok(tpm, buildCommand({ cc: CC.HashSequenceStart, params: params(tpm2b(''), u16b(ALG.SHA1)) }));
    assert.equal(r.raw.length, 14);
    assert.equal(r.handle, 0x80000000);
    assert.equal(r.params.length, 0);
  });
});
