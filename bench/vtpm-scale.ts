/**
 * vTPM scale on one lab host (chip, PSS and GVTPM manager as `vtpmd serve` runs them):
 *
 *   create     N software vTPMs through the manager (each manufactured, measured and persisted)
 *   memory     heap per idle loaded vTPM (started, one PCR extended), and after unloading them
 *              (counting what the host keeps of every VM from its start: the PSS index)
 *   disk       PSS and registry bytes per vTPM
 *   reload     first-command latency of an unloaded vTPM (PSS load, checks, restore)
 *   extend     PCR_Extend with its durable PSS save, C vTPMs extending concurrently; then the same
 *              with C more vTPMs created with `durability: 'batched'` (saves sealed per commit
 *              window, not waited for). Each rate is measured in R rounds of S seconds, the
 *              concurrencies taking turns, and reported as the median and the range: a shared
 *              machine's speed drifts over minutes, and one run per row would put that drift
 *              between the rows.
 *
 *   node --expose-gc --import tsx bench/vtpm-scale.ts [--vms 1000] [--concurrency 1,64,256] [--seconds 3] [--rounds 3] [--json]
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Host } from '../src/daemon/host.ts';
import { Tpm2Client } from '../src/hwtpm/tpm2-client.ts';
import { ALG } from '../src/tpm/tpm2/constants.ts';
import { asBuffer } from '../src/tpm/wire/buffer.ts';
import { describeMachine } from './lib/machine.ts';
import { percentile } from './lib/stats.ts';
import { pcrExtendSha256 } from './lib/scenarios.ts';

const { values } = parseArgs({
  options: {
    vms: { type: 'string', default: '1000' },
    concurrency: { type: 'string', default: '1,64,256' },
    seconds: { type: 'string', default: '3' },
    rounds: { type: 'string', default: '3' },
    json: { type: 'boolean', default: false },
  },
});
const N = Number(values.vms);
const concurrencies = values.concurrency!.split(',').map(Number);
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
if (!(seconds > 0) || !Number.isInteger(rounds) || rounds < 1) throw new RangeError('--seconds must be positive and --rounds a positive integer');
const log = (m: string) => process.stderr.write(`${m}\n`);
const gc = (globalThis as { gc?: () => void }).gc;
const heap = () => {
  gc?.();
  gc?.();
  return process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers;
};

/** Rates per second over several rounds. */
interface Rate {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly runs: readonly number[];
}

function summarize(runs: number[]): Rate {
  const sorted = [...runs].sort((a, b) => a - b);
  return { median: sorted[(sorted.length - 1) >> 1]!, min: sorted[0]!, max: sorted[sorted.length - 1]!, runs };
}

const showRate = (r: Rate) => `${String(r.median).padStart(6)} /s (${r.min}–${r.max})`;

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? dirBytes(join(dir, e.name)) : statSync(join(dir, e.name)).size;
  return n;
}

