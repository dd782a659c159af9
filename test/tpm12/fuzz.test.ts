import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { frame, makeTpm, ownedTpm } from '../helpers/tpm12-engine.ts';
import { ORD, TAG } from '../../src/tpm/tpm12/constants.ts';
import { COMMANDS } from '../../src/tpm/tpm12/commands/index.ts';

const ORDINALS = COMMANDS.map((c) => c.ord);

function wellFormed(rsp: Buffer): void {
  assert.ok(rsp.length >= 10);
  assert.equal(rsp.readUInt32BE(2), rsp.length);
  const tag = rsp.readUInt16BE(0);
  assert.ok(tag === TAG.RSP_COMMAND || tag === TAG.RSP_AUTH1_COMMAND || tag === TAG.RSP_AUTH2_COMMAND);
  const rc = rsp.readUInt32BE(6);
  // TPM 1.2 return codes: base codes below 0x100 and the non-fatal 0x800 range.
  assert.ok(rc < 0x100 || (rc >= 0x800 && rc < 0x900), `rc 0x${rc.toString(16)}`);
  if (rc !== 0) assert.equal(rsp.length, 10);
}

test('random bytes never make the dispatcher throw and always get a well-formed TPM 1.2 response', () => {
  const t = makeTpm({ onInternalError: (e) => assert.fail(`internal error: ${String(e)}`) });
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      wellFormed(t.engine.execute(bytes));
    }),
    { numRuns: 2000 },
  );
});

test('commands with valid headers and random bodies, tags and localities never break the engine', async () => {
  const t = await ownedTpm({ onInternalError: (e) => assert.fail(`internal error: ${String(e)}`) });
  const noisy = new Set<number>([ORD.TakeOwnership, ORD.CreateWrapKey, ORD.MakeIdentity, ORD.CreateEndorsementKeyPair, ORD.OwnerClear, ORD.ForceClear]);
  fc.assert(
    fc.property(
      fc.constantFrom(...ORDINALS.filter((o) => !noisy.has(o))),
      fc.constantFrom(TAG.RQU_COMMAND, TAG.RQU_AUTH1_COMMAND, TAG.RQU_AUTH2_COMMAND),
      fc.uint8Array({ maxLength: 160 }),
      fc.integer({ min: 0, max: 4 }),
      (ord, tag, body, locality) => {
        wellFormed(t.engine.execute(frame(tag, ord, Buffer.from(body)), locality));
      },
    ),
    { numRuns: 3000 },
  );
});

test('single-byte mutations of valid commands never break the engine', async () => {
  const t = await ownedTpm({ onInternalError: (e) => assert.fail(`internal error: ${String(e)}`) });
  const seeds = [
    frame(TAG.RQU_COMMAND, ORD.Extend, '00000007' + '11'.repeat(20)),
    frame(TAG.RQU_COMMAND, ORD.GetCapability, '00000005000000040000010 1'.replace(/ /g, '')),
    frame(TAG.RQU_COMMAND, ORD.PCR_Reset, '0003000001'),
    frame(TAG.RQU_COMMAND, ORD.OSAP, '0004400000002222222222222222222222222222222222222222'),
    frame(TAG.RQU_COMMAND, ORD.NV_DefineSpace, '0018' + '00011000' + '0003000000' + '1f' + '00'.repeat(20) + '0003000000' + '1f' + '00'.repeat(20) + '0017' + '00000000' + '000000' + '00000010' + '00'.repeat(20)),
  ];
  fc.assert(
    fc.property(fc.constantFrom(...seeds), fc.nat(), fc.integer({ min: 0, max: 255 }), (seed, at, value) => {
      const cmd = Buffer.from(seed);
      cmd[at % cmd.length] = value;
      wellFormed(t.engine.execute(cmd));
    }),
    { numRuns: 3000 },
  );
});
