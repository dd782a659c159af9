/**
 * PSS throughput: N vTPMs, each in a loop of PCR_Extend on its own engine followed by a durable
 * save of the engine's running state, the way a vTPM releases a state-changing command's
 * response only after its NVM is in the PSS. Reports completed extend+save pairs per second, and
 * how many saves each commit (one synced level batch + one chip counter increment) carried.
 *
 *   node --import tsx bench/pss.ts [--seconds 3] [--vms 1,16,64,256] [--memory-chip | --swtpm-chip]
 *                                  [--nvm engine|<bytes>]
 *
 * `--nvm engine` (default) hands the PSS each engine's running state as a device model does
 * (Tpm2Engine.handOver: what the extend changed, once the PSS holds the whole image); `--nvm
 * 2048` skips the engine and saves a fixed-size NVM, to see the PSS alone.
 *
 * The chip is file-backed unless --memory-chip: its NV file is rewritten (fsync + rename) on
 * every counter increment, as the real part's NV write is part of each commit's cost. With
 * --swtpm-chip the host TPM is a swtpm (libtpms) the bench starts for each row, attached as
 * `vtpmd serve --host-tpm` attaches one: every commit's counter increment is libtpms's NV write.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { AttachedTpm } from '../src/hwtpm/attached-tpm.ts';
import { Chip } from '../src/hwtpm/chip.ts';
import type { HostTpm } from '../src/hwtpm/host-tpm.ts';
import { openChipClient } from '../src/hwtpm/open-chip-client.ts';
import { ProtectedStorage } from '../src/pss/protected-storage.ts';
import { MemoryStateStore } from '../src/tpm/tpm2/state/store.ts';
import { StateHandOver } from '../src/vtpm/persisted-model.ts';
import { pcrExtendSha256 } from './lib/scenarios.ts';
import { startedEngine } from './lib/in-process.ts';
import { installCleanupHooks } from './lib/cleanup.ts';
import { findOnPath, startSwtpm, type Peer } from './lib/peers.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    vms: { type: 'string', default: '1,16,64,256' },
    'memory-chip': { type: 'boolean', default: false },
    'swtpm-chip': { type: 'boolean', default: false },
    nvm: { type: 'string', default: 'engine' },
    'max-batch': { type: 'string' },
  },
});
const seconds = Number(values.seconds);
// A started swtpm is stopped however the bench ends.
installCleanupHooks();
const vmCounts = values.vms!.split(',').map(Number);
const MODEL = Buffer.alloc(32, 0x5a);
const extend = pcrExtendSha256().sampleCommand;
const useEngine = values.nvm === 'engine';
const fixedNvm = useEngine ? undefined : Buffer.alloc(Number(values.nvm), 0xa5);

interface Row {
  vms: number;
  durable: boolean;
  opsPerSec: number;
  commits: number;
  savesPerCommit: number;
  nvmBytes: number;
}

async function measure(vms: number, durable: boolean): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'vtpmd-bench-pss-'));
  try {
    let swtpm: Peer | undefined;
    let chip: HostTpm;
    if (values['swtpm-chip']) {
      swtpm = await startSwtpm(findOnPath('swtpm') ?? 'swtpm', dir);
      chip = await AttachedTpm.open({ host: swtpm.host, port: swtpm.dataPort });
    } else {
      chip = values['memory-chip'] ? Chip.open({ personality: 'tpm2', store: new MemoryStateStore() }) : Chip.open({ personality: 'tpm2', stateDir: join(dir, 'chip') });
    }
    const client = await openChipClient(chip);
    await client.takeOwnership();
    const pss = await ProtectedStorage.open({ dir: join(dir, 'pss'), chip: client, ...(values['max-batch'] ? { maxCommitBatch: Number(values['max-batch']) } : {}) });
    const engines = Array.from({ length: useEngine ? vms : 0 }, () => startedEngine());
    // As a device model hands its state over: what changed, once the PSS holds the whole image.
    const handOvers = engines.map((e) => new StateHandOver(e));
    const nvmBytes = fixedNvm?.length ?? engines[0]!.snapshot().length;
    let ops = 0;
    let running = true;
    const commitsBefore = pss.status().commits;
    const run = async (i: number): Promise<void> => {
      const engine = engines[i];
      const vmId = `vm-${i}`;
      while (running) {
        engine?.execute(extend, 0);
        await pss.save(vmId, MODEL, handOvers[i]?.next() ?? fixedNvm!, { durable });
        ops++;
        // A non-durable save returns at once; a guest's next command arrives through I/O.
        if (!durable) await new Promise((ok) => setImmediate(ok));
      }
    };
    const started = performance.now();
    const loops = Array.from({ length: vms }, (_, i) => run(i));
    await new Promise((ok) => setTimeout(ok, seconds * 1000));
    running = false;
    const elapsed = (performance.now() - started) / 1000;
    const done = ops;
    await Promise.all(loops);
    const commits = pss.status().commits - commitsBefore;
    await pss.close();
    if (chip instanceof AttachedTpm) await chip.close();
    await swtpm?.stop();
    return { vms, durable, opsPerSec: done / elapsed, commits, savesPerCommit: ops / Math.max(1, commits), nvmBytes };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const rows: Row[] = [];
for (const n of vmCounts) {
  process.stderr.write(`measuring ${n} VM(s)…\n`);
  rows.push(await measure(n, true));
}
process.stderr.write(`measuring ${vmCounts.at(-1)} VM(s), non-durable…\n`);
rows.push(await measure(vmCounts.at(-1)!, false));

console.log(`PSS: ${useEngine ? 'PCR_Extend + save of the engine state (its changes handed over)' : `save of a ${fixedNvm!.length}-byte NVM`}, ${seconds} s per row, ${values['swtpm-chip'] ? 'swtpm as the host TPM' : values['memory-chip'] ? 'in-memory chip' : 'file-backed chip'}, ${cpus().length}× ${cpus()[0]?.model ?? 'unknown CPU'}`);
console.log('| VMs | save | ops/s | commits | saves/commit | NVM bytes |');
console.log('|---:|---|---:|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.vms} | ${r.durable ? 'durable' : 'durable: false'} | ${Math.round(r.opsPerSec).toLocaleString('en')} | ${r.commits} | ${r.savesPerCommit.toFixed(1)} | ${r.nvmBytes} |`);
}
