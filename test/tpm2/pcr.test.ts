import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ALG, CAP, CC, RH, SU } from '../../src/tpm/tpm2/constants.ts';
import {
  buildCommand,
  getCapability,
  parse,
  pcrAllocate,
  pcrEvent,
  pcrExtend,
  pcrRead,
  pcrReset,
  selectedPcrs,
  selection,
  shutdown,
  u16b,
  u32b,
} from '../helpers/tpm2-commands.ts';
import { BANKS, H, fails, ok, pcrUpdateCounter, powerCycle, readPcr, startedEngine } from '../helpers/tpm2-engine.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import type { PcrSelection } from '../../src/tpm/tpm2/types/pcr.ts';

const RC = {
  VALUE_H1: 0x184,
  VALUE_P1: 0x1c4,
  HASH_P1: 0x1c3,
  SIZE_P1: 0x1d5,
  AUTH_MISSING: 0x125,
  BAD_AUTH_S1: 0x9a2,
  LOCALITY: 0x907,
};

const ALL_PCRS = Array.from({ length: 24 }, (_, i) => i);
const zeros = (n: number) => Buffer.alloc(n);
const ones = (n: number) => Buffer.alloc(n, 0xff);

function extend(tpm: Tpm2Engine, pcr: number, alg: number, fill: number, locality = 0): Buffer {
  const size = BANKS.find((b) => b.alg === alg)!.size;
  const d = Buffer.alloc(size, fill);
  ok(tpm, pcrExtend(pcr, [{ hashAlg: alg, digest: d }]), locality);
  return d;
}

function allocation(tpm: Tpm2Engine): PcrSelection[] {
  const caps = parse.getCapability(ok(tpm, getCapability(CAP.PCRS, 0, 8))).capabilityData;
  assert.equal(caps.capability, CAP.PCRS);
  return (caps as { pcrs: PcrSelection[] }).pcrs;
}

function allocatedPcrs(tpm: Tpm2Engine, alg: number): number[] {
  const sel = allocation(tpm).find((s) => s.hash === alg);
  return sel ? selectedPcrs(sel.select) : [];
}

