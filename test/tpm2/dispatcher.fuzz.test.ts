/**
 * Property tests of the dispatcher against a started engine: over 100,000 commands per run —
 * random octets, commands with random headers, structurally valid commands with random parameter
 * values, and valid commands with random mutations. Every command must get a well-formed
 * response without an exception or an internal fault, and afterwards the engine must still
 * extend and read a PCR correctly.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ALG, CAP, CC, ECC_CURVE, RH, SESSION_ATTR, ST } from '../../src/tpm/tpm2/constants.ts';
import {
  RESPONSE_HANDLE_COMMANDS,
  buildCommand,
  clockRateAdjust,
  clockSet,
  eventSequenceComplete,
  getCapability,
  getRandom,
  getTestResult,
  hash,
  hashSequenceStart,
  incrementalSelfTest,
  params,
  parse,
  parseResponse,
  pcrAllocate,
  pcrEvent,
  pcrExtend,
  pcrRead,
  pcrReset,
  readClock,
  responseProblem,
  selection,
  selfTest,
  sequenceComplete,
  sequenceUpdate,
  shutdown,
  startup,
  stirRandom,
  testParms,
  tpm2b,
  u16b,
  u32b,
  type SessionSpec,
} from '../helpers/tpm2-commands.ts';
import { H, manualClock, ok, pinnedEntropy, startedEngine } from '../helpers/tpm2-engine.ts';

const seed = process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined;
const fcOptions = (numRuns: number) => (seed === undefined ? { numRuns } : { numRuns, seed });

/** A started engine whose every response is checked. */
function harness() {
  const clock = manualClock(0);
  const faults: unknown[] = [];
  const tpm = startedEngine({ now: clock.now, entropy: pinnedEntropy('fuzz'), onInternalError: (e) => faults.push(e) });
  const stats = { commands: 0, successes: 0, codes: new Map<number, number>() };

  /** Runs one command; throws (failing the property) on an exception or a malformed response. */
  function run(cmd: Uint8Array, locality = 0): Buffer {
    const out = tpm.execute(cmd, locality);
    stats.commands++;
    clock.advance(3);
    const hex = () => Buffer.from(cmd).toString('hex').slice(0, 400);
    const problem = responseProblem(out);
    if (problem) throw new Error(`malformed response (${problem}) to ${hex()}`);
    if (faults.length) throw new Error(`internal fault ${String(faults[0])} on ${hex()}`);
    const rc = out.readUInt32BE(6);
    stats.codes.set(rc, (stats.codes.get(rc) ?? 0) + 1);
    if (rc === 0x101) throw new Error(`TPM_RC_FAILURE without a reported fault on ${hex()}`);
    if (rc === 0) {
      stats.successes++;
      const tag = Buffer.from(cmd).readUInt16BE(0);
      if (out.readUInt16BE(0) !== tag) throw new Error(`success response tag differs from the command tag on ${hex()}`);
      const cc = Buffer.from(cmd).readUInt32BE(6);
      parseResponse(out, { responseHandle: RESPONSE_HANDLE_COMMANDS.has(cc) }); // throws if the areas do not add up
    }
    return out;
  }

  /** The engine still resets, extends and reads a PCR correctly. */
  function stillSound(): void {
    assert.deepEqual(faults, []);
    ok(tpm, pcrReset(16));
    const d = Buffer.alloc(32, 0x5c);
    ok(tpm, pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: d }]));
    const out = parse.pcrRead(ok(tpm, pcrRead([selection(ALG.SHA256, [16])])));
    assert.deepEqual(out.pcrValues, [H(ALG.SHA256, Buffer.alloc(32), d)]);
  }

  return { run, stillSound, stats };
}

// ------------------------------------------------------------------------------------------------
// Generators

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max }).map((b) => Buffer.from(b));

const HASHES = [ALG.SHA1, ALG.SHA256, ALG.SHA384, ALG.SHA512];
const SIZES: Record<number, number> = { [ALG.SHA1]: 20, [ALG.SHA256]: 32, [ALG.SHA384]: 48, [ALG.SHA512]: 64 };
const IMPLEMENTED_CC = [
  CC.Startup, CC.Shutdown, CC.SelfTest, CC.IncrementalSelfTest, CC.GetTestResult, CC.GetRandom, CC.StirRandom,
  CC.GetCapability, CC.TestParms, CC.Hash, CC.HashSequenceStart, CC.SequenceUpdate, CC.SequenceComplete,
  CC.EventSequenceComplete, CC.PCR_Extend, CC.PCR_Event, CC.PCR_Read, CC.PCR_Reset, CC.PCR_Allocate, CC.ReadClock,
  CC.ClockSet, CC.ClockRateAdjust, CC.StartAuthSession, CC.FlushContext,
];

