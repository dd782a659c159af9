/**
 * The host's measured boot: the events it extends replay to the PCR values a TPM would hold, each
 * component of the chain moves only its own PCR, and tpm2_eventlog accepts the log.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ALG } from '../../src/tpm/tpm2/constants.ts';
import { decodeEventLog, encodeEventLog, replay, type EventLog } from '../../src/hwtpm/event-log.ts';
import { EV } from '../../src/hwtpm/event-types.ts';
import {
  GVTPM_COMPONENTS,
  GVTPM_PCR,
  gvtpmPcrs,
  hostProfile,
  hostTcbPcrs,
  measureHostBoot,
  type HostProfile,
} from '../../src/hwtpm/host-boot.ts';
import { hasCommand, skipUnlessRequired } from '../interop/harness.ts';

const run = promisify(execFile);
const BANKS = [ALG.SHA1, ALG.SHA256, ALG.SHA384];
const NODE_NAME: Record<number, string> = { [ALG.SHA1]: 'sha1', [ALG.SHA256]: 'sha256', [ALG.SHA384]: 'sha384' };
const SIZE: Record<number, number> = { [ALG.SHA1]: 20, [ALG.SHA256]: 32, [ALG.SHA384]: 48 };

/** A PCR bank as a TPM keeps it, fed only through the extend callback. */
class SimulatedPcrs {
  readonly banks = new Map<number, Buffer[]>(BANKS.map((alg) => [alg, Array.from({ length: 24 }, () => Buffer.alloc(SIZE[alg]!))]));
  extends = 0;

  extend = (pcr: number, digests: { alg: number; digest: Buffer }[]): void => {
    this.extends++;
    for (const { alg, digest } of digests) {
      const bank = this.banks.get(alg)!;
      bank[pcr] = createHash(NODE_NAME[alg]!).update(bank[pcr]!).update(digest).digest();
    }
  };
}

function tempRoot(files: Record<string, string>): { path: string; write(rel: string, content: string): void; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), 'vtpmd-hostboot-'));
  const write = (rel: string, content: string) => {
    mkdirSync(join(path, rel, '..'), { recursive: true });
    writeFileSync(join(path, rel), content);
  };
  for (const [rel, content] of Object.entries(files)) write(rel, content);
  return { path, write, remove: () => rmSync(path, { recursive: true, force: true }) };
}

async function boot(profile: HostProfile, rootDir: string): Promise<{ pcrs: SimulatedPcrs; log: EventLog }> {
  const pcrs = new SimulatedPcrs();
  const log = await measureHostBoot(pcrs.extend, BANKS, profile, { rootDir });
  return { pcrs, log };
}

/** The PCR indexes whose value differs in any bank. */
function changedPcrs(a: SimulatedPcrs, b: SimulatedPcrs): number[] {
  const out: number[] = [];
  for (let pcr = 0; pcr < 24; pcr++) if (BANKS.some((alg) => !a.banks.get(alg)![pcr]!.equals(b.banks.get(alg)![pcr]!))) out.push(pcr);
  return out;
}

