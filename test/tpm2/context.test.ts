import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CC, HT, SU } from '../../src/tpm/tpm2/constants.ts';
import { RC } from '../../src/tpm/tpm2/rc.ts';
import { context, type Context } from '../../src/tpm/tpm2/types/context.ts';
import { buildCommand, enc, shutdown, u32b } from '../helpers/tpm2-commands.ts';
import { exec, fails, newEngine, ok, powerCycle, startedEngine } from '../helpers/tpm2-engine.ts';
import { commandCodePolicy, createPrimary, eccStorage, policyCommandCode, readPublic, startPolicySession } from '../helpers/tpm2-objects.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { digestBuf } from '../../src/tpm/tpm2/types/basic.ts';

const INTEGRITY_P1 = RC.INTEGRITY | 0x040 | 0x100;
const HANDLE_P1 = RC.HANDLE | 0x040 | 0x100;

function save(tpm: Tpm2Engine, handle: number): Context {
  const r = ok(tpm, buildCommand({ cc: CC.ContextSave, handles: [handle] }));
  return context.decode(r.reader());
}

function loadCmd(c: Context): Buffer {
  return buildCommand({ cc: CC.ContextLoad, params: enc(context, c) });
}

function flush(tpm: Tpm2Engine, handle: number): void {
  ok(tpm, buildCommand({ cc: CC.FlushContext, params: u32b(handle) }));
}

function policyDigest(tpm: Tpm2Engine, handle: number): Buffer {
  return digestBuf.decode(ok(tpm, buildCommand({ cc: CC.PolicyGetDigest, handles: [handle] })).reader());
}

/** A policy session that has asserted PolicyCommandCode(Unseal), saved. */
function savedPolicySession(tpm: Tpm2Engine): Context {
  const s = startPolicySession(tpm);
  policyCommandCode(tpm, s, CC.Unseal);
  return save(tpm, s.handle);
}

