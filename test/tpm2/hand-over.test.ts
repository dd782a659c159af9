/**
 * Handing the running state over as changes (Tpm2Engine.handOver): whatever the commands, the
 * image the changes rebuild is byte for byte the engine's snapshot, and a PCR_Extend hands over
 * tens of bytes.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { ALG, CC, RH, SU } from '../../src/tpm/tpm2/constants.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { NV_ATTR, nvPublic2b } from '../../src/tpm/tpm2/types/nv.ts';
import { patchInPlace } from '../../src/tpm/state-delta.ts';
import { buildCommand, clockSet, enc, params, pcrAllocate, pcrEvent, pcrExtend, pcrReset, pw, selection, shutdown, startup, tpm2b, u16b } from '../helpers/tpm2-commands.ts';
import { exec, newEngine, ok, startedEngine } from '../helpers/tpm2-engine.ts';

const IX = 0x01500010;
const COUNTER = 0x01500011;

/** The hierarchies' authValues as the steps changed them, so that later steps still get in. */
const auths = new Map<number, string>();
const authOf = (h: number) => auths.get(h) ?? '';
const changeAuth = (h: number, auth: string) => buildCommand({ cc: CC.HierarchyChangeAuth, handles: [h], sessions: [pw(authOf(h))], params: tpm2b(auth) });
const define = (index: number, attributes: number, size: number) =>
  buildCommand({
    cc: CC.NV_DefineSpace,
    handles: [RH.OWNER],
    sessions: [pw(authOf(RH.OWNER))],
    params: params(tpm2b(''), enc(nvPublic2b, { nvIndex: index, nameAlg: ALG.SHA256, attributes: attributes >>> 0, authPolicy: Buffer.alloc(0), dataSize: size })),
  });
const nvWrite = (data: Buffer) => buildCommand({ cc: CC.NV_Write, handles: [RH.OWNER, IX], sessions: [pw(authOf(RH.OWNER))], params: params(tpm2b(data), u16b(0)) });
const nvIncrement = () => buildCommand({ cc: CC.NV_Increment, handles: [RH.OWNER, COUNTER], sessions: [pw(authOf(RH.OWNER))] });
const contextSave = (h: number) => buildCommand({ cc: CC.ContextSave, handles: [h] });
const hierarchyControl = (enable: number, state: boolean) =>
  buildCommand({ cc: CC.HierarchyControl, handles: [RH.PLATFORM], sessions: [pw(authOf(RH.PLATFORM))], params: params(Buffer.from([enable >>> 24, (enable >>> 16) & 0xff, (enable >>> 8) & 0xff, enable & 0xff]), Buffer.from([state ? 1 : 0])) });

/** What a guest might do to the state a snapshot holds; each runs whether or not the TPM accepts it. */
const step = fc.oneof(
  fc.record({ op: fc.constant('extend' as const), pcr: fc.nat(23), banks: fc.subarray([ALG.SHA1, ALG.SHA256, ALG.SHA384, ALG.SHA512], { minLength: 1 }), seed: fc.nat(255) }),
  fc.record({ op: fc.constant('event' as const), pcr: fc.nat(23), data: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ op: fc.constant('reset' as const), pcr: fc.constantFrom(16, 23, 0) }),
  fc.record({ op: fc.constant('nv-write' as const), data: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ op: fc.constant('nv-increment' as const) }),
  fc.record({ op: fc.constant('clock' as const), ahead: fc.nat(1_000_000) }),
  fc.record({ op: fc.constant('auth' as const), hierarchy: fc.constantFrom(RH.OWNER, RH.PLATFORM, RH.ENDORSEMENT), auth: fc.string({ maxLength: 20 }) }),
  fc.record({ op: fc.constant('disable' as const), enable: fc.constantFrom(RH.OWNER, RH.ENDORSEMENT) }),
  fc.record({ op: fc.constant('context-save' as const) }),
  fc.record({ op: fc.constant('reboot' as const), state: fc.boolean() }),
  fc.record({ op: fc.constant('allocate' as const), drop: fc.constantFrom(ALG.SHA1, ALG.SHA384, ALG.SHA512) }),
);
type Step = typeof step extends fc.Arbitrary<infer T> ? T : never;