describe('TPM2_PCR_Extend', () => {
  test('PCR_Extend of SHA-256 sets PCR to H(old||digest) and leaves the other banks unchanged', () => {
    const tpm = startedEngine();
    const d1 = extend(tpm, 4, ALG.SHA256, 0xa1);
    const v1 = H(ALG.SHA256, zeros(32), d1);
    assert.deepEqual(readPcr(tpm, 4), v1);
    const d2 = extend(tpm, 4, ALG.SHA256, 0xa2);
    assert.deepEqual(readPcr(tpm, 4), H(ALG.SHA256, v1, d2));
    assert.deepEqual(readPcr(tpm, 4, ALG.SHA1), zeros(20));
    assert.deepEqual(readPcr(tpm, 4, ALG.SHA384), zeros(48));
    assert.deepEqual(readPcr(tpm, 4, ALG.SHA512), zeros(64));
  });

  test('PCR_Extend with one digest per bank extends each bank with its own digest', () => {
    const tpm = startedEngine();
    const digests = BANKS.map((b, i) => ({ hashAlg: b.alg, digest: Buffer.alloc(b.size, 0x10 + i) }));
    ok(tpm, pcrExtend(10, digests));
    for (const d of digests) assert.deepEqual(readPcr(tpm, 10, d.hashAlg), H(d.hashAlg, zeros(d.digest.length), d.digest));
  });

  test('PCR_Extend with an empty digest list succeeds and changes nothing', () => {
    const tpm = startedEngine();
    ok(tpm, pcrExtend(1, []));
    assert.deepEqual(readPcr(tpm, 1), zeros(32));
  });

  test('PCR_Extend on TPM_RH_NULL succeeds and changes no PCR', () => {
    const tpm = startedEngine();
    const before = pcrUpdateCounter(tpm);
    ok(tpm, pcrExtend(RH.NULL, [{ hashAlg: ALG.SHA256, digest: ones(32) }]));
    for (const pcr of ALL_PCRS) assert.deepEqual(readPcr(tpm, pcr), pcr >= 17 && pcr <= 22 ? ones(32) : zeros(32));
    assert.equal(pcrUpdateCounter(tpm), before);
  });

  test('PCR_Extend on PCR 24 returns TPM_RC_VALUE + H1 (0x184)', () => {
    const tpm = startedEngine();
    fails(tpm, pcrExtend(24, [{ hashAlg: ALG.SHA256, digest: zeros(32) }]), RC.VALUE_H1);
  });

  test('PCR_Extend with a handle that is not a PCR (TPM_RH_OWNER) returns TPM_RC_VALUE + H1 (0x184)', () => {
    const tpm = startedEngine();
    fails(tpm, pcrExtend(RH.OWNER, [{ hashAlg: ALG.SHA256, digest: zeros(32) }]), RC.VALUE_H1);
  });

  test('PCR_Extend without sessions returns TPM_RC_AUTH_MISSING (0x125)', () => {
    const tpm = startedEngine();
    const cmd = buildCommand({
      cc: CC.PCR_Extend,
      handles: [0],
      params: Buffer.concat([u32b(1), u16b(ALG.SHA256), zeros(32)]),
    });
    fails(tpm, cmd, RC.AUTH_MISSING);
    assert.deepEqual(readPcr(tpm, 0), zeros(32));
  });

  test('PCR_Extend with a wrong PCR password returns TPM_RC_BAD_AUTH + S1 (0x9A2) and leaves the PCR unchanged', () => {
    const tpm = startedEngine();
    fails(tpm, pcrExtend(0, [{ hashAlg: ALG.SHA256, digest: ones(32) }], 'wrong'), RC.BAD_AUTH_S1);
    assert.deepEqual(readPcr(tpm, 0), zeros(32));
  });

  test('PCR_Extend with an unimplemented hash algorithm returns TPM_RC_HASH + P1 (0x1C3)', () => {
    const tpm = startedEngine();
    const p = Buffer.concat([u32b(1), u16b(ALG.SM3_256), zeros(32)]);
    fails(tpm, buildCommand({ cc: CC.PCR_Extend, handles: [0], sessions: [{}], params: p }), RC.HASH_P1);
  });

  test('PCR_Extend with more digests than implemented banks returns TPM_RC_SIZE + P1 (0x1D5)', () => {
    const tpm = startedEngine();
    const items = Array.from({ length: 5 }, () => Buffer.concat([u16b(ALG.SHA256), zeros(32)]));
    const p = Buffer.concat([u32b(5), ...items]);
    fails(tpm, buildCommand({ cc: CC.PCR_Extend, handles: [0], sessions: [{}], params: p }), RC.SIZE_P1);
  });

  test('PCR_Extend of PCR 17 at locality 0 returns TPM_RC_LOCALITY (0x907)', () => {
    const tpm = startedEngine();
    fails(tpm, pcrExtend(17, [{ hashAlg: ALG.SHA256, digest: zeros(32) }]), RC.LOCALITY, 0);
    assert.deepEqual(readPcr(tpm, 17), ones(32));
  });

  test('PCR_Extend of PCR 17 at locality 4 and of PCR 20 at locality 1 succeed', () => {
    const tpm = startedEngine();
    const d17 = extend(tpm, 17, ALG.SHA256, 0x17, 4);
    assert.deepEqual(readPcr(tpm, 17), H(ALG.SHA256, ones(32), d17));
    const d20 = extend(tpm, 20, ALG.SHA256, 0x20, 1);
    assert.deepEqual(readPcr(tpm, 20), H(ALG.SHA256, ones(32), d20));
  });

  test('pcrUpdateCounter increments with each PCR_Extend', () => {
    const tpm = startedEngine();
    const c0 = pcrUpdateCounter(tpm);
    extend(tpm, 0, ALG.SHA256, 1);
    const c1 = pcrUpdateCounter(tpm);
    extend(tpm, 16, ALG.SHA1, 2);
    const c2 = pcrUpdateCounter(tpm);
    assert.ok(c1 > c0, `${c1} > ${c0}`);
    assert.ok(c2 > c1, `${c2} > ${c1}`);
  });

  test('PCR_Extend of PCR 20 (TPM_PT_PCR_NO_INCREMENT) leaves pcrUpdateCounter unchanged', () => {
    const tpm = startedEngine();
    const before = pcrUpdateCounter(tpm);
    extend(tpm, 20, ALG.SHA256, 1, 1);
    assert.equal(pcrUpdateCounter(tpm), before);
  });
});