/** Mostly valid values with a share of arbitrary ones. */
const mostly = <T>(valid: fc.Arbitrary<T>, other: fc.Arbitrary<T>) => fc.oneof({ arbitrary: valid, weight: 4 }, { arbitrary: other, weight: 1 });
const hashAlg = mostly(fc.constantFrom(...HASHES), fc.oneof(u16, fc.constant(ALG.NULL)));
const hierarchy = mostly(fc.constantFrom(RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.NULL), u32);
const pcrHandle = mostly(fc.integer({ min: 0, max: 23 }), fc.oneof(fc.constant(24), fc.constant(RH.NULL), u32));
const objectHandle = mostly(fc.integer({ min: 0, max: 2 }).map((i) => (0x80000000 + i) >>> 0), u32);
const sessionHandle = fc.oneof(
  fc.integer({ min: 0, max: 2 }).map((i) => (0x02000000 + i) >>> 0),
  fc.integer({ min: 0, max: 2 }).map((i) => (0x03000000 + i) >>> 0),
);
const locality = mostly(fc.constant(0), fc.integer({ min: 1, max: 4 }));
const data = fc.oneof({ arbitrary: bytes(0, 64), weight: 5 }, { arbitrary: bytes(0, 1030), weight: 1 });

/** The authorization of a handle: usually a correct empty password, sometimes anything. */
const auth: fc.Arbitrary<SessionSpec> = mostly(
  fc.constant<SessionSpec>({}),
  fc.record({
    handle: fc.oneof(fc.constant(RH.RS_PW), sessionHandle, u32),
    nonce: bytes(0, 40),
    attributes: u8,
    password: bytes(0, 40),
  }),
);

const taggedHash = fc
  .tuple(hashAlg, bytes(0, 64))
  .map(([alg, d]) => ({ hashAlg: alg, digest: SIZES[alg] ? Buffer.concat([d, Buffer.alloc(64)]).subarray(0, SIZES[alg]) : d }));
const pcrSel = fc.tuple(hashAlg, fc.array(fc.integer({ min: 0, max: 31 }), { maxLength: 10 }), mostly(fc.constant(3), fc.integer({ min: 0, max: 34 })))
  .map(([alg, pcrs, n]) => selection(alg, pcrs.filter((p) => p < n * 8), n));

const symDef = fc.oneof(
  fc.constant(u16b(ALG.NULL)),
  fc.tuple(mostly(fc.constant(ALG.AES), u16), fc.constantFrom(128, 192, 256, 512), fc.constantFrom(ALG.CFB, ALG.CTR, ALG.NULL, 0x3f)).map(([a, k, m]) => Buffer.concat([u16b(a), u16b(k), u16b(m)])),
  hashAlg.map((h) => Buffer.concat([u16b(ALG.XOR), u16b(h)])),
);
const scheme = fc.oneof(
  fc.constant(u16b(ALG.NULL)),
  fc.tuple(fc.constantFrom(ALG.RSASSA, ALG.RSAPSS, ALG.OAEP, ALG.ECDSA, ALG.ECDH, ALG.HMAC, ALG.ECDAA), hashAlg).map(([s, h]) => Buffer.concat([u16b(s), u16b(h)])),
  fc.tuple(hashAlg, fc.constantFrom(ALG.KDF1_SP800_108, ALG.MGF1, 0x29)).map(([h, k]) => Buffer.concat([u16b(ALG.XOR), u16b(h), u16b(k)])),
);
const publicParmsBytes = fc.oneof(
  fc.tuple(symDef, scheme, fc.constantFrom(1024, 2048, 3072, 4096), u32).map(([sy, sc, k, e]) => Buffer.concat([u16b(ALG.RSA), sy, sc, u16b(k), u32b(e)])),
  fc.tuple(symDef, scheme, fc.constantFrom(ECC_CURVE.NIST_P256, ECC_CURVE.NIST_P384, ECC_CURVE.BN_P256, 0x99), scheme).map(([sy, sc, c, kdf]) => Buffer.concat([u16b(ALG.ECC), sy, sc, u16b(c), kdf])),
  scheme.map((sc) => Buffer.concat([u16b(ALG.KEYEDHASH), sc])),
  symDef.map((sy) => Buffer.concat([u16b(ALG.SYMCIPHER), sy])),
  bytes(0, 24),
);

