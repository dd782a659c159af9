/**
 * The crypto-agile TCG event log: encoding, strict decoding, replay, and agreement with
 * tpm2-tools' tpm2_eventlog on both the format and the replayed PCR values.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import fc from 'fast-check';
import { ALG } from '../../src/tpm/tpm2/constants.ts';
import {
  EventLogBuilder,
  EventLogError,
  decodeEventLog,
  encodeEventLog,
  replay,
  startupLocalityEvent,
  type EventLog,
} from '../../src/hwtpm/event-log.ts';
import { EV, eventTypeName } from '../../src/hwtpm/event-types.ts';
import { hasCommand, skipUnlessRequired } from '../interop/harness.ts';

const run = promisify(execFile);
const ALL_BANKS: number[] = [ALG.SHA1, ALG.SHA256, ALG.SHA384, ALG.SHA512];
const NODE_NAME: Record<number, string> = { [ALG.SHA1]: 'sha1', [ALG.SHA256]: 'sha256', [ALG.SHA384]: 'sha384', [ALG.SHA512]: 'sha512' };

function sampleLog(banks: number[] = [ALG.SHA1, ALG.SHA256], locality?: number): EventLogBuilder {
  const b = new EventLogBuilder(banks);
  if (locality !== undefined) b.noAction(startupLocalityEvent(locality));
  b.measure(0, EV.S_CRTM_VERSION, Buffer.from('1.0\0', 'utf16le'));
  b.measure(0, EV.POST_CODE, Buffer.from('POST CODE'), Buffer.from('firmware image'));
  b.measure(1, EV.PLATFORM_CONFIG_FLAGS, Buffer.from('config'));
  for (let pcr = 0; pcr < 8; pcr++) b.measure(pcr, EV.SEPARATOR, Buffer.alloc(4));
  b.measure(9, EV.IPL, Buffer.from('/boot/vmlinuz\0'), Buffer.from('kernel image'));
  b.measure(8, EV.IPL, Buffer.from('kernel_cmdline: quiet\0'), Buffer.from('quiet'));
  b.measure(14, EV.EVENT_TAG, Buffer.from('tagged'));
  return b;
}

/** PCR values computed with node:crypto alone, from the events as the builder was told them. */
function independentReplay(log: EventLog, locality = 0): Map<number, Map<number, string>> {
  const out = new Map<number, Map<number, string>>();
  for (const { alg, digestSize } of log.specId.algorithms) {
    const pcrs = new Map<number, Buffer>();
    for (const e of log.events) {
      if (e.eventType === EV.NO_ACTION) continue;
      let current = pcrs.get(e.pcrIndex);
      if (!current) {
        current = Buffer.alloc(digestSize);
        if (e.pcrIndex === 0) current[digestSize - 1] = locality;
      }
      const d = e.digests.find((x) => x.alg === alg)!.digest;
      pcrs.set(e.pcrIndex, createHash(NODE_NAME[alg]!).update(current).update(d).digest());
    }
    out.set(alg, new Map([...pcrs].map(([i, v]) => [i, v.toString('hex')])));
  }
  return out;
}

/** The "pcrs:" section of tpm2_eventlog's output: bank name → PCR → lower-case hex. */
function parseEventlogPcrs(out: string): Map<string, Map<number, string>> {
  const lines = out.split('\n');
  const start = lines.findIndex((l) => /^pcrs:\s*$/.test(l));
  assert.ok(start >= 0, 'tpm2_eventlog printed no pcrs: section');
  const banks = new Map<string, Map<number, string>>();
  let bank: Map<number, string> | undefined;
  for (const line of lines.slice(start + 1)) {
    const b = /^ {2}(\w+):\s*$/.exec(line);
    if (b) {
      bank = new Map();
      banks.set(b[1]!, bank);
      continue;
    }
    const v = /^ {4}(\d+)\s*:\s*0x([0-9a-fA-F]+)\s*$/.exec(line);
    if (v && bank) bank.set(Number(v[1]), v[2]!.toLowerCase());
    else if (line.trim() !== '' && !/^\s/.test(line)) break;
  }
  return banks;
}

function expectEventLogError(bytes: Uint8Array, offset: number, problem: RegExp): void {
  assert.throws(
    () => decodeEventLog(bytes),
    (e: unknown) => e instanceof EventLogError && e.offset === offset && problem.test(e.problem) && e.message.includes(`byte ${offset}`),
  );
}

