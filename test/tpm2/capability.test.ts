import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ALG, ALG_ATTR, CAP, CC, ECC_CURVE, HR, PT, PT_FIXED, PT_PCR, PT_VAR, RH } from '../../src/tpm/tpm2/constants.ts';
import type { CapabilityData } from '../../src/tpm/tpm2/types/capability.ts';
import { getCapability, hashSequenceStart, parse, selectedPcrs } from '../helpers/tpm2-commands.ts';
import { fails, ok, startedEngine } from '../helpers/tpm2-engine.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';

const RC_VALUE_P1 = 0x1c4;
const RC_VALUE_P2 = 0x2c4;
const RC_HANDLE_P2 = 0x2cb;

function cap(tpm: Tpm2Engine, capability: number, property: number, count: number): { moreData: boolean; data: CapabilityData } {
  const r = parse.getCapability(ok(tpm, getCapability(capability, property, count)));
  assert.equal(r.capabilityData.capability, capability);
  return { moreData: r.moreData, data: r.capabilityData };
}

const items = (d: CapabilityData) => (d as { items: number[] }).items;
const algs = (d: CapabilityData) => (d as { algs: { alg: number; attributes: number }[] }).algs;
const props = (d: CapabilityData) => (d as { properties: { property: number; value: number }[] }).properties;
const pcrProps = (d: CapabilityData) => (d as { pcrProperties: { tag: number; select: Buffer }[] }).pcrProperties;

function ascendingUnique(xs: number[]): boolean {
  return xs.every((x, i) => i === 0 || x >>> 0 > xs[i - 1]! >>> 0);
}

/** Walks a paged capability `count` items at a time, returning everything and the number of pages. */
function walk(tpm: Tpm2Engine, capability: number, start: number, count: number, key: (d: CapabilityData) => number[]) {
  const all: number[] = [];
  let property = start;
  let pages = 0;
  for (;;) {
    const { moreData, data } = cap(tpm, capability, property, count);
    const got = key(data);
    pages++;
    assert.ok(got.length <= count);
    all.push(...got);
    if (!moreData) break;
    assert.equal(got.length, count, 'a page short of the count must be the last');
    property = (got[got.length - 1]! + 1) >>> 0;
    assert.ok(pages < 1000);
  }
  return { all, pages };
}

function tpmProperty(tpm: Tpm2Engine, property: number): number {
  const p = props(cap(tpm, CAP.TPM_PROPERTIES, property, 1).data)[0]!;
  assert.equal(p.property, property, `property 0x${property.toString(16)} is reported`);
  return p.value;
}

/**
 * TPMA_CC of the implemented commands as Part 3 specifies them: {NV} in the command table sets nv;
 * the handle area gives cHandles; a response handle sets rHandle; SequenceComplete and
 * EventSequenceComplete flush their sequence.
 */