const stateDir = mkdtempSync(join(tmpdir(), 'vtpmd-scale-'));
const results: Record<string, unknown> = { machine: describeMachine(), vms: N };
try {
  const host = await Host.open({ stateDir, hostId: 'bench-host', idleUnloadMs: 0 });
  const names = Array.from({ length: N }, (_, i) => `vm-${i}`);

  log(`creating ${N} vTPMs…`);
  let t = performance.now();
  const batch = 32;
  for (let i = 0; i < N; i += batch) {
    await Promise.all(names.slice(i, i + batch).map((n) => host.manager.create(n)));
    if ((i / batch) % 8 === 0) log(`  ${Math.min(i + batch, N)}/${N}`);
  }
  results.createSeconds = (performance.now() - t) / 1000;
  await host.close();

  const closed = heap();
  const host2 = await Host.open({ stateDir, hostId: 'bench-host', idleUnloadMs: 0 });
  // What the host keeps of every VM from the moment it opens, before any vTPM is loaded (the PSS's
  // index of their stored state): part of what an unloaded vTPM costs.
  const indexPerVtpm = (heap() - closed) / N;
  results.indexBytesPerVtpm = Math.round(indexPerVtpm);
  const client2 = (name: string) => new Tpm2Client(async (c) => (await host2.manager.device(name)).execute(c, 0));
  const load = async (list: readonly string[], first: boolean) => {
    for (let i = 0; i < list.length; i += batch) {
      await Promise.all(
        list.slice(i, i + batch).map(async (n) => {
          const tpm = client2(n);
          if (first) await tpm.startup();
          await tpm.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 1) }]);
        }),
      );
    }
  };
  // A first few load and unload before anything is measured: what the first loads cost once
  // (compiled code, caches) is not a cost per vTPM.
  const warm = names.slice(0, Math.min(50, Math.floor(N / 10)));
  await load(warm, true);
  // So is the PSS's sealing thread, which the first crowd of saves starts (a fixed cost, not per vTPM).
  for (let i = 0; i < 200 && !host2.pss.status().sealingThread; i++) {
    await Promise.all(warm.map((n) => client2(n).pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 2) }])));
    await new Promise((r) => setTimeout(r, 10));
  }
  for (const n of warm) await host2.manager.unload(n);
  const before = heap();
  log('loading every vTPM (Startup, one PCR_Extend)…');
  await load(warm, false);
  await load(names.slice(warm.length), true);
  const loaded = heap();
  results.bytesPerLoadedVtpm = Math.round((loaded - before) / N);
  for (const n of names) await host2.manager.unload(n);
  // The warm vTPMs were already unloaded at `before`; what a handle (the VM's device, kept by its
  // endpoint) adds to the index once its vTPM has been loaded and unloaded.
  results.bytesPerUnloadedVtpm = Math.round((heap() - before) / (N - warm.length) + indexPerVtpm);
  results.pssBytesPerVtpm = Math.round(dirBytes(join(stateDir, 'pss')) / N);
  results.registryBytesPerVtpm = Math.round(dirBytes(join(stateDir, 'vms')) / N);

  log('reloading unloaded vTPMs one at a time…');
  const reload: number[] = [];
  for (const n of names) {
    const tpm = client2(n);
    const s = performance.now();
    await tpm.pcrRead(ALG.SHA256, [16]);
    reload.push(performance.now() - s);
  }
  reload.sort((a, b) => a - b);
  results.reloadMs = { p50: percentile(reload, 50), p99: percentile(reload, 99), max: reload[reload.length - 1] };

  /** PCR_Extends per second with `c` of `vms` extending at once, the guest's command bytes handed straight over. */
  const extendRate = async (vms: readonly string[], c: number): Promise<number> => {
    let done = 0;
    const until = performance.now() + seconds * 1000;
    const command = pcrExtendSha256().sampleCommand;
    await Promise.all(
      vms.slice(0, c).map(async (n) => {
        const device = await host2.manager.device(n);
        while (performance.now() < until) {
          const r = await device.execute(command, 0);
          if (asBuffer(r).readUInt32BE(6) !== 0) throw new Error('PCR_Extend failed');
          done++;
        }
      }),
    );
    return Math.round(done / seconds);
  };
  const rows = concurrencies.filter((c) => c <= N);
  /** Each row's rate over `rounds` rounds in which the rows take turns. */
  const rates = async (what: string, vms: readonly string[]): Promise<Record<number, Rate>> => {
    const runs = new Map<number, number[]>(rows.map((c) => [c, []]));
    for (let r = 1; r <= rounds; r++) {
      for (const c of rows) {
        log(`PCR_Extend with its ${what} PSS save, ${c} vTPMs at once, round ${r} of ${rounds}…`);
        runs.get(c)!.push(await extendRate(vms, c));
      }
    }
    return Object.fromEntries([...runs].map(([c, v]) => [c, summarize(v)]));
  };
  results.extendWithSavePerSecond = await rates('durable', names);

  const batchedNames = Array.from({ length: Math.max(0, ...rows) }, (_, i) => `batched-${i}`);
  log(`creating ${batchedNames.length} vTPMs with batched saves…`);
  for (let i = 0; i < batchedNames.length; i += batch) {
    await Promise.all(batchedNames.slice(i, i + batch).map((n) => host2.manager.create(n, { durability: 'batched' })));
  }
  await load(batchedNames, true);
  results.extendWithBatchedSavePerSecond = await rates('batched', batchedNames);
  results.sealingThread = host2.pss.status().sealingThread;
  await host2.close();
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}

if (values.json) process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
else {
  const r = results as any;
  const m = r.machine;
  console.log(`vTPM scale, ${N} vTPMs — ${m.cpuModel}, ${m.cores} cores, Node ${process.versions.node}`);
  console.log(`create ${N} vTPMs            ${r.createSeconds.toFixed(1)} s   (target < 60 s)`);
  console.log(`memory per loaded vTPM       ${(r.bytesPerLoadedVtpm / 1024).toFixed(0)} KB   (target ≤ 200 KB; swtpm ≈ 7 MB a process)`);
  console.log(`memory per unloaded vTPM     ${(r.bytesPerUnloadedVtpm / 1024).toFixed(1)} KB   (of which the PSS index ${(r.indexBytesPerVtpm / 1024).toFixed(1)} KB)`);
  console.log(`disk per vTPM                ${((r.pssBytesPerVtpm + r.registryBytesPerVtpm) / 1024).toFixed(1)} KB (PSS ${(r.pssBytesPerVtpm / 1024).toFixed(1)} KB, registry ${(r.registryBytesPerVtpm / 1024).toFixed(1)} KB)`);
  console.log(`reload latency               p50 ${r.reloadMs.p50.toFixed(2)} ms, p99 ${r.reloadMs.p99.toFixed(2)} ms   (target p99 < 20 ms)`);
  console.log(`PCR_Extend rates: median of ${rounds} rounds of ${seconds} s, range in brackets`);
  for (const [c, v] of Object.entries(r.extendWithSavePerSecond as Record<string, Rate>)) console.log(`PCR_Extend + durable PSS save, ${c.padStart(3)} vTPMs  ${showRate(v)}   (target ≥ 10k/s)`);
  for (const [c, v] of Object.entries(r.extendWithBatchedSavePerSecond as Record<string, Rate>)) console.log(`PCR_Extend + batched PSS save, ${c.padStart(3)} vTPMs  ${showRate(v)}   (a crash may lose the last window)`);
  console.log(`PSS sealing thread           ${r.sealingThread ? 'running' : 'not running (every save sealed on the main thread)'}`);
}
