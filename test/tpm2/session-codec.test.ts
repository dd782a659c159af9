import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { decodeSession, encodeSession, EXPIRED } from '../../src/tpm/tpm2/auth/session-codec.ts';
import type { PolicyState, Session } from '../../src/tpm/tpm2/auth/sessions.ts';

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((b) => Buffer.from(b));
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const time = fc.bigInt({ min: 0n, max: 1n << 40n });

const policy: fc.Arbitrary<PolicyState> = fc.record({
  commandCode: u32,
  commandLocality: fc.integer({ min: 0, max: 255 }),
  cpHash: bytes(64),
  cpHashKind: fc.constantFrom('none', 'cpHash', 'nameHash', 'template'),
  pcrCounter: fc.option(u32, { nil: undefined }),
  startTime: time,
  timeout: time,
  isAuthValueNeeded: fc.boolean(),
  isPasswordNeeded: fc.boolean(),
  isPPRequired: fc.boolean(),
  checkNvWritten: fc.boolean(),
  nvWrittenState: fc.boolean(),
});

const session: fc.Arbitrary<Session> = fc
  .record({
    handle: u32,
    type: fc.integer({ min: 0, max: 255 }),
    authHash: u16,
    sessionKey: bytes(64),
    symmetric: fc.record({ algorithm: u16, keyBits: u16, mode: u16 }),
    bind: fc.option(fc.record({ handle: u32, name: bytes(68), auth: bytes(64) }), { nil: undefined }),
    nonceTPM: bytes(64),
    nonceCaller: bytes(64),
    policyDigest: bytes(64),
    policy: fc.option(policy, { nil: undefined }),
    audit: fc.option(bytes(64), { nil: undefined }),
  })
  // fast-check's records have no prototype; the codec makes plain objects.
  .map(({ bind, policy, symmetric, audit, ...s }) => ({
    ...s,
    symmetric: { ...symmetric },
    ...(bind ? { bind: { ...bind } } : {}),
    ...(policy ? { policy: { ...policy } } : {}),
    ...(audit ? { audit: { digest: audit } } : {}),
  }));

describe('session context codec', () => {
  test('every session comes back as it was saved, within one epoch of Time', () => {
    fc.assert(
      fc.property(session, u32, (s, epoch) => {
        assert.deepEqual(decodeSession(encodeSession(s, { now: 5n, epoch }), { now: 9n, epoch }), s);
      }),
    );
  });

  test('from an earlier epoch of Time, a policy timeout has expired and the start time is now; nothing else changes', () => {
    fc.assert(
      fc.property(session, time, (s, now) => {
        const back = decodeSession(encodeSession(s, { now: 5n, epoch: 1 }), { now, epoch: 2 });
        if (!s.policy) return assert.deepEqual(back, s);
        assert.equal(back.policy!.startTime, now);
        assert.equal(back.policy!.timeout, s.policy.timeout === 0n ? 0n : EXPIRED);
        assert.deepEqual({ ...back, policy: { ...back.policy!, startTime: 0n, timeout: 0n } }, { ...s, policy: { ...s.policy, startTime: 0n, timeout: 0n } });
      }),
    );
  });

  test('an expired timeout stays expired through another save and load', () => {
    const s: Session = {
      handle: 0x03000001, type: 1, authHash: 0x000b, sessionKey: Buffer.alloc(0), symmetric: { algorithm: 0x10, keyBits: 0, mode: 0x10 },
      nonceTPM: Buffer.alloc(32, 1), nonceCaller: Buffer.alloc(16, 2), policyDigest: Buffer.alloc(32),
      policy: { commandCode: 0, commandLocality: 0, cpHash: Buffer.alloc(0), cpHashKind: 'none', pcrCounter: undefined, startTime: 10n, timeout: 5000n, isAuthValueNeeded: false, isPasswordNeeded: false, isPPRequired: false, checkNvWritten: false, nvWrittenState: false },
    };
    const once = decodeSession(encodeSession(s, { now: 20n, epoch: 1 }), { now: 3n, epoch: 2 });
    assert.equal(once.policy!.timeout, EXPIRED);
    assert.equal(decodeSession(encodeSession(once, { now: 4n, epoch: 2 }), { now: 6n, epoch: 2 }).policy!.timeout, EXPIRED);
  });

  test('bytes it did not write are refused, not misread', () => {
    const b = encodeSession({ handle: 1, type: 0, authHash: 0x000b, sessionKey: Buffer.alloc(32), symmetric: { algorithm: 0x10, keyBits: 0, mode: 0x10 }, nonceTPM: Buffer.alloc(32), nonceCaller: Buffer.alloc(16), policyDigest: Buffer.alloc(32) }, { now: 0n, epoch: 0 });
    assert.throws(() => decodeSession(b.subarray(0, b.length - 1), { now: 0n, epoch: 0 }));
    assert.throws(() => decodeSession(Buffer.concat([b, Buffer.from([0])]), { now: 0n, epoch: 0 }));
    assert.throws(() => decodeSession(Buffer.concat([Buffer.from([9]), b.subarray(1)]), { now: 0n, epoch: 0 }));
  });
});