const EXPECTED_CC: Record<number, { nv: number; extensive: number; flushed: number; cHandles: number; rHandle: number }> = {
  [CC.ClockSet]: { nv: 1, extensive: 0, flushed: 0, cHandles: 1, rHandle: 0 },
  [CC.PCR_Allocate]: { nv: 1, extensive: 0, flushed: 0, cHandles: 1, rHandle: 0 },
  [CC.ClockRateAdjust]: { nv: 0, extensive: 0, flushed: 0, cHandles: 1, rHandle: 0 },
  [CC.PCR_Event]: { nv: 1, extensive: 0, flushed: 0, cHandles: 1, rHandle: 0 },
  [CC.PCR_Reset]: { nv: 1, extensive: 0, flushed: 0, cHandles: 1, rHandle: 0 },
  [CC.SequenceComplete]: { nv: 0, extensive: 0, flushed: 1, cHandles: 1, rHandle: 0 },
  [CC.IncrementalSelfTest]: { nv: 1, extensive: 0, flushed: 0, cHandles: 0, rHandle: 0 },
  [CC.SelfTest]: { nv: 1, extensive: 0, flushed: 0, cHandles: 0, rHandle: 0 },
  [CC.Startup]: { nv: 1, extensive: 0, flushed: 0, cHandles: 0, rHandle: 0 },
  [CC.Shutdown]: { nv: 1, extensive: 0, flushed: 0, cHandles: 0, rHandle: 0 },
  [CC.StirRandom]: { nv: 1, extensive: 0, flushed: 0, cHandles: 0, rHandle: 0 },
  [CC.SequenceUpdate]: { nv: 0, extensive: 0, flushed: 0, cHandles: 1, rHandle: 0 },
  [CC.GetCapability]: { nv: 0, extensive: 0, flushed: 0, cHandles: 0, rHandle: 0 },
  [CC.GetRandom]: { nv: 0, extensive: 0, flushed: 0, cHandles: 0, rHandle: 0 },
  [CC.GetTestResult]: { nv: 0, extensive: 0, flushed: 0, cHandles: 0, rHandle: 0 },
  [CC.Hash]: { nv: 0, extensive: 0, flushed: 0, cHandles: 0, rHandle: 0 },
  [CC.PCR_Read]: { nv: 0, extensive: 0, flushed: 0, cHandles: 0, rHandle: 0 },
  [CC.ReadClock]: { nv: 0, extensive: 0, flushed: 0, cHandles: 0, rHandle: 0 },
  [CC.PCR_Extend]: { nv: 1, extensive: 0, flushed: 0, cHandles: 1, rHandle: 0 },
  [CC.EventSequenceComplete]: { nv: 1, extensive: 0, flushed: 1, cHandles: 2, rHandle: 0 },
  [CC.HashSequenceStart]: { nv: 0, extensive: 0, flushed: 0, cHandles: 0, rHandle: 1 },
  [CC.TestParms]: { nv: 0, extensive: 0, flushed: 0, cHandles: 0, rHandle: 0 },
};

function decodeTpmaCc(a: number) {
  return {
    commandIndex: a & 0xffff,
    reserved1: (a >>> 16) & 0x3f,
    nv: (a >>> 22) & 1,
    extensive: (a >>> 23) & 1,
    flushed: (a >>> 24) & 1,
    cHandles: (a >>> 25) & 7,
    rHandle: (a >>> 28) & 1,
    V: (a >>> 29) & 1,
    reserved2: (a >>> 30) & 3,
  };
}

function commandList(tpm: Tpm2Engine): number[] {
  const r = cap(tpm, CAP.COMMANDS, 0, 254);
  assert.equal(r.moreData, false);
  return items(r.data);
}

