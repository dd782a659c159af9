/**
 * `npm run bench`: TPM command throughput of vtpmd, in process and over the swtpm socket
 * protocol, with swtpm measured in the same run by the same client as the reference.
 *
 * A run is scenarios × paths × concurrency. Today: scenarios PCR_Extend SHA-256, Quote with an
 * ECC P-256 and with an RSA-2048 key (steady: a fixed time per measurement) and CreatePrimary
 * RSA-2048 (one-shot: a few timed iterations); paths in-process (the engine, synchronously) and
 * swtpm-socket (vtpmd and swtpm, each in its own child process, plus an opt-in Node calibration
 * floor); concurrency 1 (one connection, one command in flight).
 *
 * stdout: the table, or the JSON document with --json. stderr: progress.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join, resolve } from 'node:path';
import { cleanupAll, installCleanupHooks, interruptedBySignal, trackDir } from './lib/cleanup.ts';
import { engineExchange, measureInProcess, startedEngine } from './lib/in-process.ts';
import { describeMachine, sourceRevision } from './lib/machine.ts';
import { progress, type Measurement, type OneShotLimits, type Timing } from './lib/measurement.ts';
import { measureOneShotInProcess, measureOneShotSocket } from './lib/one-shot.ts';
import { REPO_ROOT, findOnPath, startNodeFloor, startSwtpm, startVtpmd, type Peer } from './lib/peers.ts';
import { addRatios, checkTargets, fmtOps, fmtUs, formatReport, type BenchResults, type Skipped } from './lib/report.ts';
import { SCENARIOS, type Exchange, type Scenario } from './lib/scenarios.ts';
import { measureSocket } from './lib/socket.ts';

const PATHS = ['in-process', 'vtpmd', 'swtpm', 'node-floor'] as const;
const DEFAULT_PATHS: PathName[] = ['in-process', 'vtpmd', 'swtpm'];
type PathName = (typeof PATHS)[number];
const ALL_SCENARIOS: readonly Scenario[] = SCENARIOS.map((make) => make());
/** One-shot caps per path: at most this many measured iterations, or this many seconds. */
const ONE_SHOT = { iterations: 10, seconds: 10 };
const ONE_SHOT_QUICK = { iterations: 5, seconds: 5 };

interface CliOptions {
  quick?: boolean;
  duration?: number;
  warmup?: number;
  rounds: number;
  json?: boolean;
  out?: string;
  paths: PathName[];
  scenarios: Scenario[];
  iterations?: number;
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

/** Short names (`extend`) or ids (`pcr-extend-sha256`); the table keeps the canonical order. */
function scenarioList(value: string): Scenario[] {
  const items = value.split(',').map((s) => s.trim()).filter(Boolean);
  const names = ALL_SCENARIOS.map((s) => s.name).join(', ');
  for (const item of items) {
    if (!ALL_SCENARIOS.some((s) => s.name === item || s.id === item)) throw new InvalidArgumentError(`unknown scenario '${item}'; choose from ${names}`);
  }
  if (items.length === 0) throw new InvalidArgumentError(`name at least one scenario (${names})`);
  return ALL_SCENARIOS.filter((s) => items.includes(s.name) || items.includes(s.id));
}

const program = new Command()
  .name('bench')
  .description('TPM command throughput and latency of vtpmd in process and over the swtpm socket protocol, against swtpm in the same run')
  .option('--quick', `short run: 1 s per measurement after 0.3 s warm-up; one-shot scenarios ${ONE_SHOT_QUICK.iterations} iterations or ${ONE_SHOT_QUICK.seconds} s per path`)
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
  .addOption(
    new Option('--scenarios <list>', `comma-separated subset of ${ALL_SCENARIOS.map((s) => s.name).join(', ')}`)
      .argParser(scenarioList)
      .default(ALL_SCENARIOS, 'all'),
  )
  .option(
    '--iterations <n>',
    `one-shot scenarios (CreatePrimary): measured iterations per path at most (default ${ONE_SHOT.iterations}, --quick ${ONE_SHOT_QUICK.iterations}); ` +
      `a path also stops after ${ONE_SHOT.seconds} s (--quick ${ONE_SHOT_QUICK.seconds} s)`,
    positiveInt,
  )
  .option('--server-cpu-prof <dir>', 'write a V8 CPU profile of the vtpmd server into <dir> (distorts its figures; summarise with bench/cpuprofile-summary.ts)')
  .showHelpAfterError();

/**
 * What a fresh in-memory engine answers to every command of each scenario (setup, measured,
 * teardown, cleanup): the calibration floor's canned responses, one per command code — so where
 * two scenarios share a command code (the two Quotes) the floor answers both with the last one.
 */
async function referenceResponses(scenarios: readonly Scenario[]): Promise<Map<number, Buffer>> {
  const out = new Map<number, Buffer>();
  for (const s of scenarios) {
    const inner = engineExchange(startedEngine());
    const record: Exchange = async (command, what) => {
      const response = await inner(command, `${what} (building the calibration responses)`);
      out.set(command.readUInt32BE(6), response);
      return response;
    };
    if (s.kind === 'steady') {
      const prepared = await s.prepare(record);
      await record(prepared.command, s.title);
      for (const cmd of prepared.teardown) await record(cmd, 'a teardown command');
    } else {
      await record(s.cleanup(await record(s.command('calibration', 0), s.title)), 'the cleanup command');
    }
  }
  return out;
}

function fmtRate(m: Measurement): string {
  const n = m.oneShot ? `, ${m.ops} iterations` : '';
  return `${fmtOps(m.opsPerSec)} ops/s, p50 ${fmtUs(m.latencyUs.p50)} µs${n}`;
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
    // Resends of every round, not just the median one's (swtpm's first Quote after power-on is in round 1).
    const resent = ms.flatMap((m, i) => (m.resent ?? []).map((r) => `round ${i + 1}: ${r}`));
    return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, roundsOpsPerSec: ms.map((m) => m.opsPerSec), ...(resent.length > 0 ? { resent } : {}) };
  });
}

