/**
 * `vtpmd bench` / `npm run bench` options: parsing, checking and defaults. Every bad value is
 * rejected with a message naming the option and what it accepts.
 */
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_PATHS, PATHS, type PathName } from './beds.ts';
import type { OneShotLimits, Timing } from './measurement.ts';
import { SCENARIOS, type Scenario } from './scenarios.ts';
import type { Durability } from './serve-peer.ts';

export const ALL_SCENARIOS: readonly Scenario[] = SCENARIOS.map((make) => make());
export const DEFAULT_CONCURRENCY: readonly number[] = [1, 8, 64, 512];
export const QUICK_CONCURRENCY: readonly number[] = [1, 8];
const MAX_VTPMS = 4096;
const DURABILITIES: readonly Durability[] = ['per-command', 'batched'];
/** Per path: at most this many measured iterations, or this many seconds. */
const ONE_SHOT: OneShotLimits = { iterations: 10, seconds: 10 };
const ONE_SHOT_QUICK: OneShotLimits = { iterations: 3, seconds: 3 };
const TIMING: Timing = { duration: 5, warmup: 1 };
const TIMING_QUICK: Timing = { duration: 0.5, warmup: 0.2 };

/** What the harness runs with, every default filled in. */
export interface BenchOptions {
  quick: boolean;
  timing: Timing;
  oneShot: OneShotLimits;
  rounds: number;
  json: boolean;
  out: string | undefined;
  paths: PathName[];
  scenarios: Scenario[];
  /** Numbers of vTPMs, ascending. */
  concurrency: number[];
  durabilities: Durability[];
  serverCpuProf: string | undefined;
}

interface RawOptions {
  quick?: boolean;
  duration?: number;
  warmup?: number;
  rounds: number;
  json?: boolean;
  out?: string;
  paths: PathName[];
  scenarios: Scenario[];
  concurrency?: number[];
  durability: Durability[];
  iterations?: number;
  serverCpuProf?: string;
}

function items(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}

export function seconds(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number of seconds ≥ 0');
  return n;
}

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number ≥ 1');
  return n;
}

export function pathList(value: string): PathName[] {
  const list = items(value);
  for (const item of list) {
    if (!(PATHS as readonly string[]).includes(item)) throw new InvalidArgumentError(`unknown path '${item}'; choose from ${PATHS.join(', ')}`);
  }
  if (list.length === 0) throw new InvalidArgumentError(`name at least one path (${PATHS.join(', ')})`);
  return PATHS.filter((p) => list.includes(p));
}

/** Short names (`extend`), aliases (`extend-sha256`) or ids (`pcr-extend-sha256`); the table keeps the canonical order. */
export function scenarioList(value: string): Scenario[] {
  const list = items(value);
  const names = ALL_SCENARIOS.map((s) => s.name).join(', ');
  const matches = (s: Scenario, item: string): boolean => s.name === item || s.id === item || s.aliases.includes(item);
  for (const item of list) {
    if (!ALL_SCENARIOS.some((s) => matches(s, item))) throw new InvalidArgumentError(`unknown scenario '${item}'; choose from ${names}`);
  }
  if (list.length === 0) throw new InvalidArgumentError(`name at least one scenario (${names})`);
  return ALL_SCENARIOS.filter((s) => list.some((item) => matches(s, item)));
}

/** Numbers of vTPMs measured together, e.g. `1,8,64,512`: sorted, duplicates dropped. */
export function concurrencyList(value: string): number[] {
  const list = items(value);
  if (list.length === 0) throw new InvalidArgumentError('name at least one number of vTPMs, e.g. 1,8,64,512');
  const out = new Set<number>();
  for (const item of list) {
    const n = Number(item);
    if (!Number.isInteger(n) || n < 1 || n > MAX_VTPMS) throw new InvalidArgumentError(`'${item}' is not a number of vTPMs from 1 to ${MAX_VTPMS}`);
    out.add(n);
  }
  return [...out].sort((a, b) => a - b);
}

export function durabilityList(value: string): Durability[] {
  const list = items(value);
  for (const item of list) {
    if (!(DURABILITIES as readonly string[]).includes(item)) throw new InvalidArgumentError(`unknown durability '${item}'; choose from ${DURABILITIES.join(', ')}`);
  }
  if (list.length === 0) throw new InvalidArgumentError(`name at least one durability (${DURABILITIES.join(', ')})`);
  return DURABILITIES.filter((d) => list.includes(d));
}