describe('TCG crypto-agile event log', () => {
  test('a built log decodes to the same events and re-encodes to the same bytes', () => {
    const b = sampleLog(ALL_BANKS, 3);
    const bytes = b.encode();
    const decoded = decodeEventLog(bytes);
    assert.deepEqual(decoded, b.log);
    assert.ok(encodeEventLog(decoded).equals(bytes));
  });

  test('the first event is a SHA-1-format EV_NO_ACTION Spec ID event listing each bank and its digest size', () => {
    const bytes = new EventLogBuilder([ALG.SHA256, ALG.SHA384]).encode();
    assert.equal(bytes.readUInt32LE(0), 0);
    assert.equal(bytes.readUInt32LE(4), EV.NO_ACTION);
    assert.ok(bytes.subarray(8, 28).equals(Buffer.alloc(20)));
    const data = bytes.subarray(32, 32 + bytes.readUInt32LE(28));
    assert.equal(data.subarray(0, 16).toString('latin1'), 'Spec ID Event03\0');
    assert.equal(data[21], 2, 'specVersionMajor');
    assert.equal(data.readUInt32LE(24), 2, 'numberOfAlgorithms');
    assert.deepEqual([data.readUInt16LE(28), data.readUInt16LE(30), data.readUInt16LE(32), data.readUInt16LE(34)], [ALG.SHA256, 32, ALG.SHA384, 48]);
    assert.equal(data.length, 37, 'no vendor info follows the algorithms');
  });

  test('replay equals PCR values computed independently with node:crypto, for every bank', () => {
    const b = sampleLog(ALL_BANKS);
    const ours = replay(decodeEventLog(b.encode()));
    const theirs = independentReplay(b.log);
    for (const alg of ALL_BANKS) {
      for (let pcr = 0; pcr < 24; pcr++) {
        const expected = theirs.get(alg)!.get(pcr) ?? '00'.repeat(ours.get(alg)![pcr]!.length);
        assert.equal(ours.get(alg)![pcr]!.toString('hex'), expected, `${NODE_NAME[alg]} PCR ${pcr}`);
      }
    }
  });

  test('a StartupLocality event makes PCR 0 start from the locality instead of zero', () => {
    const b = sampleLog([ALG.SHA256], 3);
    const ours = replay(b.log).get(ALG.SHA256)!;
    assert.equal(ours[0]!.toString('hex'), independentReplay(b.log, 3).get(ALG.SHA256)!.get(0));
    assert.notEqual(ours[0]!.toString('hex'), independentReplay(b.log, 0).get(ALG.SHA256)!.get(0));
  });

  test('the builder rejects digests that do not cover exactly the log banks', () => {
    const b = new EventLogBuilder([ALG.SHA1, ALG.SHA256]);
    assert.throws(() => b.record(0, EV.ACTION, Buffer.from('x'), [{ alg: ALG.SHA1, digest: Buffer.alloc(20) }]), RangeError);
    assert.throws(
      () => b.record(0, EV.ACTION, Buffer.from('x'), [{ alg: ALG.SHA1, digest: Buffer.alloc(20) }, { alg: ALG.SHA256, digest: Buffer.alloc(20) }]),
      RangeError,
    );
    assert.throws(() => b.measure(24, EV.ACTION, Buffer.from('x')), RangeError);
  });

  test('event type constants carry the PC Client profile values', () => {
    assert.deepEqual(
      [EV.POST_CODE, EV.NO_ACTION, EV.SEPARATOR, EV.ACTION, EV.EVENT_TAG, EV.S_CRTM_CONTENTS, EV.S_CRTM_VERSION, EV.IPL],
      [1, 3, 4, 5, 6, 7, 8, 0xd],
    );
    assert.deepEqual([EV.EFI_BOOT_SERVICES_APPLICATION, EV.EFI_ACTION, EV.EFI_HCRTM_EVENT], [0x80000003, 0x80000007, 0x80000010]);
    assert.equal(eventTypeName(EV.EFI_ACTION), 'EV_EFI_ACTION');
  });
});

