/** What one measurement (scenario × path × concurrency) produces, whatever the path. */
import type { LoadFigures } from './proc.ts';
import type { LatencySummary } from './stats.ts';

export interface ServerFigures {
  /** The server processes: one for vtpmd, one per vTPM for swtpm. */
  pids: number[];
  /** VmRSS after the measurement, summed over the processes, MB (10^6 bytes). */
  rssMB: number;
  /** VmHWM (peak RSS) after the measurement, summed over the processes, MB. */
  peakRssMB: number;
  /** Server CPU (user + system, all threads, from /proc/PID/stat, summed over the processes) per operation. */
  cpuUsPerOp: number;
}

/** vtpmd's figure ÷ swtpm's for the same scenario and number of vTPMs (socket paths). */
export interface VsSwtpm {
  /** ops/s ratio (one-shot and cold-load: swtpm's mean latency ÷ vtpmd's). */
  opsPerSec: number;
  p50: number;
  p99: number;
  /** Server CPU per operation. */
  serverCpuUsPerOp?: number;
  memoryPerVtpm?: number;
}

/** What every measurement says about what it measured: the scenario, and the bed it ran on. */
export function measured(scenario: { readonly id: string; readonly title: string }, bed: { readonly path: string; readonly peer: string; readonly label: string }, vtpms: number, concurrency = vtpms) {
  return { scenario: scenario.id, scenarioTitle: scenario.title, path: bed.path, peer: bed.peer, label: bed.label, vtpms, concurrency };
}

export interface Measurement {
  scenario: string;
  scenarioTitle: string;
  /** 'in-process', 'hypervisor' or 'swtpm-socket'. */
  path: string;
  /** Who answered: 'vtpmd-engine' in process and on the hypervisor path, or the server ('vtpmd', 'vtpmd-serve', 'swtpm'). */
  peer: string;
  /** What the table prints in the path column. */
  label: string;
  /** vTPMs measured together, each with one command in flight. */
  vtpms: number;
  /** Commands in flight at once (= vtpms). */
  concurrency: number;
  /** Operations measured (one-shot: measured iterations). */
  ops: number;
  /** Measured wall time, s (one-shot: the sum of the timed round trips, cleanup excluded). */
  seconds: number;
  opsPerSec: number;
  latencyUs: LatencySummary;
  /** CPU of the measuring process per operation (for socket paths: the client's). */
  cpuUsPerOp: number;
  /** The measuring process's RSS after the measurement, MB. */
  processRssMB: number;
  server?: ServerFigures;
  /** Server RSS ÷ vTPMs, MB (socket paths; for swtpm the processes' RSS summed). */
  memoryPerVtpmMB?: number;
  /** opsPerSec / swtpm's opsPerSec for the same scenario and number of vTPMs (socket paths). */
  ratioVsSwtpm?: number;
  vsSwtpm?: VsSwtpm;
  /** The measured command as sent on this path, hex (steady scenarios; it may carry a handle this peer returned). */
  commandHex?: string;
  /** What the scenario's setup produced that the command depends on, e.g. "key 0x80000000". */
  setupDetail?: string;
  /**
   * Commands sent again because the TPM answered TPM_RC_RETRY / TESTING / YIELDED outside the
   * measured loop (setup, the first measured command, one-shot iterations). Inside a timed
   * steady loop any rc but 0 fails the run.
   */
  resent?: string[];
  /** One-shot scenarios: how the iterations went (`ops` counts the measured ones). */
  oneShot?: OneShotFigures;
  /** Cold-load scenarios: what the timing covered on this path. */
  coldLoad?: string;
  /** The first response, hex, so peers can be compared byte for byte. */
  firstResponse: string;
  /** Machine CPU during the measurement: how much other work competed with it (Linux only). */
  load?: LoadFigures;
  /** ops/s of every round, when the run had several; the figures above are the median round's. */
  roundsOpsPerSec?: number[];
}

export interface OneShotFigures {
  /** Unmeasured iterations before the measured ones. */
  warmupIterations: number;
  /** The caps: stop after this many measured iterations, or once this many seconds have passed on the path. */
  maxIterations: number;
  maxSeconds: number;
  /** Every measured iteration's latency, µs, in order. */
  latenciesUs: number[];
  /** What ran outside the timing after each iteration (e.g. "FlushContext"). */
  cleanup: string;
  /** Wall time of the whole path including warm-up and cleanup, s. */
  wallSeconds: number;
}

export interface OneShotLimits {
  /** Measured iterations per path at most. */
  iterations: number;
  /** Seconds per path at most (warm-up and cleanup included); at least one iteration is measured. */
  seconds: number;
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