describe('host measured boot', () => {
  const code = { 'src/vtpm/manager.ts': 'export const manager = 1;\n', 'src/pss/store.ts': 'export const store = 1;\n' };

  test('the logged events replay to exactly the values the extends left in the PCR banks', async () => {
    const root = tempRoot(code);
    try {
      const { pcrs, log } = await boot(hostProfile('lab-host-1'), root.path);
      assert.equal(pcrs.extends, log.events.length);
      const replayed = replay(decodeEventLog(encodeEventLog(log)));
      for (const alg of BANKS) assert.deepEqual(replayed.get(alg), pcrs.banks.get(alg), NODE_NAME[alg]);
    } finally {
      root.remove();
    }
  });

  test('firmware, boot loader, hypervisor and each GVTPM component extend the PCRs the profile assigns', async () => {
    const root = tempRoot(code);
    try {
      const { log } = await boot(hostProfile('lab-host-1'), root.path);
      const pcrsOf = (type: number) => [...new Set(log.events.filter((e) => e.eventType === type).map((e) => e.pcrIndex))].sort((a, b) => a - b);
      assert.deepEqual(pcrsOf(EV.S_CRTM_VERSION), [0]);
      assert.deepEqual(pcrsOf(EV.S_CRTM_CONTENTS), [0]);
      assert.deepEqual(pcrsOf(EV.POST_CODE), [0]);
      assert.deepEqual(pcrsOf(EV.SEPARATOR), [0, 1, 2, 3, 4, 5, 6, 7]);
      assert.deepEqual(pcrsOf(EV.EFI_BOOT_SERVICES_APPLICATION), [4]);
      assert.deepEqual(pcrsOf(EV.IPL), [8, 9]);
      assert.deepEqual(pcrsOf(EV.EVENT_TAG), [GVTPM_PCR.MANAGER, GVTPM_PCR.PSS, GVTPM_PCR.VMA]);
      const lastSeparator = log.events.map((e) => e.eventType).lastIndexOf(EV.SEPARATOR);
      const loader = log.events.findIndex((e) => e.eventType === EV.EFI_BOOT_SERVICES_APPLICATION);
      assert.ok(lastSeparator < loader, 'firmware separates PCRs 0–7 before handing over to the boot loader');
    } finally {
      root.remove();
    }
  });

  test('the same host boots to the same PCRs, and a different host to different ones', async () => {
    const root = tempRoot(code);
    try {
      const a1 = await boot(hostProfile('lab-host-1'), root.path);
      const a2 = await boot(hostProfile('lab-host-1'), root.path);
      const b = await boot(hostProfile('lab-host-2'), root.path);
      assert.ok(encodeEventLog(a1.log).equals(encodeEventLog(a2.log)));
      assert.deepEqual(changedPcrs(a1.pcrs, a2.pcrs), []);
      const differing = changedPcrs(a1.pcrs, b.pcrs);
      assert.ok(differing.includes(1), 'the platform configuration (serial number) differs');
      assert.ok(differing.every((pcr) => hostTcbPcrs().includes(pcr)), 'GVTPM PCRs depend on the code, not on the host');
    } finally {
      root.remove();
    }
  });

  test("changing one component's code changes exactly that component's PCR", async () => {
    const root = tempRoot(code);
    try {
      const before = await boot(hostProfile('lab-host-1'), root.path);
      root.write('src/pss/store.ts', 'export const store = 2;\n');
      const pssEdited = await boot(hostProfile('lab-host-1'), root.path);
      assert.deepEqual(changedPcrs(before.pcrs, pssEdited.pcrs), [GVTPM_PCR.PSS]);
      root.write('src/vma/authority.ts', 'export const vma = 1;\n');
      const vmaAdded = await boot(hostProfile('lab-host-1'), root.path);
      assert.deepEqual(changedPcrs(pssEdited.pcrs, vmaAdded.pcrs), [GVTPM_PCR.VMA]);
      root.write('src/vtpm/sub/dir/file.ts', '\n');
      const managerGrew = await boot(hostProfile('lab-host-1'), root.path);
      assert.deepEqual(changedPcrs(vmaAdded.pcrs, managerGrew.pcrs), [GVTPM_PCR.MANAGER]);
    } finally {
      root.remove();
    }
  });

  test('components whose folders do not exist still measure to distinct values, told apart by name', async () => {
    const root = tempRoot({});
    try {
      const { pcrs, log } = await boot(hostProfile('lab-host-1'), root.path);
      const values = gvtpmPcrs().map((pcr) => pcrs.banks.get(ALG.SHA256)![pcr]!.toString('hex'));
      assert.equal(new Set(values).size, 3);
      assert.ok(values.every((v) => v !== '00'.repeat(32)));
      const tags = log.events.filter((e) => e.eventType === EV.EVENT_TAG).map((e) => e.event.subarray(8).toString('utf8'));
      assert.ok(tags.every((t) => / files=0 /.test(t)), tags.join('; '));
    } finally {
      root.remove();
    }
  });

  test('changing the hypervisor, boot loader or firmware version changes exactly its own PCR', async () => {
    const root = tempRoot(code);
    try {
      const p = hostProfile('lab-host-1');
      const base = await boot(p, root.path);
      const hv = await boot({ ...p, hypervisor: { ...p.hypervisor, version: `${p.hypervisor.version}.1` } }, root.path);
      assert.deepEqual(changedPcrs(base.pcrs, hv.pcrs), [9]);
      const cmdline = await boot({ ...p, hypervisor: { ...p.hypervisor, commandLine: `${p.hypervisor.commandLine} debug` } }, root.path);
      assert.deepEqual(changedPcrs(base.pcrs, cmdline.pcrs), [8]);
      const loader = await boot({ ...p, bootLoader: { ...p.bootLoader, version: '2.99' } }, root.path);
      assert.deepEqual(changedPcrs(base.pcrs, loader.pcrs), [4]);
      const fw = await boot({ ...p, firmware: { ...p.firmware, version: '9.9.9' } }, root.path);
      assert.deepEqual(changedPcrs(base.pcrs, fw.pcrs), [0]);
      const rom = await boot({ ...p, optionRoms: [{ name: 'lab-nic-pxe', version: '9.9' }] }, root.path);
      assert.deepEqual(changedPcrs(base.pcrs, rom.pcrs), [2]);
    } finally {
      root.remove();
    }
  });

  test('host TCB and GVTPM PCRs are disjoint and none of them is resettable without a reboot', () => {
    const tcb = hostTcbPcrs();
    const gvtpm = gvtpmPcrs();
    assert.deepEqual(gvtpm, GVTPM_COMPONENTS.map((c) => c.pcr));
    assert.ok(gvtpm.every((pcr) => !tcb.includes(pcr)));
    assert.ok([...tcb, ...gvtpm].every((pcr) => pcr < 16), 'PCRs 16–23 can be reset by software or a dynamic launch');
  });

  test('a component placed in a host TCB PCR, a resettable PCR or a shared PCR is refused', async () => {
    const pcrs = new SimulatedPcrs();
    const p = hostProfile('lab-host-1');
    const comp = (pcr: number, name = 'x') => ({ name, folder: 'src/x', pcr, tag: 9 });
    await assert.rejects(measureHostBoot(pcrs.extend, BANKS, p, { components: [comp(4)] }), RangeError);
    await assert.rejects(measureHostBoot(pcrs.extend, BANKS, p, { components: [comp(16)] }), RangeError);
    await assert.rejects(measureHostBoot(pcrs.extend, BANKS, p, { components: [comp(11, 'a'), comp(11, 'b')] }), RangeError);
    assert.equal(pcrs.extends, 0, 'nothing is extended before the layout is checked');
  });

  test('an asynchronous extend is awaited before the next event is produced', async () => {
    const root = tempRoot(code);
    try {
      let inFlight = 0;
      let maxInFlight = 0;
      await measureHostBoot(
        async () => {
          inFlight++;
          maxInFlight = Math.max(maxInFlight, inFlight);
          await new Promise((r) => setImmediate(r));
          inFlight--;
        },
        BANKS,
        hostProfile('lab-host-1'),
        { rootDir: root.path },
      );
      assert.equal(maxInFlight, 1);
    } finally {
      root.remove();
    }
  });
});