describe('TPM2_PCR_Reset', () => {
  test('PCR_Reset of PCR 0 returns TPM_RC_LOCALITY (0x907)', () => {
    const tpm = startedEngine();
    const d = extend(tpm, 0, ALG.SHA256, 9);
    for (const locality of [0, 1, 2, 3, 4]) fails(tpm, pcrReset(0), RC.LOCALITY, locality);
    assert.deepEqual(readPcr(tpm, 0), H(ALG.SHA256, zeros(32), d));
  });

  test('PCR_Reset of PCR 16 and PCR 23 at locality 0 sets them to zero in every bank', () => {
    const tpm = startedEngine();
    for (const pcr of [16, 23]) {
      for (const b of BANKS) extend(tpm, pcr, b.alg, 0x55);
      ok(tpm, pcrReset(pcr), 0);
      for (const b of BANKS) assert.deepEqual(readPcr(tpm, pcr, b.alg), zeros(b.size), `PCR ${pcr} bank ${b.alg}`);
    }
  });

  test('PCR_Reset of PCR 17 at locality 4 sets it from all ones to zero', () => {
    const tpm = startedEngine();
    assert.deepEqual(readPcr(tpm, 17), ones(32));
    ok(tpm, pcrReset(17), 4);
    assert.deepEqual(readPcr(tpm, 17), zeros(32));
  });

  test('PCR_Reset of PCR 17 at locality 0 returns TPM_RC_LOCALITY (0x907)', () => {
    const tpm = startedEngine();
    fails(tpm, pcrReset(17), RC.LOCALITY, 0);
  });

  test('PCR_Reset of TPM_RH_NULL returns TPM_RC_VALUE + H1 (TPMI_DH_PCR has no NULL)', () => {
    const tpm = startedEngine();
    fails(tpm, pcrReset(RH.NULL), RC.VALUE_H1);
  });

  test('PCR_Reset increments pcrUpdateCounter', () => {
    const tpm = startedEngine();
    const before = pcrUpdateCounter(tpm);
    ok(tpm, pcrReset(16));
    assert.ok(pcrUpdateCounter(tpm) > before);
  });
});

