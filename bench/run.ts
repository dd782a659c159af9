/**
 * `npm run bench`: TPM command throughput of vtpmd, in process and over the swtpm socket
 * protocol, with swtpm measured in the same run by the same client as the reference.
 *
 * A run is scenarios × paths × concurrency. Today: scenario PCR_Extend SHA-256; paths in-process
 * (the engine, synchronously) and swtpm-socket (vtpmd and swtpm, each in its own child process,
 * plus an opt-in Node calibration floor); concurrency 1 (one connection, one command in flight).
 *
 * stdout: the table, or the JSON document with --json. stderr: progress.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { Tpm2Engine } from '../src/tpm/tpm2/engine.ts';
import { cleanupAll, installCleanupHooks, interruptedBySignal, trackDir } from './lib/cleanup.ts';
import { measureInProcess } from './lib/in-process.ts';
import { describeMachine, sourceRevision } from './lib/machine.ts';
import { progress, type Measurement, type Timing } from './lib/measurement.ts';
import { REPO_ROOT, findOnPath, startNodeFloor, startSwtpm, startVtpmd, type Peer } from './lib/peers.ts';
import { addRatios, checkTargets, formatReport, type BenchResults, type Skipped } from './lib/report.ts';
import { SCENARIOS, hex, responseCodeOf, startupClear, type Scenario } from './lib/scenarios.ts';
import { measureSocket } from './lib/socket.ts';

const PATHS = ['in-process', 'vtpmd', 'swtpm', 'node-floor'] as const;
const DEFAULT_PATHS: PathName[] = ['in-process', 'vtpmd', 'swtpm'];
type PathName = (typeof PATHS)[number];

interface CliOptions {
  quick?: boolean;
  duration?: number;
  warmup?: number;
  rounds: number;
  json?: boolean;
  out?: string;
  paths: PathName[];
  serverCpuProf?: string;
}

function seconds(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number of seconds ≥ 0');
  return n;
}

function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number ≥ 1');
  return n;
}

function pathList(value: string): PathName[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  for (const item of items) {
    if (!(PATHS as readonly string[]).includes(item)) throw new InvalidArgumentError(`unknown path '${item}'; choose from ${PATHS.join(', ')}`);
  }
  if (items.length === 0) throw new InvalidArgumentError('name at least one path');
  return items as PathName[];
}

const program = new Command()
  .name('bench')
  .description('PCR_Extend throughput of vtpmd in process and over the swtpm socket protocol, against swtpm in the same run')
  .option('--quick', 'short run: 1 s per measurement after 0.3 s warm-up')
  .option('--duration <s>', 'seconds measured per measurement (default 5, --quick 1)', seconds)
  .option('--warmup <s>', 'seconds of discarded warm-up before each measurement (default 1, --quick 0.3)', seconds)
  .option('--rounds <n>', 'measure everything n times, alternating the order, and report the median round', positiveInt, 1)
  .option('--json', 'print the results as JSON on stdout instead of the table')
  .option('--out <dir>', 'also write results.json into this directory')
  .addOption(
    new Option('--paths <list>', `comma-separated subset of ${PATHS.join(', ')} (node-floor: a Node server that does no TPM work, for calibration)`)
      .argParser(pathList)
      .default(DEFAULT_PATHS, DEFAULT_PATHS.join(',')),
  )
  .option('--server-cpu-prof <dir>', 'write a V8 CPU profile of the vtpmd server into <dir> (distorts its figures; summarise with bench/cpuprofile-summary.ts)')
  .showHelpAfterError();

/** What a fresh in-memory engine answers to each scenario: the calibration floor's canned responses. */
function referenceResponses(scenarios: readonly Scenario[]): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (const s of scenarios) {
    const engine = new Tpm2Engine();
    for (const cmd of [startupClear(), ...s.setup]) engine.execute(cmd, 0);
    const response = engine.execute(s.command, 0);
    const rc = responseCodeOf(response);
    if (rc !== 0) throw new Error(`${s.title}: the engine answers rc ${hex(rc)}; cannot build the calibration response`);
    out.set(s.command.readUInt32BE(6), response);
  }
  return out;
}

