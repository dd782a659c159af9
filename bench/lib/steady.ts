/**
 * A steady scenario on a bed of N vTPMs: each vTPM is prepared (rc checked), gets its measured
 * command once, then all N send it back to back — one command in flight per vTPM — through a
 * warm-up and the measured time. CPU comes from process.cpuUsage() (the engine in process, the
 * client over a socket) and the servers' /proc figures.
 */
import type { Bed } from './bed.ts';
import { mapLimit } from './exchange.ts';
import { setUp } from './setup.ts';
import { mb, measured, type Measurement, type Timing } from './measurement.ts';
import { cpuMicrosOf, loadBetween, machineCpu, memoryOf } from './proc.ts';
import type { SteadyScenario } from './scenarios.ts';
import { SampleBuffer, cpuMicros, summarize } from './stats.ts';

/** Teardown commands in flight at once across the vTPMs. */
const TEARDOWN_PARALLEL = 8;

/** Summed CPU of the server processes, µs; undefined if one of them is gone. */
export function serverCpu(pids: readonly number[]): number | undefined {
  let sum = 0;
  for (const pid of pids) {
    const v = cpuMicrosOf(pid);
    if (v === undefined) return undefined;
    sum += v;
  }
  return sum;
}

/** Summed VmRSS and VmHWM of the server processes, bytes; undefined if one of them is gone. */
export function serverMemory(pids: readonly number[]): { rss: number; hwm: number } | undefined {
  let rss = 0;
  let hwm = 0;
  for (const pid of pids) {
    const m = memoryOf(pid);
    if (m === undefined) return undefined;
    rss += m.rss;
    hwm += m.hwm;
  }
  return { rss, hwm };
}

export async function measureSteady(bed: Bed, scenario: SteadyScenario, timing: Timing): Promise<Measurement> {
  const drive = await bed.open();
  try {
    const { exchanges, resent } = drive;
    const { prepared, firsts } = await setUp(exchanges, scenario);
    const commands = prepared.map((p) => p.command);

    const sampleEvery = bed.samplesEveryCall ? 1 : scenario.inProcessSampleEvery;
    if (timing.warmup > 0) await drive.run(commands, timing.warmup, sampleEvery, null);

    const samples = new SampleBuffer(1 << 16);
    const machine0 = machineCpu();
    const server0 = serverCpu(bed.pids);
    const cpu0 = process.cpuUsage();
    const result = await drive.run(commands, timing.duration, sampleEvery, samples);
    const cpu = cpuMicros(cpu0, process.cpuUsage());
    const server1 = serverCpu(bed.pids);
    const machine1 = machineCpu();
    const hasServer = bed.pids.length > 0;
    const memory = hasServer ? serverMemory(bed.pids) : undefined;
    await mapLimit(exchanges, TEARDOWN_PARALLEL, async (exchange, i) => {
      for (const cmd of prepared[i]!.teardown) await exchange(cmd, 'a teardown command');
    });
    if (hasServer && (server0 === undefined || server1 === undefined || memory === undefined)) {
      throw new Error(`a ${bed.peer} process (pids ${bed.pids.join(', ')}) is gone from /proc after the measurement`);
    }
    const serverUs = (server1 ?? 0) - (server0 ?? 0);
    const seconds = Number(result.elapsedNs) / 1e9;
    const load = loadBetween(machine0, machine1, cpu + serverUs);
    const detail = prepared[0]!.detail;
    return {
      ...measured(scenario, bed, bed.vtpms),
      ops: result.ops,
      seconds,
      opsPerSec: result.ops / seconds,
      latencyUs: summarize(samples.values(), sampleEvery),
      cpuUsPerOp: cpu / result.ops,
      processRssMB: mb(process.memoryUsage().rss),
      ...(memory
        ? {
            server: { pids: [...bed.pids], rssMB: mb(memory.rss), peakRssMB: mb(memory.hwm), cpuUsPerOp: serverUs / result.ops },
            memoryPerVtpmMB: mb(memory.rss) / bed.vtpms,
          }
        : {}),
      commandHex: commands[0]!.toString('hex'),
      ...(detail ? { setupDetail: detail } : {}),
      ...(resent.length > 0 ? { resent: [...resent] } : {}),
      firstResponse: firsts[0]!.toString('hex'),
      ...(load ? { load } : {}),
    };
  } finally {
    await drive.close();
  }
}