describe('TPM2_PCR_Read', () => {
  test('after power-on PCR 17-22 read as all ones and the others as zeros, in every bank', () => {
    const tpm = startedEngine();
    for (const b of BANKS) {
      for (const pcr of ALL_PCRS) {
        const expected = pcr >= 17 && pcr <= 22 ? ones(b.size) : zeros(b.size);
        assert.deepEqual(readPcr(tpm, pcr, b.alg), expected, `PCR ${pcr} bank 0x${b.alg.toString(16)}`);
      }
    }
  });

  test('PCR_Read returns at most 8 digests and trims pcrSelectionOut to the PCRs returned', () => {
    const tpm = startedEngine();
    const expected: Buffer[] = [];
    for (let pcr = 0; pcr < 8; pcr++) expected.push(H(ALG.SHA256, zeros(32), extend(tpm, pcr, ALG.SHA256, pcr)));
    const out = parse.pcrRead(ok(tpm, pcrRead([selection(ALG.SHA256, ALL_PCRS)])));
    assert.equal(out.pcrValues.length, 8);
    assert.deepEqual(out.pcrValues, expected);
    assert.equal(out.pcrSelectionOut.length, 1);
    assert.equal(out.pcrSelectionOut[0]!.hash, ALG.SHA256);
    assert.deepEqual(selectedPcrs(out.pcrSelectionOut[0]!.select), [0, 1, 2, 3, 4, 5, 6, 7]);
  });

  test('PCR_Read fills its 8 digests across banks in selection order and reports later banks empty', () => {
    const tpm = startedEngine();
    const sha1 = [0, 1, 2, 3, 4].map((p) => H(ALG.SHA1, zeros(20), extend(tpm, p, ALG.SHA1, 0x40 + p)));
    const sha256 = [0, 1, 2].map((p) => H(ALG.SHA256, zeros(32), extend(tpm, p, ALG.SHA256, 0x80 + p)));
    const out = parse.pcrRead(
      ok(tpm, pcrRead([selection(ALG.SHA1, [0, 1, 2, 3, 4]), selection(ALG.SHA256, [0, 1, 2, 3, 4]), selection(ALG.SHA384, [0])])),
    );
    assert.deepEqual(out.pcrValues, [...sha1, ...sha256]);
    assert.deepEqual(
      out.pcrSelectionOut.map((s) => [s.hash, selectedPcrs(s.select)]),
      [
        [ALG.SHA1, [0, 1, 2, 3, 4]],
        [ALG.SHA256, [0, 1, 2]],
        [ALG.SHA384, []],
      ],
    );
  });

  test('PCR_Read with an empty selection list returns no digests and the pcrUpdateCounter', () => {
    const tpm = startedEngine();
    extend(tpm, 0, ALG.SHA256, 1);
    const out = parse.pcrRead(ok(tpm, pcrRead([])));
    assert.deepEqual(out.pcrValues, []);
    assert.deepEqual(out.pcrSelectionOut, []);
    assert.ok(out.pcrUpdateCounter > 0);
  });

  test('PCR_Read of an unimplemented hash algorithm returns TPM_RC_HASH + P1 (0x1C3)', () => {
    const tpm = startedEngine();
    fails(tpm, pcrRead([selection(ALG.SM3_256, [0])]), RC.HASH_P1);
    fails(tpm, pcrRead([selection(ALG.NULL, [0])]), RC.HASH_P1);
  });

  test('PCR_Read with sizeofSelect below PCR_SELECT_MIN (3) returns TPM_RC_VALUE + P1 (0x1C4)', () => {
    const tpm = startedEngine();
    fails(tpm, pcrRead([selection(ALG.SHA256, [0], 2)]), RC.VALUE_P1);
  });

  test('PCR_Read with sizeofSelect above PCR_SELECT_MAX (4 octets on a 24-PCR TPM) returns TPM_RC_VALUE + P1 (0x1C4)', () => {
    // Part 2 TPMS_PCR_SELECTION: pcrSelect[sizeofSelect]{:PCR_SELECT_MAX}, PCR_SELECT_MAX = (IMPLEMENTATION_PCR+7)/8.
    const tpm = startedEngine();
    fails(tpm, pcrRead([selection(ALG.SHA256, [0], 4)]), RC.VALUE_P1);
  });

  test('PCR_Read with more selections than implemented banks returns TPM_RC_SIZE + P1 (0x1D5)', () => {
    const tpm = startedEngine();
    const sel = selection(ALG.SHA256, [0]);
    fails(tpm, pcrRead([sel, sel, sel, sel, sel]), RC.SIZE_P1);
  });
});

describe('TPM2_PCR_Event', () => {
  test('PCR_Event returns the digest of the event in all four algorithms and extends every allocated bank', () => {
    const tpm = startedEngine();
    const data = Buffer.from('measured boot event');
    const digests = parse.pcrEvent(ok(tpm, pcrEvent(8, data)));
    assert.deepEqual(
      digests.map((d) => d.hashAlg),
      BANKS.map((b) => b.alg),
    );
    for (const d of digests) {
      assert.deepEqual(d.digest, H(d.hashAlg, data));
      assert.deepEqual(readPcr(tpm, 8, d.hashAlg), H(d.hashAlg, zeros(d.digest.length), H(d.hashAlg, data)));
    }
  });

  test('PCR_Event on TPM_RH_NULL returns the digests and extends nothing', () => {
    const tpm = startedEngine();
    const digests = parse.pcrEvent(ok(tpm, pcrEvent(RH.NULL, 'x')));
    assert.equal(digests.length, 4);
    for (const pcr of [0, 8, 16, 23]) assert.deepEqual(readPcr(tpm, pcr), zeros(32));
  });

  test('PCR_Event with more than 1024 octets of event data returns TPM_RC_SIZE + P1 (0x1D5)', () => {
    const tpm = startedEngine();
    fails(tpm, pcrEvent(8, Buffer.alloc(1025)), RC.SIZE_P1);
    ok(tpm, pcrEvent(8, Buffer.alloc(1024)));
  });

  test('PCR_Event of PCR 18 at locality 0 returns TPM_RC_LOCALITY (0x907)', () => {
    const tpm = startedEngine();
    fails(tpm, pcrEvent(18, 'x'), RC.LOCALITY, 0);
  });
});

