import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { Chip, NV_FILE_NAMES } from '../../src/hwtpm/chip.ts';
import { ChipNvError } from '../../src/hwtpm/nv-file.ts';
import { DISCRETE_TPM_LATENCY, delayFor } from '../../src/hwtpm/latency.ts';
import { Tpm2Client, Tpm2CommandError } from '../../src/hwtpm/tpm2-client.ts';
import { eccSigningTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { CAP, CC, PT, RH } from '../../src/tpm/tpm2/constants.ts';
import { RC } from '../../src/tpm/tpm2/rc.ts';
import { MemoryStateStore } from '../../src/tpm/tpm2/state/store.ts';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'vtpmd-chip-'));
  dirs.push(d);
  return d;
}

async function started(chip: Chip): Promise<Tpm2Client> {
  const tpm = new Tpm2Client((c) => chip.execute(c, 0));
  await tpm.startup();
  return tpm;
}

const rcOf = (e: unknown): number => (e instanceof Tpm2CommandError ? e.rc : -1);

describe('chip', () => {
  test('a chip has three transient object slots unless configured otherwise', async () => {
    for (const [slots, expected] of [[undefined, 3], [5, 5]] as const) {
      const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore(), ...(slots ? { objectSlots: slots } : {}) });
      const tpm = await started(chip);
      const cap = await tpm.getCapability(CAP.TPM_PROPERTIES, PT.HR_TRANSIENT_AVAIL, 1);
      assert.ok('properties' in cap.capabilityData);
      assert.equal(cap.capabilityData.properties[0]!.value, expected);
      for (let i = 0; i < expected; i++) await tpm.createPrimary(RH.OWNER, eccSigningTemplate(true));
      await assert.rejects(tpm.createPrimary(RH.OWNER, eccSigningTemplate(true)), (e) => rcOf(e) === RC.OBJECT_MEMORY);
    }
  });

  test('without power the chip answers nothing but failure; after power-on it needs Startup', async () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    const tpm = await started(chip);
    await chip.powerOff();
    assert.equal(chip.powered, false);
    await assert.rejects(tpm.pcrRead(0x000b, [0]), (e) => rcOf(e) === RC.FAILURE);
    await chip.powerOn();
    await assert.rejects(tpm.pcrRead(0x000b, [0]), (e) => rcOf(e) === RC.INITIALIZE);
    await tpm.startup();
    assert.equal((await tpm.pcrRead(0x000b, [0])).length, 1);
  });

  test('a granted locality holds the interface; a higher one seizes it; others are refused', async () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    await started(chip);
    const at = (l: number) => new Tpm2Client((c) => chip.execute(c, l));
    assert.equal(chip.requestLocality(2), true);
    assert.equal(chip.requestLocality(1), false, 'a lower locality waits');
    await assert.rejects(at(0).pcrRead(0x000b, [0]), (e) => rcOf(e) === RC.LOCALITY);
    assert.equal((await at(2).pcrRead(0x000b, [0])).length, 1);
    assert.equal(chip.requestLocality(4), true, 'a higher locality seizes');
    await assert.rejects(at(2).pcrRead(0x000b, [0]), (e) => rcOf(e) === RC.LOCALITY);
    chip.relinquishLocality(4);
    assert.equal(chip.locality, undefined);
    assert.equal((await at(0).pcrRead(0x000b, [0])).length, 1);
    assert.throws(() => chip.requestLocality(5), RangeError);
  });

  test('the physical-presence pin is reported as set', () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    assert.equal(chip.physicalPresence, false);
    chip.setPhysicalPresence(true);
    assert.equal(chip.physicalPresence, true);
  });

  test('the NV file keeps the chip across reopenings; the first open is the fresh one', async () => {
    const dir = tempDir();
    const chip = Chip.open({ personality: 'tpm2', stateDir: dir });
    assert.equal(chip.fresh, true);
    const tpm = await started(chip);
    const { handle } = await tpm.createPrimary(RH.OWNER, eccSigningTemplate(true));
    await tpm.evictControl(RH.OWNER, handle, 0x81000010);
    const { name } = await tpm.readPublic(0x81000010);
    await chip.flush();
    const again = Chip.open({ personality: 'tpm2', stateDir: dir });
    assert.equal(again.fresh, false);
    assert.deepEqual((await (await started(again)).readPublic(0x81000010)).name, name);
  });

  /** The chip's two NV files, the one holding its latest contents first. */
  function nvFiles(dir: string): [newest: string, other: string] {
    const a = join(dir, NV_FILE_NAMES.tpm2);
    const b = `${a}.alt`;
    return nvSeq(a) > nvSeq(b) ? [a, b] : [b, a];
  }

  /** An NV file's write sequence number (a format 1 file's is 0). */
  function nvSeq(path: string): number {
    const header = readFileSync(path, 'latin1').split('\n', 1)[0]!;
    return header.startsWith('vtpmd-chip-nv 1 ') ? 0 : Number(/ seq=(\d+) /.exec(header)![1]);
  }

  const damages = [
    ['torn (truncated)', (p: string) => truncateSync(p, Math.floor(readFileSync(p).length / 2))],
    ['altered (one byte flipped)', (p: string) => {
      const b = readFileSync(p);
      b[b.length - 10]! ^= 0x01;
      writeFileSync(p, b);
    }],
    ['not a chip NV file', (p: string) => writeFileSync(p, '{"format":"something else"}')],
  ] as const;

  for (const [what, damage] of damages) {
    test(`NV files that are both ${what} stop power-on with an error naming them`, async () => {
      const dir = tempDir();
      const chip = Chip.open({ personality: 'tpm2', stateDir: dir });
      await started(chip);
      await chip.flush();
      const files = nvFiles(dir);
      const before = files.map((f) => readFileSync(f));
      files.forEach((f) => damage(f));
      assert.throws(
        () => Chip.open({ personality: 'tpm2', stateDir: dir }),
        (e: unknown) => e instanceof ChipNvError && files.every((f) => e.message.includes(f)) && /both damaged/.test(e.message),
      );
      files.forEach((f, i) => assert.notDeepEqual(readFileSync(f), before[i], 'the damaged files are left for inspection, not replaced'));
    });
  }

  test('an NV file of a newer vtpmd stops power-on, even with the other file valid', async () => {
    const dir = tempDir();
    const chip = Chip.open({ personality: 'tpm2', stateDir: dir });
    await started(chip);
    await chip.flush();
    const [, other] = nvFiles(dir);
    writeFileSync(other, readFileSync(other, 'latin1').replace(/^vtpmd-chip-nv 2 /, 'vtpmd-chip-nv 3 '), 'latin1');
    assert.throws(
      () => Chip.open({ personality: 'tpm2', stateDir: dir }),
      (e: unknown) => e instanceof ChipNvError && e.message.includes(other) && /format version 3/.test(e.message),
    );
  });

  for (const [what, damage] of damages) {
    test(`a write cut short (the newer NV file ${what}) powers on with the contents before it`, async () => {
      const dir = tempDir();
      const chip = Chip.open({ personality: 'tpm2', stateDir: dir });
      const tpm = await started(chip);
      const { handle } = await tpm.createPrimary(RH.OWNER, eccSigningTemplate(true));
      await chip.flush();
      // Its response waits for its NV write, the last: the persistent object is in the newer file only.
      await tpm.evictControl(RH.OWNER, handle, 0x81000010);
      const [newest, other] = nvFiles(dir);
      damage(newest);
      const again = Chip.open({ personality: 'tpm2', stateDir: dir });
      assert.equal(again.fresh, false);
      const back = await started(again);
      await assert.rejects(back.readPublic(0x81000010), (e: unknown) => rcOf(e) !== -1, 'the object made by the cut write is not there');
      // The next write replaces the damaged file; both are valid again.
      const { handle: h2 } = await back.createPrimary(RH.OWNER, eccSigningTemplate(true));
      await back.evictControl(RH.OWNER, h2, 0x81000011);
      await again.flush();
      assert.equal(nvFiles(dir)[0], newest);
      const third = await started(Chip.open({ personality: 'tpm2', stateDir: dir }));
      assert.ok((await third.readPublic(0x81000011)).name.length > 0);
      assert.ok(readFileSync(other).length > 0);
    });
  }

  test('a chip NV file of format 1 (one file) powers on; later writes go to both files in turn', async () => {
    const dir = tempDir();
    const chip = Chip.open({ personality: 'tpm2', stateDir: dir });
    const tpm = await started(chip);
    const { handle } = await tpm.createPrimary(RH.OWNER, eccSigningTemplate(true));
    await tpm.evictControl(RH.OWNER, handle, 0x81000010);
    await chip.flush();
    // What vtpmd wrote before: one file, no sequence number.
    const [newest, other] = nvFiles(dir);
    const raw = readFileSync(newest);
    const eol = raw.indexOf(0x0a);
    const v1 = Buffer.concat([Buffer.from(raw.subarray(0, eol).toString('latin1').replace(/^vtpmd-chip-nv 2 seq=\d+ /, 'vtpmd-chip-nv 1 ')), raw.subarray(eol)]);
    const first = join(dir, NV_FILE_NAMES.tpm2);
    rmSync(other);
    if (newest !== first) rmSync(newest);
    writeFileSync(first, v1);
    const again = Chip.open({ personality: 'tpm2', stateDir: dir });
    assert.equal(again.fresh, false);
    const back = await started(again);
    assert.ok((await back.readPublic(0x81000010)).name.length > 0);
    // Writes since: sequence numbers 1, 2, … from the format 1 file's 0, alternating files.
    const [n1] = nvFiles(dir);
    const s1 = nvSeq(n1);
    assert.ok(s1 >= 1);
    assert.equal(n1, s1 % 2 === 1 ? `${first}.alt` : first);
    await back.evictControl(RH.OWNER, 0x81000010, 0x81000010);
    const [n2, o2] = nvFiles(dir);
    assert.equal(nvSeq(n2), s1 + 1);
    assert.equal(o2, n1);
    const third = await started(Chip.open({ personality: 'tpm2', stateDir: dir }));
    await assert.rejects(third.readPublic(0x81000010), (e: unknown) => rcOf(e) !== -1, 'the eviction was kept');
  });

  test('the latency model asks for the time a discrete chip takes per command', async () => {
    const waits: number[] = [];
    const chip = Chip.open({
      personality: 'tpm2',
      store: new MemoryStateStore(),
      latency: DISCRETE_TPM_LATENCY,
      sleep: async (ms) => {
        waits.push(ms);
      },
    });
    const tpm = await started(chip);
    await tpm.pcrRead(0x000b, [0]);
    assert.equal(waits.length, 2, 'Startup and PCR_Read each waited');
    assert.ok(waits.every((w) => w > 0 && w <= DISCRETE_TPM_LATENCY.baseMs + 3));
    const quote = Buffer.alloc(10);
    quote.writeUInt32BE(CC.Quote, 6);
    assert.equal(delayFor(DISCRETE_TPM_LATENCY, 'tpm2', quote), 60);
    assert.equal(delayFor(DISCRETE_TPM_LATENCY, 'tpm2', Buffer.alloc(3)), DISCRETE_TPM_LATENCY.baseMs);
  });

  test('without a latency model the chip never waits', async () => {
    let waited = false;
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore(), sleep: async () => void (waited = true) });
    await (await started(chip)).pcrRead(0x000b, [0]);
    assert.equal(waited, false);
  });
});