/** Structurally valid commands of every implemented command code, with random parameter values. */
const validCommand: fc.Arbitrary<Buffer> = fc.oneof(
  u16.map((t) => startup(t & 3)),
  u16.map((t) => shutdown(t & 1)),
  fc.boolean().map(selfTest),
  fc.array(u16, { maxLength: 6 }).map(incrementalSelfTest),
  fc.constant(getTestResult()),
  u16.map(getRandom),
  bytes(0, 140).map(stirRandom),
  fc.tuple(mostly(fc.integer({ min: 0, max: 10 }), u32), u32, mostly(fc.integer({ min: 0, max: 300 }), u32)).map(([c, p, n]) => getCapability(c, p, n)),
  fc.tuple(fc.constantFrom(CAP.HANDLES), fc.constantFrom(0, 0x40000000, 0x80000000, 0x02000000, 0x03000000, 0x81000000, 0x01000000)).map(([c, p]) => getCapability(c, p, 50)),
  publicParmsBytes.map((b) => testParms(b)),
  fc.tuple(data, hashAlg, hierarchy).map(([d, a, h]) => hash(d, a, h)),
  fc.tuple(bytes(0, 70), mostly(fc.oneof(fc.constantFrom(...HASHES), fc.constant(ALG.NULL)), u16)).map(([a, h]) => hashSequenceStart(a, h)),
  fc.tuple(objectHandle, data, auth).map(([h, d, a]) => sequenceUpdate(h, d, a)),
  fc.tuple(objectHandle, data, hierarchy, auth).map(([h, d, hi, a]) => sequenceComplete(h, d, hi, a)),
  fc.tuple(pcrHandle, objectHandle, data, auth, auth).map(([p, h, d, a1, a2]) => eventSequenceComplete(p, h, d, a1, a2)),
  fc.tuple(pcrHandle, fc.array(taggedHash, { maxLength: 5 }), auth).map(([p, ds, a]) => pcrExtend(p, ds, a)),
  fc.tuple(pcrHandle, data, auth).map(([p, d, a]) => pcrEvent(p, d, a)),
  fc.array(pcrSel, { maxLength: 5 }).map(pcrRead),
  fc.tuple(pcrHandle, auth).map(([p, a]) => pcrReset(p, a)),
  fc.tuple(fc.array(pcrSel, { maxLength: 4 }), auth, mostly(fc.constant(RH.PLATFORM), u32)).map(([s, a, h]) => pcrAllocate(s, a, h)),
  fc.constant(readClock()),
  fc.tuple(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), auth, mostly(fc.constantFrom(RH.OWNER, RH.PLATFORM), u32)).map(([t, a, h]) => clockSet(t, a, h)),
  fc.tuple(fc.integer({ min: -128, max: 127 }), auth).map(([r, a]) => clockRateAdjust(r, a)),
  fc
    .tuple(mostly(fc.constant(RH.NULL), u32), mostly(fc.constant(RH.NULL), fc.oneof(fc.integer({ min: 0, max: 23 }), fc.constant(RH.OWNER), u32)), bytes(0, 70), mostly(fc.constant(Buffer.alloc(0)), bytes(0, 8)), fc.constantFrom(0, 1, 3, 2), symDef, hashAlg)
    .map(([key, bind, nonce, salt, type, sym, h]) =>
      buildCommand({ cc: CC.StartAuthSession, handles: [key, bind], params: params(tpm2b(nonce), tpm2b(salt), Buffer.from([type]), sym, u16b(h)) }),
    ),
  fc.oneof(sessionHandle, objectHandle).map((h) => buildCommand({ cc: CC.FlushContext, params: u32b(h) })),
  // A command authorized by a (probably wrong) HMAC session, with decrypt/encrypt attributes.
  fc
    .tuple(pcrHandle, data, sessionHandle, bytes(16, 32), fc.constantFrom(SESSION_ATTR.continueSession, SESSION_ATTR.decrypt | 1, SESSION_ATTR.encrypt | 1, 0x61), bytes(0, 32))
    .map(([p, d, sh, nonce, attributes, mac]) => pcrEvent(p, d, { handle: sh, nonce, attributes, password: mac })),
);