async function main(opts: CliOptions): Promise<void> {
  installCleanupHooks();
  const quick = opts.quick === true;
  const timing: Timing = { duration: opts.duration ?? (quick ? 1 : 5), warmup: opts.warmup ?? (quick ? 0.3 : 1) };
  if (timing.duration <= 0) throw new Error('--duration must be more than 0 seconds');
  const caps = quick ? ONE_SHOT_QUICK : ONE_SHOT;
  const oneShot: OneShotLimits = { iterations: opts.iterations ?? caps.iterations, seconds: caps.seconds };
  // One-shot series differ per run and per round, so a server that stays up for every round
  // never sees the same template twice; every path of a round gets the same series.
  const runId = randomBytes(6).toString('hex');
  const startedAt = new Date().toISOString();
  const machine = describeMachine();
  progress(`${machine.cpuModel}, ${machine.cores} cores, node ${machine.node}, load average ${machine.loadAverageAtStart.toFixed(2)}`);

  const workDir = await mkdtemp(join(os.tmpdir(), 'vtpmd-bench-'));
  trackDir(workDir);
  const scenarios = opts.scenarios;
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
      const responses = await referenceResponses(scenarios);
      await startPeer('node-floor', () => startNodeFloor(workDir, responses));
      notes.push('node-floor is a Node server that answers canned responses without any TPM work: the per-round-trip cost of a Node socket server on this machine');
    }

    const rounds: Measurement[][] = [];
    for (let round = 1; round <= opts.rounds; round++) {
      const tag = opts.rounds > 1 ? `round ${round}/${opts.rounds}: ` : '';
      const measured: Measurement[] = [];
      // Alternate the order so slow drifts in background load do not always favour the same peer.
      const order = round % 2 === 1 ? peers : [...peers].reverse();
      const series = `${runId}-round${round}`;
      for (const scenario of scenarios) {
        const plan =
          scenario.kind === 'steady'
            ? `${timing.warmup} s warm-up, ${timing.duration} s measured`
            : `1 warm-up iteration, up to ${oneShot.iterations} measured or ${oneShot.seconds} s`;
        if (wanted.has('in-process')) {
          progress(`${tag}${scenario.title} / in-process: ${plan}`);
          const m =
            scenario.kind === 'steady' ? await measureInProcess(scenario, timing) : await measureOneShotInProcess(scenario, oneShot, series);
          progress(`  → ${fmtRate(m)}`);
          measured.push(m);
        }
        for (const peer of order) {
          progress(`${tag}${scenario.title} / ${peer.label}: ${plan}`);
          let m: Measurement;
          try {
            m =
              scenario.kind === 'steady'
                ? await measureSocket(scenario, peer, timing)
                : await measureOneShotSocket(scenario, peer, oneShot, series);
          } catch (err) {
            throw new Error(`${(err as Error).message}\n--- last lines of the ${peer.name} log ---\n${peer.logTail()}`);
          }
          progress(`  → ${fmtRate(m)}, server CPU ${fmtUs(m.server!.cpuUsPerOp)} µs/op, RSS ${m.server!.rssMB.toFixed(1)} MB`);
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
      // Signatures and keys differ by nature (clock, counters, random k, per-TPM seeds): compare only where they cannot.
      if (scenario.deterministic && new Set(answers.map((m) => m.firstResponse)).size > 1) {
        notes.push(`${scenario.title}: the paths answered with different bytes: ${answers.map((m) => `${m.label} ${m.firstResponse}`).join('; ')}`);
      }
      for (const m of answers) {
        // Steady: only ever before warm-up (the timed loop fails on any rc but 0). One-shot: inside an iteration's timing.
        if (m.resent) notes.push(`${scenario.title} / ${m.label}: ${m.resent.join('; ')}`);
      }
      if (new Set(answers.map((m) => m.commandHex)).size > 1) {
        notes.push(`${scenario.title}: the measured command differed by the handle each peer returned: ${answers.map((m) => `${m.label} ${m.setupDetail ?? '?'}`).join('; ')}`);
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
      format: 2,
      startedAt,
      finishedAt: new Date().toISOString(),
      machine: { ...machine, loadAverageAtEnd },
      ...(source ? { source } : {}),
      options: { ...timing, quick, rounds: opts.rounds, paths: opts.paths, scenarios: scenarios.map((s) => s.name), oneShot },
      scenarios: scenarios.map((s) => ({
        id: s.id,
        name: s.name,
        kind: s.kind,
        title: s.title,
        description: s.description,
        commandHex: s.sampleCommand.toString('hex'),
      })),
      peers: peers.map((p) => ({ name: p.name, version: p.version, label: p.label, argv: p.argv })),
      results,
      skipped,
      targets: checkTargets(results, scenarios.map((s) => s.id)),
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
