/**
 * The cold-load scenario: the first command to a vTPM that is not in memory, timed until its
 * response. The path's loader seeds a vTPM once; then, like a one-shot scenario, one unmeasured
 * iteration and up to `iterations` measured ones within `seconds`, each made cold outside the
 * timing (the loader's makeCold) and tidied after it. The first command's rc is checked.
 */
import type { Bed, ColdLoader } from './bed.ts';
import { hex, responseCodeOf } from './commands.ts';
import { mb, measured, type Measurement, type OneShotLimits } from './measurement.ts';
import type { ColdLoadScenario } from './scenarios.ts';
import { cpuMicros, summarize } from './stats.ts';

const hrtime = process.hrtime.bigint;
const WARMUP_ITERATIONS = 1;

async function iteration(loader: ColdLoader, scenario: ColdLoadScenario, who: string): Promise<{ ns: number; cpuUs: number; response: Buffer }> {
  await loader.makeCold();
  const c0 = process.cpuUsage();
  const t0 = hrtime();
  const response = await loader.firstCommand(scenario.command);
  const t1 = hrtime();
  const cpuUs = cpuMicros(c0, process.cpuUsage());
  await loader.after();
  const rc = responseCodeOf(response);
  if (rc !== 0) throw new Error(`${who} answered the first command after a cold load with rc ${hex(rc)} (response ${response.toString('hex')})`);
  return { ns: Number(t1 - t0), cpuUs, response };
}

export async function measureColdLoad(scenario: ColdLoadScenario, bed: Bed, loader: ColdLoader, limits: OneShotLimits): Promise<Measurement> {
  try {
    await loader.prepare(scenario.seed);
    const start = hrtime();
    const deadline = start + BigInt(Math.round(limits.seconds * 1e9));
    let first: Buffer | undefined;
    for (let i = 0; i < WARMUP_ITERATIONS; i++) first ??= (await iteration(loader, scenario, bed.label)).response;

    const latenciesNs: number[] = [];
    let cpu = 0;
    for (let n = 1; n <= limits.iterations; n++) {
      if (n > 1 && hrtime() >= deadline) break;
      const r = await iteration(loader, scenario, bed.label);
      latenciesNs.push(r.ns);
      cpu += r.cpuUs;
    }
    const ops = latenciesNs.length;
    const seconds = latenciesNs.reduce((a, b) => a + b, 0) / 1e9;
    return {
      ...measured(scenario, bed, 1),
      ops,
      seconds,
      opsPerSec: ops / seconds,
      latencyUs: summarize(Float64Array.from(latenciesNs), 1),
      cpuUsPerOp: cpu / ops,
      processRssMB: mb(process.memoryUsage().rss),
      oneShot: {
        warmupIterations: WARMUP_ITERATIONS,
        maxIterations: limits.iterations,
        maxSeconds: limits.seconds,
        latenciesUs: latenciesNs.map((ns) => ns / 1000),
        cleanup: 'making the vTPM cold before each iteration, and closing the connection (swtpm: stopping the process) after it, not timed',
        wallSeconds: Number(hrtime() - start) / 1e9,
      },
      coldLoad: loader.covers,
      // No machine load figure: the windows are milliseconds (below /proc/stat's 10 ms ticks) and
      // servers start and stop inside them.
      firstResponse: first!.toString('hex'),
    };
  } finally {
    await loader.close();
  }
}