function run(tpm: Tpm2Engine, s: Step): void {
  switch (s.op) {
    case 'extend':
      exec(tpm, pcrExtend(s.pcr, s.banks.map((hashAlg) => ({ hashAlg, digest: Buffer.alloc({ [ALG.SHA1]: 20, [ALG.SHA256]: 32, [ALG.SHA384]: 48, [ALG.SHA512]: 64 }[hashAlg]!, s.seed) }))));
      return;
    case 'event':
      exec(tpm, pcrEvent(s.pcr, s.data));
      return;
    case 'reset':
      exec(tpm, pcrReset(s.pcr));
      return;
    case 'nv-write':
      exec(tpm, nvWrite(Buffer.from(s.data)));
      return;
    case 'nv-increment':
      exec(tpm, nvIncrement());
      return;
    case 'clock':
      exec(tpm, clockSet(tpm.clock.clock + BigInt(s.ahead)));
      return;
    case 'auth':
      if (exec(tpm, changeAuth(s.hierarchy, s.auth)).rc === 0) auths.set(s.hierarchy, s.auth);
      return;
    case 'disable':
      exec(tpm, hierarchyControl(s.enable, false));
      return;
    case 'context-save': {
      const r = exec(tpm, buildCommand({ cc: CC.StartAuthSession, handles: [RH.NULL, RH.NULL], params: params(tpm2b(Buffer.alloc(32, 1)), tpm2b(''), Buffer.from([0x03]), u16b(ALG.NULL), u16b(ALG.SHA256)) }), 0);
      if (r.rc === 0) exec(tpm, contextSave(r.raw.readUInt32BE(10)));
      return;
    }
    case 'reboot':
      exec(tpm, shutdown(s.state ? SU.STATE : SU.CLEAR));
      tpm.powerOn();
      auths.delete(RH.PLATFORM); // reset by every Startup
      exec(tpm, startup(s.state ? SU.STATE : SU.CLEAR));
      return;
    case 'allocate':
      exec(tpm, pcrAllocate([selection(s.drop, [])], authOf(RH.PLATFORM)));
      return;
  }
}

/** The image a keeper of hand-overs holds: whole images replace it, changes patch it. */
function keep(held: Buffer | undefined, h: ReturnType<Tpm2Engine['handOver']>): Buffer {
  if ('image' in h) return Buffer.from(h.image);
  assert.ok(held, 'a change came before any whole image');
  assert.ok(patchInPlace(held, h.delta), 'the change does not fit the image it follows');
  return held;
}

describe('Tpm2Engine.handOver', () => {
  test('the changes rebuild the snapshot exactly, whatever the commands, across reboots, reallocation and a resume', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), fc.nat(40), (steps, resumeAt) => {
        auths.clear();
        let tpm = startedEngine();
        ok(tpm, define(IX, NV_ATTR.OWNERWRITE | NV_ATTR.OWNERREAD, 64));
        ok(tpm, define(COUNTER, NV_ATTR.OWNERWRITE | NV_ATTR.OWNERREAD | (0x1 << 4), 8));
        let held = keep(undefined, tpm.handOver());
        steps.forEach((s, i) => {
          if (i === resumeAt) {
            // A host restart: a new engine continues from the held image, and changes follow it.
            const next = newEngine();
            next.resume(Buffer.from(held));
            tpm = next;
          }
          run(tpm, s);
          held = keep(held, tpm.handOver());
          assert.ok(held.equals(tpm.snapshot()), `after ${s.op} (step ${i})`);
        });
      }),
      { numRuns: 60 },
    );
  });

  test('a PCR_Extend hands over tens of bytes; the first hand-over, and one after a field changed length, is whole', () => {
    auths.clear();
    const tpm = startedEngine();
    const first = tpm.handOver();
    assert.ok('image' in first);
    ok(tpm, pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 7) }]));
    const change = tpm.handOver();
    assert.ok('delta' in change);
    assert.ok(change.delta.length <= 4 + (6 + 4) + (6 + 32), `${change.delta.length} bytes`);
    ok(tpm, changeAuth(RH.OWNER, 'longer now'));
    assert.ok('image' in tpm.handOver(), 'the owner auth changed the length of NV');
    const resumed = newEngine();
    resumed.resume(tpm.snapshot());
    ok(resumed, pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 8) }]));
    assert.ok('delta' in resumed.handOver(), 'a resumed engine hands over changes to what it resumed from');
  });
});

