/**
 * The in-process path: N Tpm2Engines with in-memory state in this process, served round robin
 * in a tight synchronous loop. Only every `sampleEvery`-th operation is timed (and the clock is
 * read once per batch for the deadline), so the timing itself barely touches throughput.
 */
import { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import type { Bed, ColdLoader, Drive, RunResult } from './bed.ts';
import { hex, responseCodeOf, startupClear } from './commands.ts';
import { makeExchange, type Exchange } from './exchange.ts';
import { SampleBuffer } from './stats.ts';

const hrtime = process.hrtime.bigint;

function check(response: Buffer, what: string): void {
  const rc = responseCodeOf(response);
  if (rc !== 0) throw new Error(`in-process engine answered ${what} with rc ${hex(rc)} (response ${response.toString('hex')})`);
}

/** A fresh engine after Startup(CLEAR), as the servers are started (`--flags startup-clear`). */
export function startedEngine(): Tpm2Engine {
  const engine = new Tpm2Engine();
  check(engine.execute(startupClear(), 0), 'Startup(CLEAR)');
  return engine;
}

/** The engine behind the same interface as a socket peer: rc-checked, one command at a time. */
export function engineExchange(engine: Tpm2Engine, resent: string[] = []): Exchange {
  return makeExchange(async (command) => engine.execute(command, 0), 'in-process engine', resent);
}

function loop(engines: readonly Tpm2Engine[], commands: readonly Buffer[], seconds: number, sampleEvery: number, samples: SampleBuffer | null): RunResult {
  const n = engines.length;
  const start = hrtime();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  const buf = samples ?? new SampleBuffer(16);
  let ops = 0;
  let now = start;
  let i = 0;
  while (now < deadline) {
    // The batch's first operation is timed; the rest run bare.
    const t0 = hrtime();
    let r = engines[i]!.execute(commands[i]!, 0);
    const t1 = hrtime();
    buf.push(Number(t1 - t0));
    if (r[6]! | r[7]! | r[8]! | r[9]!) check(r, 'the measured command');
    if (++i === n) i = 0;
    for (let k = 1; k < sampleEvery; k++) {
      r = engines[i]!.execute(commands[i]!, 0);
      if (r[6]! | r[7]! | r[8]! | r[9]!) check(r, 'the measured command');
      if (++i === n) i = 0;
    }
    ops += sampleEvery;
    now = hrtime();
  }
  return { ops, elapsedNs: now - start };
}

/** A new engine resumed from a saved state, as the GVTPM manager restores a vTPM, then its first command. */
function inProcessColdLoader(): ColdLoader {
  let snapshot: Buffer | undefined;
  return {
    covers: 'new Tpm2Engine, resume(saved state), execute(first command)',
    prepare: async (seed) => {
      const engine = startedEngine();
      check(engine.execute(seed, 0), 'the seed command');
      snapshot = engine.snapshot();
    },
    makeCold: async () => undefined,
    firstCommand: async (command) => {
      const engine = new Tpm2Engine();
      engine.resume(snapshot!);
      return engine.execute(command, 0);
    },
    after: async () => undefined,
    close: async () => undefined,
  };
}

export function inProcessBed(vtpms: number): Bed {
  const engines = Array.from({ length: vtpms }, () => startedEngine());
  return {
    path: 'in-process',
    peer: 'vtpmd-engine',
    label: 'in-process (engine)',
    vtpms,
    pids: [],
    samplesEveryCall: false,
    open: async (): Promise<Drive> => {
      const resent: string[] = [];
      return {
        exchanges: engines.map((e) => engineExchange(e, resent)),
        resent,
        run: async (commands, seconds, sampleEvery, samples) => loop(engines, commands, seconds, sampleEvery, samples),
        close: async () => undefined,
      };
    },
    coldLoader: () => Promise.resolve(inProcessColdLoader()),
    logTail: () => '',
    stop: async () => undefined,
  };
}