export function benchProgram(): Command {
  return new Command()
    .name('bench')
    .description(
      'TPM command throughput, latency, CPU and memory of vtpmd — in process, through the hypervisor CRB path and over the swtpm ' +
        'socket protocol — with 1 to 512 vTPMs, against swtpm (one process per vTPM) in the same run',
    )
    .option(
      '--quick',
      `short run of every scenario: ${TIMING_QUICK.duration} s per measurement after ${TIMING_QUICK.warmup} s warm-up, ` +
        `one-shot scenarios ${ONE_SHOT_QUICK.iterations} iterations or ${ONE_SHOT_QUICK.seconds} s per path, vTPMs ${QUICK_CONCURRENCY.join(',')}`,
    )
    .option('--duration <s>', `seconds measured per measurement (default ${TIMING.duration}, --quick ${TIMING_QUICK.duration})`, seconds)
    .option('--warmup <s>', `seconds of discarded warm-up before each measurement (default ${TIMING.warmup}, --quick ${TIMING_QUICK.warmup})`, seconds)
    .option('--concurrency <list>', `numbers of vTPMs measured together, one command in flight on each (default ${DEFAULT_CONCURRENCY.join(',')}, --quick ${QUICK_CONCURRENCY.join(',')})`, concurrencyList)
    .option('--rounds <n>', 'measure everything n times, alternating the order, and report the median round', positiveInt, 1)
    .option('--json', 'print the results as JSON on stdout instead of the table')
    .option('--out <dir>', 'also write results.json and chart.svg (throughput against the number of vTPMs) into this directory')
    .addOption(
      new Option('--paths <list>', `comma-separated subset of ${PATHS.join(', ')} (node-floor: a Node server that does no TPM work, for calibration)`)
        .argParser(pathList)
        .default([...DEFAULT_PATHS], DEFAULT_PATHS.join(',')),
    )
    .addOption(
      new Option('--scenarios <list>', `comma-separated subset of ${ALL_SCENARIOS.map((s) => s.name).join(', ')}`)
        .argParser(scenarioList)
        .default([...ALL_SCENARIOS], 'all'),
    )
    .addOption(
      new Option('--durability <list>', `vtpmd serve's VMs: ${DURABILITIES.join(', ')} or both (one daemon each)`)
        .argParser(durabilityList)
        .default(['per-command'], 'per-command'),
    )
    .option(
      '--iterations <n>',
      `one-shot scenarios (CreatePrimary, cold load): measured iterations per path at most (default ${ONE_SHOT.iterations}, --quick ${ONE_SHOT_QUICK.iterations}); ` +
        `a path also stops after ${ONE_SHOT.seconds} s (--quick ${ONE_SHOT_QUICK.seconds} s)`,
      positiveInt,
    )
    .option('--server-cpu-prof <dir>', 'write V8 CPU profiles of the vtpmd servers into <dir> (distorts their figures; summarise with bench/cpuprofile-summary.ts)')
    .showHelpAfterError();
}

/** Fills the defaults --quick changes and checks what a single option cannot. */
export function resolveOptions(raw: RawOptions): BenchOptions {
  const quick = raw.quick === true;
  const base = quick ? TIMING_QUICK : TIMING;
  const timing: Timing = { duration: raw.duration ?? base.duration, warmup: raw.warmup ?? base.warmup };
  if (timing.duration <= 0) throw new InvalidArgumentError('--duration must be more than 0 seconds');
  const caps = quick ? ONE_SHOT_QUICK : ONE_SHOT;
  return {
    quick,
    timing,
    oneShot: { iterations: raw.iterations ?? caps.iterations, seconds: caps.seconds },
    rounds: raw.rounds,
    json: raw.json === true,
    out: raw.out,
    paths: raw.paths,
    scenarios: raw.scenarios,
    concurrency: raw.concurrency ?? [...(quick ? QUICK_CONCURRENCY : DEFAULT_CONCURRENCY)],
    durabilities: raw.durability,
    serverCpuProf: raw.serverCpuProf,
  };
}

/** Parses `argv` (as process.argv: node, script, options…). Commander reports bad values and exits unless exitOverride is set. */
export function parseBenchOptions(program: Command, argv: readonly string[]): BenchOptions {
  program.parse(argv as string[]);
  try {
    return resolveOptions(program.opts<RawOptions>());
  } catch (err) {
    program.error(`error: ${(err as Error).message}`);
  }
}