describe('the event log decoder rejects malformed logs with the offset of the problem', () => {
  const valid = sampleLog([ALG.SHA1, ALG.SHA256]).encode();
  const specEnd = 32 + valid.readUInt32LE(28);

  test('an empty or truncated header', () => {
    expectEventLogError(Buffer.alloc(0), 0, /needs 4 bytes/);
    expectEventLogError(valid.subarray(0, 20), 8, /first event digest/);
  });

  test('a first event that is not EV_NO_ACTION in PCR 0 with a zero digest', () => {
    const wrongType = Buffer.from(valid);
    wrongType.writeUInt32LE(EV.ACTION, 4);
    expectEventLogError(wrongType, 4, /EV_NO_ACTION/);
    const wrongPcr = Buffer.from(valid);
    wrongPcr.writeUInt32LE(1, 0);
    expectEventLogError(wrongPcr, 0, /PCR 0/);
    const digest = Buffer.from(valid);
    digest[10] = 1;
    expectEventLogError(digest, 8, /all zeros/);
  });

  test('a Spec ID event with a wrong signature, no algorithms or a wrong digest size', () => {
    const sig = Buffer.from(valid);
    sig[32] = 0x73;
    expectEventLogError(sig, 32, /Spec ID Event03/);
    const none = Buffer.from(valid);
    none.writeUInt32LE(0, 32 + 24);
    expectEventLogError(none, 56, /numberOfAlgorithms is 0/);
    const size = Buffer.from(valid);
    size.writeUInt16LE(32, 32 + 30);
    expectEventLogError(size, 60, /digestSize 32, not 20/);
  });

  test('an event whose digest count or algorithm does not match the banks', () => {
    const count = Buffer.from(valid);
    count.writeUInt32LE(3, specEnd + 8);
    expectEventLogError(count, specEnd + 8, /3 digests/);
    const alg = Buffer.from(valid);
    alg.writeUInt16LE(ALG.SHA512, specEnd + 12);
    expectEventLogError(alg, specEnd + 12, /not a bank/);
  });

  test('a PCR index beyond 23, or an event size running past the end', () => {
    const pcr = Buffer.from(valid);
    pcr.writeUInt32LE(24, specEnd);
    expectEventLogError(pcr, specEnd, /pcrIndex 24/);
    const sizeAt = specEnd + 12 + 2 + 20 + 2 + 32;
    const size = Buffer.from(valid);
    size.writeUInt32LE(0xffffffff, sizeAt);
    expectEventLogError(size, sizeAt, /exceeds/);
  });

  test('trailing bytes that do not form a whole event', () => {
    expectEventLogError(Buffer.concat([valid, Buffer.from([1, 2])]), valid.length, /needs 4 bytes but only 2 remain/);
  });

  test('an EV_NO_ACTION event with a non-zero digest', () => {
    const b = new EventLogBuilder([ALG.SHA256]);
    b.record(0, EV.NO_ACTION, Buffer.from('x'), [{ alg: ALG.SHA256, digest: Buffer.alloc(32, 1) }]);
    expectEventLogError(b.encode(), 32 + b.encode().readUInt32LE(28), /all-zero digests/);
  });

  const onlyResultOrTypedError = (bytes: Uint8Array): void => {
    let decoded: EventLog;
    try {
      decoded = decodeEventLog(bytes);
    } catch (e) {
      assert.ok(e instanceof EventLogError, `threw ${String(e)}`);
      assert.ok(e.offset >= 0 && e.offset <= bytes.length);
      return;
    }
    // What the strict decoder accepts is canonical: it re-encodes byte for byte.
    assert.ok(encodeEventLog(decoded).equals(Buffer.from(bytes)));
  };

  test('random bytes yield a log or an EventLogError, nothing else', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), onlyResultOrTypedError), { numRuns: 2000 });
  });

  test('mutated, truncated and extended valid logs yield a log or an EventLogError, nothing else', () => {
    const mutation = fc.record({
      flips: fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }),
      cut: fc.nat(valid.length),
      tail: fc.uint8Array({ maxLength: 64 }),
    });
    fc.assert(
      fc.property(mutation, ({ flips, cut, tail }) => {
        const b = Buffer.from(valid);
        for (const [at, v] of flips) b[at] = v;
        onlyResultOrTypedError(b);
        onlyResultOrTypedError(b.subarray(0, cut));
        onlyResultOrTypedError(Buffer.concat([b, tail]));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('tpm2_eventlog agrees with the log', () => {
  const skip = hasCommand('tpm2_eventlog') ? false : skipUnlessRequired('tpm2_eventlog is missing (apt-get install tpm2-tools)');

  test('tpm2_eventlog parses the log without error or warning and prints the PCR values replay computes', { skip }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vtpmd-eventlog-'));
    try {
      // No EV_NO_ACTION event after the Spec ID event: tpm2-tools 5.4 wrongly extends those
      // (tpm2-software/tpm2-tools#3224, fixed after 5.5), so its replay would differ from a TPM's.
      const b = sampleLog(ALL_BANKS);
      const file = join(dir, 'log.bin');
      writeFileSync(file, b.encode());
      const { stdout, stderr } = await run('tpm2_eventlog', [file], { encoding: 'utf8' });
      assert.equal(stderr.trim(), '');
      const printed = parseEventlogPcrs(stdout);
      const ours = replay(b.log);
      assert.deepEqual([...printed.keys()], ALL_BANKS.map((a) => NODE_NAME[a]));
      for (const alg of ALL_BANKS) {
        const bank = printed.get(NODE_NAME[alg]!)!;
        const extended = new Set(b.log.events.map((e) => e.pcrIndex));
        assert.deepEqual([...bank.keys()].sort((x, y) => x - y), [...extended].sort((x, y) => x - y));
        for (const [pcr, hex] of bank) assert.equal(hex, ours.get(alg)![pcr]!.toString('hex'), `${NODE_NAME[alg]} PCR ${pcr}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