function fmtRate(m: Measurement): string {
  return `${Math.round(m.opsPerSec).toLocaleString('en-US')} ops/s, p50 ${m.latencyUs.p50.toFixed(m.latencyUs.p50 < 10 ? 2 : 1)} µs`;
}

/** One figure per (scenario, path, peer, concurrency): the median round by ops/s, with every round's rate attached. */
function medianRounds(all: Measurement[][]): Measurement[] {
  const groups = new Map<string, Measurement[]>();
  for (const round of all) {
    for (const m of round) {
      const key = `${m.scenario}|${m.path}|${m.peer}|${m.concurrency}`;
      groups.set(key, [...(groups.get(key) ?? []), m]);
    }
  }
  return [...groups.values()].map((ms) => {
    if (ms.length === 1) return ms[0]!;
    const sorted = [...ms].sort((a, b) => a.opsPerSec - b.opsPerSec);
    return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, roundsOpsPerSec: ms.map((m) => m.opsPerSec) };
  });
}

async function main(opts: CliOptions): Promise<void> {
  installCleanupHooks();
  const quick = opts.quick === true;
  const timing: Timing = { duration: opts.duration ?? (quick ? 1 : 5), warmup: opts.warmup ?? (quick ? 0.3 : 1) };
  if (timing.duration <= 0) throw new Error('--duration must be more than 0 seconds');
  const startedAt = new Date().toISOString();
  const machine = describeMachine();
  progress(`${machine.cpuModel}, ${machine.cores} cores, node ${machine.node}, load average ${machine.loadAverageAtStart.toFixed(2)}`);

  const workDir = await mkdtemp(join(os.tmpdir(), 'vtpmd-bench-'));
  trackDir(workDir);
  const scenarios = SCENARIOS.map((make) => make());
  const skipped: Skipped[] = [];
  const notes: string[] = [];
  const wanted = new Set(opts.paths);

  // Servers start once and stay up for every round; an idle one costs the others nothing.
  const peers: Peer[] = [];
  const startPeer = async (name: string, start: () => Promise<Peer>): Promise<void> => {
    progress(`starting ${name}`);
    const peer = await start();
    peers.push(peer);
    progress(`${peer.label}: pid ${peer.pid}, data ${peer.host}:${peer.dataPort}${peer.ctrlPort === undefined ? '' : `, ctrl ${peer.ctrlPort}`}`);
  };
  try {
    if (wanted.has('vtpmd')) {
      const cpuProfDir = opts.serverCpuProf === undefined ? undefined : resolve(opts.serverCpuProf);
      if (cpuProfDir) {
        await mkdir(cpuProfDir, { recursive: true });
        notes.push(`the vtpmd server ran under --cpu-prof (profile in ${cpuProfDir}); its figures include the profiler's overhead`);
      }
      await startPeer('vtpmd', () => startVtpmd({ workDir, ...(cpuProfDir ? { cpuProfDir } : {}) }));
    }
    if (wanted.has('swtpm')) {
      const binary = findOnPath('swtpm');
      if (binary === undefined) {
        const reason = "swtpm is not installed (no swtpm on PATH); install Debian's swtpm package to get the reference column and the ratios";
        progress(`skipping the swtpm column: ${reason}`);
        skipped.push({ path: 'swtpm-socket', peer: 'swtpm', reason });
      } else {
        await startPeer('swtpm', () => startSwtpm(binary, workDir));
      }
    }
    if (wanted.has('node-floor')) {
      await startPeer('node-floor', () => startNodeFloor(workDir, referenceResponses(scenarios)));
      notes.push('node-floor is a Node server that answers canned responses without any TPM work: the per-round-trip cost of a Node socket server on this machine');
    }

    const rounds: Measurement[][] = [];
    for (let round = 1; round <= opts.rounds; round++) {
      const tag = opts.rounds > 1 ? `round ${round}/${opts.rounds}: ` : '';
      const measured: Measurement[] = [];
      // Alternate the order so slow drifts in background load do not always favour the same peer.
      const order = round % 2 === 1 ? peers : [...peers].reverse();
      for (const scenario of scenarios) {
        if (wanted.has('in-process')) {
          progress(`${tag}${scenario.title} / in-process: ${timing.warmup} s warm-up, ${timing.duration} s measured`);
          const m = measureInProcess(scenario, timing);
          progress(`  → ${fmtRate(m)}`);
          measured.push(m);
        }
        for (const peer of order) {
          progress(`${tag}${scenario.title} / ${peer.label}: ${timing.warmup} s warm-up, ${timing.duration} s measured`);
          let m: Measurement;
          try {
            m = await measureSocket(scenario, peer, timing);
          } catch (err) {
            throw new Error(`${(err as Error).message}\n--- last lines of the ${peer.name} log ---\n${peer.logTail()}`);
          }
          progress(`  → ${fmtRate(m)}, server CPU ${m.server!.cpuUsPerOp.toFixed(1)} µs/op, RSS ${m.server!.rssMB.toFixed(1)} MB`);
          measured.push(m);
        }
      }
      rounds.push(measured);
    }
    const results = medianRounds(rounds);
    const pathOrder = (m: Measurement): number => (m.path === 'in-process' ? 0 : ['vtpmd', 'swtpm', 'node-floor'].indexOf(m.peer) + 1);
    results.sort((a, b) => scenarios.findIndex((s) => s.id === a.scenario) - scenarios.findIndex((s) => s.id === b.scenario) || pathOrder(a) - pathOrder(b));
    addRatios(results);

    for (const scenario of scenarios) {
      const answers = results.filter((m) => m.scenario === scenario.id);
      if (new Set(answers.map((m) => m.firstResponse)).size > 1) {
        notes.push(`${scenario.title}: the paths answered with different bytes: ${answers.map((m) => `${m.label} ${m.firstResponse}`).join('; ')}`);
      }
    }
    const busiest = Math.max(0, ...results.map((m) => m.load?.otherCores ?? 0));
    if (busiest >= 0.25) {
      notes.push(
        `other processes used up to ${busiest.toFixed(2)} of the ${machine.cores} CPUs during a measurement (column "other CPU"); ` +
          'absolute figures are depressed and noisy, ratios less so' +
          (opts.rounds === 1 ? '; --rounds 3 reports the median of alternating rounds' : ''),
      );
    }
    const loadAverageAtEnd = os.loadavg()[0]!;
    const source = sourceRevision(REPO_ROOT);
    const report: BenchResults = {
      tool: 'vtpmd bench',
      format: 1,
      startedAt,
      finishedAt: new Date().toISOString(),
      machine: { ...machine, loadAverageAtEnd },
      ...(source ? { source } : {}),
      options: { ...timing, quick, rounds: opts.rounds, paths: opts.paths },
      scenarios: scenarios.map((s) => ({ id: s.id, title: s.title, description: s.description, commandHex: s.command.toString('hex') })),
      peers: peers.map((p) => ({ name: p.name, version: p.version, label: p.label, argv: p.argv })),
      results,
      skipped,
      targets: checkTargets(results),
      notes,
    };

    if (opts.out !== undefined) {
      const dir = resolve(opts.out);
      await mkdir(dir, { recursive: true });
      await writeFile(join(dir, 'results.json'), JSON.stringify(report, null, 2) + '\n');
      progress(`wrote ${join(dir, 'results.json')}`);
    }
    process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
  } finally {
    for (const peer of peers) {
      progress(`stopping ${peer.name}`);
      await peer.stop();
    }
  }
}

program.action(async (opts: CliOptions) => {
  try {
    await main(opts);
  } catch (err) {
    if (interruptedBySignal()) return; // the signal handler cleans up and sets the exit code
    process.stderr.write(`bench failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  } finally {
    await cleanupAll();
  }
});

await program.parseAsync(process.argv);