describe('tpm2_eventlog accepts the host boot log', () => {
  const skip = hasCommand('tpm2_eventlog') ? false : skipUnlessRequired('tpm2_eventlog is missing (apt-get install tpm2-tools)');

  test('tpm2_eventlog parses it without error or warning and prints the PCR values the extends produced', { skip }, async () => {
    const root = tempRoot(code());
    try {
      const { pcrs, log } = await boot(hostProfile('lab-host-7'), root.path);
      const file = join(root.path, 'binary_bios_measurements');
      writeFileSync(file, encodeEventLog(log));
      const { stdout, stderr } = await run('tpm2_eventlog', [file], { encoding: 'utf8' });
      assert.equal(stderr.trim(), '', 'tpm2_eventlog verifies the digests of separators, S-CRTM versions and PCR 8 command lines');
      const printed = parsePcrsSection(stdout);
      assert.deepEqual([...printed.keys()], BANKS.map((a) => NODE_NAME[a]));
      for (const alg of BANKS) {
        const bank = printed.get(NODE_NAME[alg]!)!;
        assert.deepEqual([...bank.keys()], [...hostTcbPcrs(), ...gvtpmPcrs()]);
        for (const [pcr, hex] of bank) assert.equal(hex, pcrs.banks.get(alg)![pcr]!.toString('hex'), `${NODE_NAME[alg]} PCR ${pcr}`);
      }
    } finally {
      root.remove();
    }
  });

  function code(): Record<string, string> {
    return { 'src/vma/vma.ts': 'export {};\n' };
  }
});

/** The "pcrs:" section of tpm2_eventlog's YAML: bank → PCR → lower-case hex. */
function parsePcrsSection(out: string): Map<string, Map<number, string>> {
  const lines = out.split('\n');
  const start = lines.findIndex((l) => /^pcrs:\s*$/.test(l));
  assert.ok(start >= 0, 'tpm2_eventlog printed no pcrs: section');
  const banks = new Map<string, Map<number, string>>();
  let bank: Map<number, string> | undefined;
  for (const line of lines.slice(start + 1)) {
    const b = /^ {2}(\w+):\s*$/.exec(line);
    const v = /^ {4}(\d+)\s*:\s*0x([0-9a-fA-F]+)\s*$/.exec(line);
    if (b) banks.set(b[1]!, (bank = new Map()));
    else if (v && bank) bank.set(Number(v[1]), v[2]!.toLowerCase());
    else if (line.trim() !== '') break;
  }
  return banks;
}
