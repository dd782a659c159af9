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
import { DataChannelClient } from './data-client.ts';
import { engineExchange, startedEngine } from './in-process.ts';
import { mb, type Measurement, type OneShotLimits } from './measurement.ts';
import type { Peer } from './peers.ts';
import { cpuMicrosOf, loadBetween, machineCpu, memoryOf } from './proc.ts';
import { clientExchange } from './socket.ts';
import type { Exchange, OneShotScenario } from './scenarios.ts';
import { cpuMicros, summarize } from './stats.ts';

const hrtime = process.hrtime.bigint;
const WARMUP_ITERATIONS = 1;

interface Target {
  path: string;
  peer: string;
  label: string;
  /** The server process, for its CPU and memory; undefined in process. */
  pid: number | undefined;
  exchange: Exchange;
  /** Resends the exchange made (TPM_RC_RETRY and the like). */
  resent: string[];
}

async function run(scenario: OneShotScenario, target: Target, limits: OneShotLimits, series: string): Promise<Measurement> {
  const { exchange, pid } = target;
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
  let serverCpu = 0;
  const machine0 = machineCpu();
  const clientAll0 = process.cpuUsage();
  const serverAll0 = pid === undefined ? undefined : cpuMicrosOf(pid);
  for (let n = 1; n <= limits.iterations; n++) {
    if (n > 1 && hrtime() >= deadline) break;
    const command = scenario.command(series, WARMUP_ITERATIONS + n - 1);
    const s0 = pid === undefined ? 0 : cpuMicrosOf(pid) ?? NaN;
    const c0 = process.cpuUsage();
    const t0 = hrtime();
    const response = await exchange(command, `${scenario.title} (iteration ${n})`);
    const t1 = hrtime();
    clientCpu += cpuMicros(c0, process.cpuUsage());
    serverCpu += (pid === undefined ? 0 : cpuMicrosOf(pid) ?? NaN) - s0;
    latenciesNs.push(Number(t1 - t0));
    await exchange(scenario.cleanup(response), `${cleanupName} after iteration ${n}`);
  }
  const clientAll = cpuMicros(clientAll0, process.cpuUsage());
  const serverAll1 = pid === undefined ? undefined : cpuMicrosOf(pid);
  const load = loadBetween(machine0, machineCpu(), clientAll + (serverAll1 ?? 0) - (serverAll0 ?? 0));
  const wallSeconds = Number(hrtime() - start) / 1e9;

  const ops = latenciesNs.length;
  const seconds = latenciesNs.reduce((a, b) => a + b, 0) / 1e9;
  let server: Measurement['server'];
  if (pid !== undefined) {
    const memory = memoryOf(pid);
    if (memory === undefined || Number.isNaN(serverCpu)) throw new Error(`${target.peer} (pid ${pid}) is gone from /proc after the measurement`);
    server = { pid, rssMB: mb(memory.rss), peakRssMB: mb(memory.hwm), cpuUsPerOp: serverCpu / ops };
  }
  return {
    scenario: scenario.id,
    scenarioTitle: scenario.title,
    path: target.path,
    peer: target.peer,
    label: target.label,
    concurrency: 1,
    ops,
    seconds,
    opsPerSec: ops / seconds,
    latencyUs: summarize(Float64Array.from(latenciesNs), 1),
    cpuUsPerOp: clientCpu / ops,
    processRssMB: mb(process.memoryUsage().rss),
    ...(server ? { server } : {}),
    oneShot: {
      warmupIterations: WARMUP_ITERATIONS,
      maxIterations: limits.iterations,
      maxSeconds: limits.seconds,
      latenciesUs: latenciesNs.map((ns) => ns / 1000),
      cleanup: `${cleanupName} of the returned handle after each iteration, not timed`,
      wallSeconds,
    },
    ...(target.resent.length > 0 ? { resent: target.resent } : {}),
    firstResponse: first!.toString('hex'),
    ...(load ? { load } : {}),
  };
}

/** A fresh engine (after Startup), as the in-process path of a steady scenario gets. */
export function measureOneShotInProcess(scenario: OneShotScenario, limits: OneShotLimits, series: string): Promise<Measurement> {
  const resent: string[] = [];
  const exchange = engineExchange(startedEngine(), resent);
  return run(scenario, { path: 'in-process', peer: 'vtpmd-engine', label: 'in-process (engine)', pid: undefined, exchange, resent }, limits, series);
}

export async function measureOneShotSocket(scenario: OneShotScenario, peer: Peer, limits: OneShotLimits, series: string): Promise<Measurement> {
  const client = await DataChannelClient.connect(peer.host, peer.dataPort, peer.name);
  try {
    const resent: string[] = [];
    const exchange = clientExchange(client, peer, resent);
    return await run(scenario, { path: 'swtpm-socket', peer: peer.name, label: peer.label, pid: peer.pid, exchange, resent }, limits, series);
  } finally {
    await client.close();
  }
}