/** Random mutations of a command. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('size' as const), value: mostly(fc.integer({ min: -3, max: 3 }), u32), relative: fc.boolean() }),
  fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), extra: bytes(1, 16) }),
  fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), n: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant('u32' as const), at: fc.nat(), value: fc.constantFrom(0, 1, 0xffffffff, 0x80000000, 0x40000009, 0x02000000, 10, 0x1000) }),
  fc.record({ kind: fc.constant('u16' as const), at: fc.nat(), value: fc.constantFrom(0, 0xffff, 0x8001, 0x8002, 0x000b, 0x0010, 0x0400, 0x0401) }),
  fc.record({ kind: fc.constant('cc' as const), cc: fc.constantFrom(...IMPLEMENTED_CC) }),
  fc.record({ kind: fc.constant('tag' as const), tag: fc.constantFrom(ST.NO_SESSIONS, ST.SESSIONS, 0x00c1, 0x8000) }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

function mutate(cmd: Buffer, m: Mutation): Buffer {
  let b = Buffer.from(cmd);
  const at = (x: number, room = 1) => (b.length > room ? x % (b.length - room + 1) : 0);
  switch (m.kind) {
    case 'flip':
      if (b.length) b[at(m.at)]! ^= 1 << m.bit;
      break;
    case 'truncate':
      b = b.subarray(0, b.length ? m.at % b.length : 0);
      break;
    case 'size':
      if (b.length >= 6) b.writeUInt32BE((m.relative ? b.length + m.value : m.value) >>> 0, 2);
      break;
    case 'insert': {
      const i = b.length ? m.at % (b.length + 1) : 0;
      b = Buffer.concat([b.subarray(0, i), m.extra, b.subarray(i)]);
      if (b.length >= 6) b.writeUInt32BE(b.length, 2); // keep the size consistent so deeper layers see it
      break;
    }
    case 'delete': {
      const i = b.length ? m.at % b.length : 0;
      b = Buffer.concat([b.subarray(0, i), b.subarray(i + m.n)]);
      if (b.length >= 6) b.writeUInt32BE(b.length, 2);
      break;
    }
    case 'u32':
      if (b.length >= 4) b.writeUInt32BE(m.value >>> 0, at(m.at, 4));
      break;
    case 'u16':
      if (b.length >= 2) b.writeUInt16BE(m.value, at(m.at, 2));
      break;
    case 'cc':
      if (b.length >= 10) b.writeUInt32BE(m.cc, 6);
      break;
    case 'tag':
      if (b.length >= 2) b.writeUInt16BE(m.tag, 0);
      break;
  }
  return b;
}

// ------------------------------------------------------------------------------------------------

describe('dispatcher robustness (property tests, >100,000 commands)', () => {
  const h = harness();

  test('random octet strings get well-formed responses and never an exception (25,000 commands)', () => {
    fc.assert(
      fc.property(bytes(0, 48), locality, (b, loc) => {
        h.run(b, loc);
      }),
      fcOptions(25_000),
    );
    h.stillSound();
  });

  test('commands with a plausible header and a random body get well-formed responses (20,000 commands)', () => {
    const header = fc.tuple(
      mostly(fc.constantFrom(ST.NO_SESSIONS, ST.SESSIONS), u16),
      mostly(fc.constantFrom(...IMPLEMENTED_CC), u32),
      bytes(0, 200),
    );
    fc.assert(
      fc.property(header, locality, ([tag, cc, body], loc) => {
        const b = Buffer.concat([u16b(tag), u32b(10 + body.length), u32b(cc), body]);
        h.run(b, loc);
      }),
      fcOptions(20_000),
    );
    h.stillSound();
  });

  test('structurally valid commands with random parameter values get well-formed responses (35,000 commands)', () => {
    const before = h.stats.successes;
    fc.assert(
      fc.property(validCommand, locality, (cmd, loc) => {
        h.run(cmd, loc);
      }),
      fcOptions(35_000),
    );
    h.stillSound();
    // The generator must reach the handlers, not just the parsers.
    assert.ok(h.stats.successes - before > 35_000 * 0.1, `only ${h.stats.successes - before} successes`);
  });

  test('valid commands with random mutations (bit flips, truncation, size changes, inserted octets) get well-formed responses (30,000 commands)', () => {
    fc.assert(
      fc.property(validCommand, fc.array(mutation, { minLength: 1, maxLength: 3 }), locality, (cmd, ms, loc) => {
        h.run(ms.reduce(mutate, cmd), loc);
      }),
      fcOptions(30_000),
    );
    h.stillSound();
  });

  test('after all runs the engine still answers PCR_Read correctly and reported no internal fault', () => {
    assert.ok(h.stats.commands >= 110_000, `${h.stats.commands} commands`);
    h.stillSound();
    // Startup is still refused (the engine stayed started) and ReadClock still works.
    assert.equal(h.run(startup(0)).readUInt32BE(6), 0x100);
    assert.equal(h.run(readClock()).readUInt32BE(6), 0);
  });
});