describe('ContextSave and ContextLoad', () => {
  test('an object context comes back as the same object (same Name) after the object was flushed', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccStorage());
    const c = save(tpm, key.handle);
    flush(tpm, key.handle);
    const r = ok(tpm, loadCmd(c));
    assert.equal(r.handle! >>> 24, HT.TRANSIENT);
    assert.deepEqual(readPublic(tpm, r.handle!).name, key.name);
  });

  test('an object context with one bit flipped, or with another sequence number, is TPM_RC_INTEGRITY + P1', () => {
    const tpm = startedEngine();
    const key = createPrimary(tpm, eccStorage());
    const c = save(tpm, key.handle);
    flush(tpm, key.handle);
    for (let i = 0; i < c.contextBlob.length; i += 7) {
      const blob = Buffer.from(c.contextBlob);
      blob[i]! ^= 0x10;
      const r = exec(tpm, loadCmd({ ...c, contextBlob: blob }));
      assert.equal(r.rc, INTEGRITY_P1, `byte ${i}: 0x${r.rc.toString(16)}`);
    }
    fails(tpm, loadCmd({ ...c, sequence: c.sequence + 1n }), INTEGRITY_P1);
  });

  test('a context saved by another TPM is refused', () => {
    const a = startedEngine();
    const b = startedEngine({ entropy: (n) => Buffer.alloc(n, 0x5a) });
    const c = save(a, createPrimary(a, eccStorage()).handle);
    fails(b, loadCmd(c), INTEGRITY_P1);
  });

  test('a session context loads once: replaying it, or an older one, is refused', () => {
    const tpm = startedEngine();
    const s = startPolicySession(tpm);
    const first = save(tpm, s.handle);
    assert.equal(ok(tpm, loadCmd(first)).handle, s.handle);
    fails(tpm, loadCmd(first), HANDLE_P1);
    const second = save(tpm, s.handle);
    assert.ok(second.sequence > first.sequence);
    // The handle is saved again, but only the newest blob may bring it back.
    fails(tpm, loadCmd(first), INTEGRITY_P1);
    assert.equal(ok(tpm, loadCmd(second)).handle, s.handle);
  });

  test('a session context does not survive a TPM Reset', () => {
    const tpm = startedEngine();
    const s = startPolicySession(tpm);
    const c = save(tpm, s.handle);
    powerCycle(tpm);
    fails(tpm, loadCmd(c), HANDLE_P1);
  });

  test('a saved session comes back after TPM Resume and TPM Restart with what its policy asserted, but not twice', () => {
    for (const startupType of [SU.STATE, SU.CLEAR]) {
      const tpm = startedEngine();
      const c = savedPolicySession(tpm);
      ok(tpm, shutdown(SU.STATE));
      powerCycle(tpm, startupType);
      assert.equal(ok(tpm, loadCmd(c)).handle, c.savedHandle);
      assert.deepEqual(policyDigest(tpm, c.savedHandle), commandCodePolicy(CC.Unseal));
      flush(tpm, c.savedHandle);
      fails(tpm, loadCmd(c), HANDLE_P1);
    }
  });

  test("a saved session's context is refused with one bit flipped, and the session stays saved", () => {
    const tpm = startedEngine();
    const c = savedPolicySession(tpm);
    const bad = { ...c, contextBlob: Buffer.from(c.contextBlob) };
    bad.contextBlob[bad.contextBlob.length - 1]! ^= 1;
    fails(tpm, loadCmd(bad), INTEGRITY_P1);
    assert.equal(ok(tpm, loadCmd(c)).handle, c.savedHandle);
  });

  test('a saved session comes back in an engine resumed from a snapshot, until a later snapshot records it loaded', () => {
    const a = startedEngine();
    const c = savedPolicySession(a);
    const b = newEngine();
    b.resume(a.snapshot());
    assert.equal(ok(b, loadCmd(c)).handle, c.savedHandle);
    assert.deepEqual(policyDigest(b, c.savedHandle), commandCodePolicy(CC.Unseal));
    // A session started after the restart does not take the saved one's handle.
    const d = newEngine();
    d.resume(a.snapshot());
    assert.notEqual(startPolicySession(d).handle, c.savedHandle);
    // Once loaded, the blob is spent, in the snapshot that records the load too.
    ok(a, loadCmd(c));
    const e = newEngine();
    e.resume(a.snapshot());
    fails(e, loadCmd(c), HANDLE_P1);
  });

  test('saving a session frees its slot while its handle stays reserved for the saved context', () => {
    const tpm = startedEngine();
    const sessions = [startPolicySession(tpm), startPolicySession(tpm), startPolicySession(tpm)];
    fails(tpm, buildCommand({ cc: CC.StartAuthSession, handles: [0x40000007, 0x40000007], params: Buffer.from('0010' + '07'.repeat(16) + '0000' + '01' + '0010' + '000b', 'hex') }), RC.SESSION_MEMORY);
    const c = save(tpm, sessions[0]!.handle);
    const extra = startPolicySession(tpm);
    assert.notEqual(extra.handle, sessions[0]!.handle);
    flush(tpm, extra.handle);
    assert.equal(ok(tpm, loadCmd(c)).handle, sessions[0]!.handle);
  });

  test('64 sessions are active at most, saved ones included: the 65th start is TPM_RC_SESSION_HANDLES until one is flushed', () => {
    const tpm = startedEngine();
    const saved: Context[] = [];
    for (let i = 0; i < 64; i++) saved.push(save(tpm, startPolicySession(tpm).handle));
    const start = buildCommand({ cc: CC.StartAuthSession, handles: [0x40000007, 0x40000007], params: Buffer.from('0010' + '07'.repeat(16) + '0000' + '01' + '0010' + '000b', 'hex') });
    fails(tpm, start, RC.SESSION_HANDLES);
    // Flushing a saved session by its handle gives its place back.
    flush(tpm, saved[5]!.savedHandle);
    assert.equal(ok(tpm, start).handle! >>> 24, HT.POLICY_SESSION);
    fails(tpm, start, RC.SESSION_HANDLES);
    fails(tpm, loadCmd(saved[5]!), HANDLE_P1);
    assert.equal(ok(tpm, loadCmd(saved[6]!)).handle, saved[6]!.savedHandle);
  });
});
