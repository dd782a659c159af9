/** What one measurement (scenario × path × concurrency) produces, whatever the path. */
import type { LoadFigures } from './proc.ts';
import type { LatencySummary } from './stats.ts';

export interface ServerFigures {
  pid: number;
  /** VmRSS after the measurement, MB (10^6 bytes). */
  rssMB: number;
  /** VmHWM (peak RSS) after the measurement, MB. */
  peakRssMB: number;
  /** Server process CPU (user + system, all threads, from /proc/PID/stat) per operation. */
  cpuUsPerOp: number;
}

export interface Measurement {
  scenario: string;
  scenarioTitle: string;
  /** 'in-process' or 'swtpm-socket'. */
  path: string;
  /** Who answered: 'vtpmd-engine' in process, or the server peer ('vtpmd', 'swtpm'). */
  peer: string;
  /** What the table prints in the path column. */
  label: string;
  /** Commands in flight at once. */
  concurrency: number;
  ops: number;
  seconds: number;
  opsPerSec: number;
  latencyUs: LatencySummary;
  /** CPU of the measuring process per operation (for socket paths: the client's). */
  cpuUsPerOp: number;
  /** The measuring process's RSS after the measurement, MB. */
  processRssMB: number;
  server?: ServerFigures;
  /** opsPerSec / swtpm's opsPerSec for the same scenario and concurrency (socket paths). */
  ratioVsSwtpm?: number;
  /** The first response, hex, so peers can be compared byte for byte. */
  firstResponse: string;
  /** Machine CPU during the measurement: how much other work competed with it (Linux only). */
  load?: LoadFigures;
  /** ops/s of every round, when the run had several; the figures above are the median round's. */
  roundsOpsPerSec?: number[];
}

export interface Timing {
  /** Seconds of discarded warm-up before each measurement. */
  warmup: number;
  /** Seconds measured. */
  duration: number;
}

/** Progress goes to stderr, so stdout stays the table or the JSON. */
export function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

export function mb(bytes: number): number {
  return bytes / 1e6;
}
