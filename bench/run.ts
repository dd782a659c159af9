/**
 * `vtpmd bench` / `npm run bench`: TPM command throughput, latency, CPU and memory of vtpmd with
 * swtpm measured in the same run by the same client as the reference.
 *
 * A run is scenarios × paths × numbers of vTPMs (see bench/README.md): PCR_Extend (SHA-1,
 * SHA-256, SHA-384), Quote (ECC P-256, RSA-2048), Seal, Unseal, CreatePrimary RSA-2048 and the
 * cold load of a vTPM; in process, through the hypervisor's CRB path, and over the swtpm socket
 * protocol (`vtpmd socket`, `vtpmd serve` with N VMs, N swtpm processes); with 1, 8, 64, 512 vTPMs.
 *
 * stdout: the table, or the JSON document with --json. stderr: progress.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { throughputChart } from './lib/chart.ts';
import { cleanupAll, installCleanupHooks, interruptedBySignal, trackDir } from './lib/cleanup.ts';
import { describeMachine, sourceRevision } from './lib/machine.ts';
import { runMatrix } from './lib/matrix.ts';
import { progress, type Measurement } from './lib/measurement.ts';
import { runNotes } from './lib/notes.ts';
import { benchProgram, parseBenchOptions, type BenchOptions } from './lib/options.ts';
import { REPO_ROOT, findOnPath } from './lib/peers.ts';
import { formatReport } from './lib/report.ts';
import { addRatios, checkTargets, type BenchResults } from './lib/results.ts';

const PEER_ORDER = ['vtpmd-engine', 'vtpmd', 'vtpmd-serve', 'vtpmd-serve-batched', 'swtpm', 'node-floor'];
const PATH_ORDER = ['in-process', 'hypervisor', 'swtpm-socket'];

async function main(opts: BenchOptions): Promise<void> {
  installCleanupHooks();
  const startedAt = new Date().toISOString();
  const machine = describeMachine();
  progress(`${machine.cpuModel}, ${machine.cores} cores, node ${machine.node}, load average ${machine.loadAverageAtStart.toFixed(2)}`);
  const workDir = await mkdtemp(join(os.tmpdir(), 'vtpmd-bench-'));
  trackDir(workDir);
  const notes: string[] = [];

  const cpuProfDir = opts.serverCpuProf === undefined ? undefined : resolve(opts.serverCpuProf);
  if (cpuProfDir) {
    await mkdir(cpuProfDir, { recursive: true });
    notes.push(`the vtpmd servers ran under --cpu-prof (profiles in ${cpuProfDir}); their figures include the profiler's overhead`);
  }
  const swtpm = opts.paths.includes('swtpm') ? findOnPath('swtpm') : undefined;
  if (opts.paths.includes('node-floor')) {
    notes.push('node-floor is a Node server that answers canned responses without any TPM work: the per-round-trip cost of a Node socket server on this machine');
  }

  const outcome = await runMatrix(opts, { workDir, swtpm, cpuProfDir, runId: randomBytes(6).toString('hex') });
  const results = outcome.results;
  const scenarioIndex = (m: Measurement): number => opts.scenarios.findIndex((s) => s.id === m.scenario);
  const pathIndex = (m: Measurement): number => PATH_ORDER.indexOf(m.path) * PEER_ORDER.length + PEER_ORDER.indexOf(m.peer);
  results.sort((a, b) => scenarioIndex(a) - scenarioIndex(b) || a.vtpms - b.vtpms || pathIndex(a) - pathIndex(b));
  addRatios(results);
  notes.push(...runNotes(results, opts.scenarios, machine.cores, opts.rounds));

  const source = sourceRevision(REPO_ROOT);
  const report: BenchResults = {
    tool: 'vtpmd bench',
    format: 3,
    startedAt,
    finishedAt: new Date().toISOString(),
    machine: { ...machine, loadAverageAtEnd: os.loadavg()[0]! },
    ...(source ? { source } : {}),
    options: {
      ...opts.timing,
      quick: opts.quick,
      rounds: opts.rounds,
      paths: opts.paths,
      scenarios: opts.scenarios.map((s) => s.name),
      concurrency: opts.concurrency,
      durability: opts.durabilities,
      oneShot: opts.oneShot,
    },
    scenarios: opts.scenarios.map((s) => ({
      id: s.id,
      name: s.name,
      kind: s.kind,
      title: s.title,
      description: s.description,
      commandHex: s.sampleCommand.toString('hex'),
    })),
    peers: outcome.servers,
    results,
    skipped: outcome.skipped,
    targets: checkTargets(results, opts.scenarios.map((s) => s.id), opts.concurrency, opts.paths),
    notes,
  };

  if (opts.out !== undefined) {
    const dir = resolve(opts.out);
    await mkdir(dir, { recursive: true });
    await writeFile(join(dir, 'results.json'), JSON.stringify(report, null, 2) + '\n');
    progress(`wrote ${join(dir, 'results.json')}`);
    const subtitle = `${machine.cpuModel}, ${machine.cores} cores, node ${machine.node}; ${opts.timing.duration} s per measurement${opts.quick ? ' (--quick)' : ''}`;
    const svg = throughputChart(results, opts.scenarios.map((s) => s.id), subtitle);
    if (svg) {
      await writeFile(join(dir, 'chart.svg'), svg);
      progress(`wrote ${join(dir, 'chart.svg')}`);
    }
  }
  process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
}

const program = benchProgram();
const opts = parseBenchOptions(program, process.argv);
try {
  await main(opts);
} catch (err) {
  // After SIGINT / SIGTERM the signal handler cleans up and sets the exit code.
  if (!interruptedBySignal()) {
    process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  }
} finally {
  await cleanupAll();
}