describe('TPM2_PCR_Allocate', () => {
  test('PCR_Allocate with a wrong platform password returns TPM_RC_BAD_AUTH + S1 (0x9A2)', () => {
    const tpm = startedEngine();
    fails(tpm, pcrAllocate([selection(ALG.SHA1, [])], 'not-the-platform-auth'), RC.BAD_AUTH_S1);
  });

  test('PCR_Allocate without a session returns TPM_RC_AUTH_MISSING (0x125)', () => {
    const tpm = startedEngine();
    const cmd = buildCommand({ cc: CC.PCR_Allocate, handles: [RH.PLATFORM], params: u32b(0) });
    fails(tpm, cmd, RC.AUTH_MISSING);
  });

  test('PCR_Allocate authorized by TPM_RH_OWNER returns TPM_RC_VALUE + H1 (0x184)', () => {
    const tpm = startedEngine();
    fails(tpm, pcrAllocate([selection(ALG.SHA1, [])], '', RH.OWNER), RC.VALUE_H1);
  });

  test('PCR_Allocate reports success, maxPCR 24 and the size the new allocation needs', () => {
    const tpm = startedEngine();
    const r = parse.pcrAllocate(ok(tpm, pcrAllocate([selection(ALG.SHA1, [])])));
    assert.equal(r.allocationSuccess, true);
    assert.equal(r.maxPCR, 24);
    assert.equal(r.sizeNeeded, 24 * (32 + 48 + 64));
    assert.ok(r.sizeAvailable >= r.sizeNeeded);
  });

  test('PCR_Allocate dropping SHA-1 takes effect only after a power cycle and Startup(CLEAR), and GetCapability(PCRS) then shows it', () => {
    const tpm = startedEngine();
    ok(tpm, pcrAllocate([selection(ALG.SHA1, [])]));
    // Still the old allocation until the next TPM Reset.
    assert.deepEqual(allocatedPcrs(tpm, ALG.SHA1), ALL_PCRS);
    const d = extend(tpm, 0, ALG.SHA1, 0x11);
    assert.deepEqual(readPcr(tpm, 0, ALG.SHA1), H(ALG.SHA1, zeros(20), d));

    ok(tpm, shutdown(SU.CLEAR));
    powerCycle(tpm, SU.CLEAR);

    assert.deepEqual(allocatedPcrs(tpm, ALG.SHA1), []);
    for (const alg of [ALG.SHA256, ALG.SHA384, ALG.SHA512]) assert.deepEqual(allocatedPcrs(tpm, alg), ALL_PCRS);
    const out = parse.pcrRead(ok(tpm, pcrRead([selection(ALG.SHA1, [0, 1])])));
    assert.deepEqual(out.pcrValues, []);
    assert.deepEqual(selectedPcrs(out.pcrSelectionOut[0]!.select), []);
    // PCR_Event still reports all four digests and extends the remaining banks.
    const digests = parse.pcrEvent(ok(tpm, pcrEvent(0, 'after')));
    assert.equal(digests.length, 4);
    assert.deepEqual(readPcr(tpm, 0, ALG.SHA256), H(ALG.SHA256, zeros(32), H(ALG.SHA256, 'after')));
  });

  test('PCR_Allocate leaves banks it does not mention as they are', () => {
    const tpm = startedEngine();
    ok(tpm, pcrAllocate([selection(ALG.SHA384, [0, 1, 2])]));
    ok(tpm, shutdown(SU.CLEAR));
    powerCycle(tpm, SU.CLEAR);
    assert.deepEqual(allocatedPcrs(tpm, ALG.SHA384), [0, 1, 2]);
    assert.deepEqual(allocatedPcrs(tpm, ALG.SHA1), ALL_PCRS);
    assert.deepEqual(allocatedPcrs(tpm, ALG.SHA256), ALL_PCRS);
  });
});
