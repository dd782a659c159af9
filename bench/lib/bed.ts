/**
 * A bed: N vTPMs on one path, ready to be measured — N engines in process, N partitions of the
 * simulated hypervisor, or N swtpm-protocol endpoints of servers in other processes. Scenarios
 * are measured on a bed the same way whatever the path (steady.ts, one-shot.ts, cold-load.ts).
 */
import type { Exchange } from './exchange.ts';
import type { SampleBuffer } from './stats.ts';

export interface RunResult {
  ops: number;
  /**
   * The time `ops` took. With several vTPMs each stops at its first response after the deadline,
   * up to one round trip late; so this is ops ÷ the sum of each vTPM's own rate, which no tail
   * of slow last responses stretches.
   */
  elapsedNs: bigint;
}

/** Combines per-vTPM runs: their operations, and the time that makes ops/s the sum of their rates. */
export function combineRuns(runs: readonly RunResult[]): RunResult {
  let ops = 0;
  let rate = 0;
  for (const r of runs) {
    ops += r.ops;
    if (r.elapsedNs > 0n) rate += r.ops / Number(r.elapsedNs);
  }
  return { ops, elapsedNs: rate > 0 ? BigInt(Math.round(ops / rate)) : 0n };
}

/** The vTPMs of a bed as one measurement uses them (socket paths: connected for it, closed after). */
export interface Drive {
  /** One per vTPM, rc-checked, resending on TPM_RC_RETRY and the like (logged in `resent`). */
  readonly exchanges: readonly Exchange[];
  readonly resent: string[];
  /**
   * Sends commands[i] to vTPM i back to back, one command in flight per vTPM, for `seconds`;
   * every `sampleEvery`-th operation is timed into `samples` (when given). Fails on any rc but 0.
   */
  run(commands: readonly Buffer[], seconds: number, sampleEvery: number, samples: SampleBuffer | null): Promise<RunResult>;
  close(): Promise<void>;
}

/** How a path makes its vTPM cold and times the first command after (cold-load.ts drives it). */
export interface ColdLoader {
  /** Once: puts `seed` into the vTPM's state, so a reload has something to restore. */
  prepare(seed: Buffer): Promise<void>;
  /** Untimed: the vTPM leaves memory (or its process stops). */
  makeCold(): Promise<void>;
  /** Timed by the caller: whatever brings the vTPM back, then `command` and its response. */
  firstCommand(command: Buffer): Promise<Buffer>;
  /** Untimed, after each iteration. */
  after(): Promise<void>;
  /** What the timing covers, for the JSON. */
  readonly covers: string;
  close(): Promise<void>;
}

export interface Bed {
  /** 'in-process', 'hypervisor' or 'swtpm-socket'. */
  readonly path: string;
  /** 'vtpmd-engine', 'vtpmd', 'vtpmd-serve', 'vtpmd-serve-batched', 'swtpm', 'node-floor'. */
  readonly peer: string;
  readonly label: string;
  readonly vtpms: number;
  /** Server processes whose CPU and memory are the server's figures; empty in process. */
  readonly pids: readonly number[];
  /** In process every n-th operation is timed (the scenario says which n); elsewhere every one. */
  readonly samplesEveryCall: boolean;
  open(): Promise<Drive>;
  /** A loader for the cold-load scenario, or why this bed has none. */
  coldLoader(): Promise<ColdLoader> | string;
  /** The last lines the server logged, for error messages. */
  logTail(): string;
  stop(): Promise<void>;
}