describe('TPM2_GetCapability', () => {
  test('GetCapability(ALGS) lists the implemented algorithms in ascending order with their TPMA_ALGORITHM', () => {
    const tpm = startedEngine();
    const { moreData, data } = cap(tpm, CAP.ALGS, 0, 1000);
    assert.equal(moreData, false);
    const list = algs(data);
    assert.ok(ascendingUnique(list.map((a) => a.alg)));
    const attr = new Map(list.map((a) => [a.alg, a.attributes]));
    for (const h of [ALG.SHA1, ALG.SHA256, ALG.SHA384, ALG.SHA512]) {
      assert.ok((attr.get(h)! & ALG_ATTR.hash) !== 0, `hash bit of 0x${h.toString(16)}`);
      assert.equal(attr.get(h)! & ALG_ATTR.asymmetric, 0);
    }
    for (const a of [ALG.RSA, ALG.ECC]) assert.equal(attr.get(a)! & (ALG_ATTR.asymmetric | ALG_ATTR.object), ALG_ATTR.asymmetric | ALG_ATTR.object);
    assert.ok((attr.get(ALG.AES)! & ALG_ATTR.symmetric) !== 0);
    assert.ok((attr.get(ALG.CFB)! & ALG_ATTR.symmetric) !== 0);
    assert.ok((attr.get(ALG.KEYEDHASH)! & ALG_ATTR.object) !== 0);
    assert.ok((attr.get(ALG.SYMCIPHER)! & ALG_ATTR.object) !== 0);
    assert.ok((attr.get(ALG.ECDSA)! & ALG_ATTR.signing) !== 0);
    assert.ok((attr.get(ALG.RSASSA)! & ALG_ATTR.signing) !== 0);
    assert.ok(!attr.has(ALG.SM3_256) && !attr.has(ALG.ECDAA));
  });

  test('GetCapability(ALGS) starts at the requested algorithm and pages with moreData', () => {
    const tpm = startedEngine();
    const first = cap(tpm, CAP.ALGS, ALG.SHA256, 3);
    assert.deepEqual(
      algs(first.data).map((a) => a.alg),
      [ALG.SHA256, ALG.SHA384, ALG.SHA512],
    );
    assert.equal(first.moreData, true);
    const full = algs(cap(tpm, CAP.ALGS, 0, 1000).data).map((a) => a.alg);
    const paged = walk(tpm, CAP.ALGS, 0, 4, (d) => algs(d).map((a) => a.alg));
    assert.deepEqual(paged.all, full);
    assert.ok(paged.pages > 1);
  });

  test('GetCapability(HANDLES, PCR) lists PCR 0-23 and pages from the requested PCR', () => {
    const tpm = startedEngine();
    const all = cap(tpm, CAP.HANDLES, HR.PCR, 100);
    assert.deepEqual(items(all.data), Array.from({ length: 24 }, (_, i) => i));
    assert.equal(all.moreData, false);
    const page = cap(tpm, CAP.HANDLES, 20, 2);
    assert.deepEqual(items(page.data), [20, 21]);
    assert.equal(page.moreData, true);
  });

  test('GetCapability(HANDLES, PERMANENT) lists the permanent handles in ascending order', () => {
    const tpm = startedEngine();
    const { moreData, data } = cap(tpm, CAP.HANDLES, HR.PERMANENT, 100);
    assert.equal(moreData, false);
    const hs = items(data);
    assert.ok(ascendingUnique(hs));
    assert.ok(hs.every((h) => h >>> 24 === 0x40));
    for (const h of [RH.OWNER, RH.NULL, RH.RS_PW, RH.LOCKOUT, RH.ENDORSEMENT, RH.PLATFORM, RH.PLATFORM_NV]) {
      assert.ok(hs.includes(h), `0x${h.toString(16)} listed`);
    }
  });

  test('GetCapability(HANDLES, TRANSIENT) lists the loaded sequence objects', () => {
    const tpm = startedEngine();
    assert.deepEqual(items(cap(tpm, CAP.HANDLES, HR.TRANSIENT, 10).data), []);
    const a = ok(tpm, hashSequenceStart()).handle!;
    const b = ok(tpm, hashSequenceStart()).handle!;
    assert.deepEqual(items(cap(tpm, CAP.HANDLES, HR.TRANSIENT, 10).data), [a, b].sort((x, y) => x - y));
    const one = cap(tpm, CAP.HANDLES, HR.TRANSIENT, 1);
    assert.equal(items(one.data).length, 1);
    assert.equal(one.moreData, true);
  });

  test('GetCapability(HANDLES) of NV indices, loaded sessions, saved sessions and persistent objects is empty', () => {
    const tpm = startedEngine();
    for (const property of [HR.NV_INDEX, 0x02000000, 0x03000000, HR.PERSISTENT]) {
      const r = cap(tpm, CAP.HANDLES, property, 10);
      assert.deepEqual(items(r.data), [], `0x${property.toString(16)}`);
      assert.equal(r.moreData, false);
    }
  });

  test('GetCapability(HANDLES) of an unsupported handle type returns TPM_RC_HANDLE + P2 (0x2CB)', () => {
    const tpm = startedEngine();
    fails(tpm, getCapability(CAP.HANDLES, 0x05000000, 1), RC_HANDLE_P2);
    fails(tpm, getCapability(CAP.HANDLES, 0xff000000, 1), RC_HANDLE_P2);
  });

  test('GetCapability(COMMANDS) lists every implemented command in ascending order with commandIndex, cHandles, rHandle and flushed', () => {
    const tpm = startedEngine();
    const list = commandList(tpm);
    assert.ok(ascendingUnique(list.map((a) => a & 0xffff)));
    const byCc = new Map(list.map((a) => [a & 0xffff, decodeTpmaCc(a)]));
    for (const [cc, exp] of Object.entries(EXPECTED_CC)) {
      const got = byCc.get(Number(cc));
      assert.ok(got, `command 0x${Number(cc).toString(16)} listed`);
      assert.deepEqual(
        { cHandles: got.cHandles, rHandle: got.rHandle, flushed: got.flushed, extensive: got.extensive, V: got.V },
        { cHandles: exp.cHandles, rHandle: exp.rHandle, flushed: exp.flushed, extensive: exp.extensive, V: 0 },
        `TPMA_CC of 0x${Number(cc).toString(16)}`,
      );
    }
    for (const a of byCc.values()) {
      assert.equal(a.reserved1, 0);
      assert.equal(a.reserved2, 0);
    }
  });

  test('GetCapability(COMMANDS) sets TPMA_CC.nv exactly for the commands Part 3 marks {NV}', () => {
    const tpm = startedEngine();
    const byCc = new Map(commandList(tpm).map((a) => [a & 0xffff, decodeTpmaCc(a)]));
    const wrong: string[] = [];
    for (const [cc, exp] of Object.entries(EXPECTED_CC)) {
      const got = byCc.get(Number(cc));
      if (got && got.nv !== exp.nv) wrong.push(`0x${Number(cc).toString(16)}: nv=${got.nv}, Part 3 says ${exp.nv}`);
    }
    assert.deepEqual(wrong, []);
  });

  test('GetCapability(COMMANDS) starts at the requested command code and pages with moreData', () => {
    const tpm = startedEngine();
    const r = cap(tpm, CAP.COMMANDS, CC.PCR_Read, 2);
    const all = commandList(tpm).map((a) => a & 0xffff);
    const from = all.indexOf(CC.PCR_Read);
    assert.deepEqual(
      items(r.data).map((a) => a & 0xffff),
      all.slice(from, from + 2),
    );
    assert.equal(items(r.data)[0]! & 0xffff, CC.PCR_Read);
    assert.equal(r.moreData, true);
    const paged = walk(tpm, CAP.COMMANDS, 0, 5, (d) => items(d).map((a) => a & 0xffff));
    assert.deepEqual(
      paged.all,
      commandList(tpm).map((a) => a & 0xffff),
    );
  });

  test('GetCapability(PCRS) reports four banks with PCRs 0-23 allocated in each', () => {
    const tpm = startedEngine();
    const { moreData, data } = cap(tpm, CAP.PCRS, 0, 1);
    assert.equal(moreData, false);
    const pcrs = (data as { pcrs: { hash: number; select: Buffer }[] }).pcrs;
    assert.deepEqual(
      pcrs.map((s) => s.hash),
      [ALG.SHA1, ALG.SHA256, ALG.SHA384, ALG.SHA512],
    );
    for (const s of pcrs) {
      assert.equal(s.select.length, 3);
      assert.deepEqual(selectedPcrs(s.select), Array.from({ length: 24 }, (_, i) => i));
    }
  });

  test('GetCapability(PCRS) with a non-zero property returns TPM_RC_VALUE + P2 (0x2C4)', () => {
    // Part 3 §30.2 TPM2_GetCapability: TPM_RC_VALUE "property is not 0 for the TPM_CAP_PCRS capability value".
    const tpm = startedEngine();
    fails(tpm, getCapability(CAP.PCRS, 1, 1), RC_VALUE_P2);
  });

  test('GetCapability(TPM_PROPERTIES) reports the fixed properties of this TPM', () => {
    const tpm = startedEngine();
    assert.equal(tpmProperty(tpm, PT.FAMILY_INDICATOR), 0x322e3000); // "2.0\0"
    assert.equal(tpmProperty(tpm, PT.LEVEL), 0);
    assert.ok(tpmProperty(tpm, PT.REVISION) >= 116);
    assert.equal(tpmProperty(tpm, PT.PCR_COUNT), 24);
    assert.equal(tpmProperty(tpm, PT.PCR_SELECT_MIN), 3);
    assert.equal(tpmProperty(tpm, PT.MAX_COMMAND_SIZE), 4096);
    assert.equal(tpmProperty(tpm, PT.MAX_RESPONSE_SIZE), 4096);
    assert.equal(tpmProperty(tpm, PT.INPUT_BUFFER), 1024);
    assert.equal(tpmProperty(tpm, PT.MAX_DIGEST), 64);
    assert.equal(tpmProperty(tpm, PT.MAX_CAP_BUFFER), 1024);
    assert.equal(tpmProperty(tpm, PT.HR_TRANSIENT_MIN), 3);
    assert.equal(tpmProperty(tpm, PT.TOTAL_COMMANDS), commandList(tpm).length);
    assert.equal(tpmProperty(tpm, PT.PS_FAMILY_INDICATOR), 1); // PC Client
  });

  test('GetCapability(TPM_PROPERTIES) pages with moreData through the fixed group into the variable group', () => {
    const tpm = startedEngine();
    const full = cap(tpm, CAP.TPM_PROPERTIES, PT_FIXED, 127);
    assert.equal(full.moreData, false);
    const all = props(full.data).map((p) => p.property);
    assert.ok(ascendingUnique(all));
    assert.ok(all.some((p) => p >= PT_FIXED && p < PT_VAR));
    assert.ok(all.some((p) => p >= PT_VAR));
    const paged = walk(tpm, CAP.TPM_PROPERTIES, PT_FIXED, 7, (d) => props(d).map((p) => p.property));
    assert.deepEqual(paged.all, all);
    const first = cap(tpm, CAP.TPM_PROPERTIES, PT_FIXED, 1);
    assert.equal(first.moreData, true);
    const fromVar = props(cap(tpm, CAP.TPM_PROPERTIES, PT_VAR, 127).data);
    assert.equal(fromVar[0]!.property, PT.PERMANENT);
  });

  test('GetCapability(TPM_PROPERTIES) reports TPM_PT_HR_TRANSIENT_AVAIL falling as sequences are started', () => {
    const tpm = startedEngine();
    assert.equal(tpmProperty(tpm, PT.HR_TRANSIENT_AVAIL), 3);
    ok(tpm, hashSequenceStart());
    assert.equal(tpmProperty(tpm, PT.HR_TRANSIENT_AVAIL), 2);
  });

  test('GetCapability(PCR_PROPERTIES) reports the PC-Client PCR attributes', () => {
    const tpm = startedEngine();
    const { moreData, data } = cap(tpm, CAP.PCR_PROPERTIES, 0, 100);
    assert.equal(moreData, false);
    const got = new Map(pcrProps(data).map((p) => [p.tag, selectedPcrs(p.select)]));
    const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
    const expected: [number, number[]][] = [
      [PT_PCR.SAVE, range(0, 15)],
      [PT_PCR.EXTEND_L0, [...range(0, 16), 23]],
      [PT_PCR.RESET_L0, [16, 23]],
      [PT_PCR.EXTEND_L1, [...range(0, 16), 20, 23]],
      [PT_PCR.RESET_L1, [16, 23]],
      [PT_PCR.EXTEND_L2, range(0, 23)],
      [PT_PCR.RESET_L2, [16, 20, 21, 22, 23]],
      [PT_PCR.EXTEND_L3, [...range(0, 20), 23]],
      [PT_PCR.RESET_L3, [16, 23]],
      [PT_PCR.EXTEND_L4, [...range(0, 18), 23]],
      [PT_PCR.RESET_L4, range(17, 22)],
      [PT_PCR.NO_INCREMENT, [20, 21, 22]],
      [PT_PCR.DRTM_RESET, range(17, 22)],
    ];
    for (const [tag, pcrs] of expected) assert.deepEqual(got.get(tag), pcrs, `TPM_PT_PCR 0x${tag.toString(16)}`);
    assert.ok(ascendingUnique(pcrProps(data).map((p) => p.tag)));
  });

  test('GetCapability(PCR_PROPERTIES) starts at the requested tag and pages with moreData', () => {
    const tpm = startedEngine();
    const r = cap(tpm, CAP.PCR_PROPERTIES, PT_PCR.RESET_L4, 2);
    assert.deepEqual(
      pcrProps(r.data).map((p) => p.tag),
      [PT_PCR.RESET_L4, PT_PCR.NO_INCREMENT],
    );
    assert.equal(r.moreData, true);
  });

  test('GetCapability(ECC_CURVES) lists NIST P-256 and P-384', () => {
    const tpm = startedEngine();
    const { moreData, data } = cap(tpm, CAP.ECC_CURVES, 0, 100);
    assert.equal(moreData, false);
    assert.deepEqual((data as { curves: number[] }).curves, [ECC_CURVE.NIST_P256, ECC_CURVE.NIST_P384]);
  });

  test('GetCapability(PP_COMMANDS) is empty and GetCapability(AUDIT_COMMANDS) lists SetCommandCodeAuditStatus on a new TPM', () => {
    const tpm = startedEngine();
    const pp = cap(tpm, CAP.PP_COMMANDS, 0, 100);
    assert.deepEqual(items(pp.data), []);
    assert.equal(pp.moreData, false);
    const audit = cap(tpm, CAP.AUDIT_COMMANDS, 0, 100);
    assert.deepEqual(items(audit.data), [CC.SetCommandCodeAuditStatus]);
    assert.equal(audit.moreData, false);
  });

  test('GetCapability(AUTH_POLICIES) with a property that is not a permanent handle returns TPM_RC_VALUE + P2 (0x2C4)', () => {
    // Part 3 §30.2 detailed actions: TPM_CAP_AUTH_POLICIES requires a TPM_HT_PERMANENT property.
    const tpm = startedEngine();
    cap(tpm, CAP.AUTH_POLICIES, RH.OWNER, 10);
    fails(tpm, getCapability(CAP.AUTH_POLICIES, 0x80000000, 1), RC_VALUE_P2);
  });

  test('GetCapability with an undefined or vendor capability returns TPM_RC_VALUE + P1 (0x1C4)', () => {
    const tpm = startedEngine();
    for (const c of [0x0b, CAP.VENDOR_PROPERTY, 0xffffffff]) fails(tpm, getCapability(c, 0, 1), RC_VALUE_P1);
  });

  test('every capability answer fits in MAX_CAP_BUFFER (1024 octets) even for a huge propertyCount', () => {
    const tpm = startedEngine();
    const requests: [number, number][] = [
      [CAP.ALGS, 0],
      [CAP.HANDLES, HR.PCR],
      [CAP.HANDLES, HR.PERMANENT],
      [CAP.COMMANDS, 0],
      [CAP.PCRS, 0],
      [CAP.TPM_PROPERTIES, 0],
      [CAP.PCR_PROPERTIES, 0],
      [CAP.ECC_CURVES, 0],
    ];
    for (const [c, p] of requests) {
      const r = ok(tpm, getCapability(c, p, 0xffffffff));
      assert.ok(r.params.length - 1 <= 1024, `capability ${c}: ${r.params.length - 1} octets`);
    }
  });
});
