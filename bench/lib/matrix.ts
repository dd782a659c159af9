/**
 * The run itself: for each number of vTPMs N, the beds of the selected paths are started, every
 * scenario is measured on each (rounds alternating the order of the beds), and the beds stop
 * before the next N. One-shot and cold-load scenarios are measured with one vTPM only.
 */
import type { Bed } from './bed.ts';
import { startBeds, type PathName } from './beds.ts';
import { measureColdLoad } from './cold-load.ts';
import { floorResponses } from './floor-responses.ts';
import { progress, type Measurement } from './measurement.ts';
import { measureOneShot } from './one-shot.ts';
import type { BenchOptions } from './options.ts';
import { fmtOps, fmtUs } from './report.ts';
import type { Skipped } from './results.ts';
import { medianRounds } from './rounds.ts';
import type { Scenario } from './scenarios.ts';
import { measureSteady } from './steady.ts';

export interface MatrixContext {
  workDir: string;
  swtpm: string | undefined;
  cpuProfDir: string | undefined;
  /** Names this run's one-shot series, so a server never sees the same template twice. */
  runId: string;
}

export interface MatrixOutcome {
  results: Measurement[];
  skipped: Skipped[];
  servers: { name: string; version: string; label: string; argv: readonly string[] }[];
}

const ONE_VTPM_ONLY =
  'measured with one vTPM only: each iteration takes milliseconds to seconds on its own, so N at once would time a queue of N of them';

function plan(scenario: Scenario, opts: BenchOptions): string {
  return scenario.kind === 'steady'
    ? `${opts.timing.warmup} s warm-up, ${opts.timing.duration} s measured`
    : `1 warm-up iteration, up to ${opts.oneShot.iterations} measured or ${opts.oneShot.seconds} s`;
}

function summary(m: Measurement): string {
  const server = m.server ? `, server CPU ${fmtUs(m.server.cpuUsPerOp)} µs/op, ${m.memoryPerVtpmMB!.toFixed(3)} MB/vTPM` : '';
  const n = m.oneShot ? `, ${m.ops} iterations` : '';
  return `${fmtOps(m.opsPerSec)} ops/s, p50 ${fmtUs(m.latencyUs.p50)} µs${n}${server}`;
}

/** One measurement, or the reason there is none (cold-load on a bed without a loader). */
async function measure(scenario: Scenario, bed: Bed, opts: BenchOptions, series: string): Promise<Measurement | string> {
  if (scenario.kind === 'steady') return measureSteady(bed, scenario, opts.timing);
  if (scenario.kind === 'one-shot') return measureOneShot(scenario, bed, opts.oneShot, series);
  const loader = bed.coldLoader();
  if (typeof loader === 'string') return loader;
  return measureColdLoad(scenario, bed, await loader, opts.oneShot);
}

export async function runMatrix(opts: BenchOptions, ctx: MatrixContext): Promise<MatrixOutcome> {
  const outcome: MatrixOutcome = { results: [], skipped: [], servers: [] };
  const paths = new Set<PathName>(opts.paths);
  for (const n of opts.concurrency) {
    progress(`── ${n} vTPM(s) ──`);
    const set = await startBeds({
      vtpms: n,
      paths,
      workDir: ctx.workDir,
      durabilities: opts.durabilities,
      swtpm: ctx.swtpm,
      ...(ctx.cpuProfDir ? { cpuProfDir: ctx.cpuProfDir } : {}),
      floorResponses: () => floorResponses(opts.scenarios),
    });
    try {
      for (const s of set.skipped) outcome.skipped.push({ path: s.path, peer: s.peer, vtpms: s.vtpms, reason: s.reason });
      for (const { name, version, label, argv } of set.servers) {
        if (!outcome.servers.some((p) => p.label === label)) outcome.servers.push({ name, version, label, argv });
      }
      const rounds: Measurement[][] = [];
      for (let round = 1; round <= opts.rounds; round++) {
        const tag = opts.rounds > 1 ? `round ${round}/${opts.rounds}: ` : '';
        // Alternate the order so slow drifts in background load do not always favour the same bed.
        const order = round % 2 === 1 ? set.beds : [...set.beds].reverse();
        const measured: Measurement[] = [];
        for (const [si, scenario] of opts.scenarios.entries()) {
          const step = `${tag}${n} vTPM(s), scenario ${si + 1}/${opts.scenarios.length}`;
          if (scenario.kind !== 'steady' && n > 1) {
            if (round === 1) {
              progress(`${step} ${scenario.title}: skipped, ${ONE_VTPM_ONLY}`);
              outcome.skipped.push({ scenario: scenario.name, path: 'all', peer: 'all', vtpms: n, reason: ONE_VTPM_ONLY });
            }
            continue;
          }
          for (const bed of order) {
            progress(`${step} ${scenario.title} / ${bed.label}: ${plan(scenario, opts)}`);
            let m: Measurement | string;
            try {
              m = await measure(scenario, bed, opts, `${ctx.runId}-round${round}`);
            } catch (err) {
              const log = bed.logTail();
              throw new Error(`${(err as Error).message}${log ? `\n--- last lines of the ${bed.peer} log ---\n${log}` : ''}`);
            }
            if (typeof m === 'string') {
              progress(`  → skipped: ${m}`);
              if (round === 1) outcome.skipped.push({ scenario: scenario.name, path: bed.path, peer: bed.peer, vtpms: n, reason: m });
              continue;
            }
            progress(`  → ${summary(m)}`);
            measured.push(m);
          }
        }
        rounds.push(measured);
      }
      outcome.results.push(...medianRounds(rounds));
    } finally {
      progress(`stopping the beds of ${n} vTPM(s)`);
      await set.stop();
    }
  }
  return outcome;
}
