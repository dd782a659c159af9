/**
 * One-shot scenarios (CreatePrimary RSA-2048): commands that take milliseconds to seconds, so a
 * fixed-time loop would get a handful of operations or none. Each path gets one unmeasured
 * iteration (warm-up, and the response kept for the JSON), then up to `iterations` measured ones,
 * stopping early once `seconds` have passed on the path. Each iteration sends a different
 * command (a new `unique`), times its round trip alone, then sends the scenario's cleanup command
 * (FlushContext of the new handle) outside the timing. Every rc is checked.
 *
 * ops/s is measured iterations ÷ the sum of their timed latencies (cleanup excluded), i.e.
 * 1 / mean latency; the median is the p50 column.
 */
import type { Bed } from './bed.ts';
import { mb, measured, type Measurement, type OneShotLimits } from './measurement.ts';
import { loadBetween, machineCpu } from './proc.ts';
import type { OneShotScenario } from './scenarios.ts';
import { serverCpu, serverMemory } from './steady.ts';
import { cpuMicros, summarize } from './stats.ts';

const hrtime = process.hrtime.bigint;
const WARMUP_ITERATIONS = 1;

/** One-shot scenarios use the bed's first vTPM. */
export async function measureOneShot(scenario: OneShotScenario, bed: Bed, limits: OneShotLimits, series: string): Promise<Measurement> {
  const drive = await bed.open();
  try {
    const exchange = drive.exchanges[0]!;
    const pids = bed.pids.length > 0 ? bed.pids : undefined;
    const start = hrtime();
    const deadline = start + BigInt(Math.round(limits.seconds * 1e9));
    const cleanupName = 'FlushContext';

    let first: Buffer | undefined;
    for (let i = 0; i < WARMUP_ITERATIONS; i++) {
      const response = await exchange(scenario.command(series, i), `${scenario.title} (warm-up)`);
      first ??= response;
      await exchange(scenario.cleanup(response), `${cleanupName} after the warm-up`);
    }

    const latenciesNs: number[] = [];
    let clientCpu = 0;
    let serverUs = 0;
    const machine0 = machineCpu();
    const clientAll0 = process.cpuUsage();
    const serverAll0 = pids && serverCpu(pids);
    for (let n = 1; n <= limits.iterations; n++) {
      if (n > 1 && hrtime() >= deadline) break;
      const command = scenario.command(series, WARMUP_ITERATIONS + n - 1);
      const s0 = pids ? serverCpu(pids) ?? NaN : 0;
      const c0 = process.cpuUsage();
      const t0 = hrtime();
      const response = await exchange(command, `${scenario.title} (iteration ${n})`);
      const t1 = hrtime();
      clientCpu += cpuMicros(c0, process.cpuUsage());
      serverUs += (pids ? serverCpu(pids) ?? NaN : 0) - s0;
      latenciesNs.push(Number(t1 - t0));
      await exchange(scenario.cleanup(response), `${cleanupName} after iteration ${n}`);
    }
    const clientAll = cpuMicros(clientAll0, process.cpuUsage());
    const serverAll1 = pids && serverCpu(pids);
    const load = loadBetween(machine0, machineCpu(), clientAll + (serverAll1 ?? 0) - (serverAll0 ?? 0));
    const wallSeconds = Number(hrtime() - start) / 1e9;

    const ops = latenciesNs.length;
    const seconds = latenciesNs.reduce((a, b) => a + b, 0) / 1e9;
    let server: Measurement['server'];
    if (pids) {
      const memory = serverMemory(pids);
      if (memory === undefined || Number.isNaN(serverUs)) throw new Error(`a ${bed.peer} process (pids ${pids.join(', ')}) is gone from /proc after the measurement`);
      server = { pids: [...pids], rssMB: mb(memory.rss), peakRssMB: mb(memory.hwm), cpuUsPerOp: serverUs / ops };
    }
    return {
      ...measured(scenario, bed, bed.vtpms, 1),
      ops,
      seconds,
      opsPerSec: ops / seconds,
      latencyUs: summarize(Float64Array.from(latenciesNs), 1),
      cpuUsPerOp: clientCpu / ops,
      processRssMB: mb(process.memoryUsage().rss),
      ...(server ? { server, memoryPerVtpmMB: server.rssMB / bed.vtpms } : {}),
      oneShot: {
        warmupIterations: WARMUP_ITERATIONS,
        maxIterations: limits.iterations,
        maxSeconds: limits.seconds,
        latenciesUs: latenciesNs.map((ns) => ns / 1000),
        cleanup: `${cleanupName} of the returned handle after each iteration, not timed`,
        wallSeconds,
      },
      ...(drive.resent.length > 0 ? { resent: [...drive.resent] } : {}),
      firstResponse: first!.toString('hex'),
      ...(load ? { load } : {}),
    };
  } finally {
    await drive.close();
  }
}
