/**
 * The in-process path: a Tpm2Engine with in-memory state, driven synchronously in a tight loop.
 * Only every `sampleEvery`-th operation is timed (and the clock is read once per batch for the
 * deadline), so the timing itself barely touches throughput.
 */
import { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { hex, makeExchange, responseCodeOf, startupClear, type Exchange, type SteadyScenario } from './scenarios.ts';
import { SampleBuffer, cpuMicros, summarize } from './stats.ts';
import { mb, type Measurement, type Timing } from './measurement.ts';
import { loadBetween, machineCpu } from './proc.ts';

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

interface LoopResult {
  ops: number;
  elapsedNs: bigint;
  samples: SampleBuffer;
}

function loop(engine: Tpm2Engine, command: Buffer, seconds: number, sampleEvery: number, samples: SampleBuffer | null): LoopResult {
  const start = hrtime();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  const buf = samples ?? new SampleBuffer(16);
  let ops = 0;
  let now = start;
  while (now < deadline) {
    // The batch's first operation is timed; the rest run bare.
    const t0 = hrtime();
    let r = engine.execute(command, 0);
    const t1 = hrtime();
    buf.push(Number(t1 - t0));
    if (r[6]! | r[7]! | r[8]! | r[9]!) check(r, 'the measured command');
    for (let i = 1; i < sampleEvery; i++) {
      r = engine.execute(command, 0);
      if (r[6]! | r[7]! | r[8]! | r[9]!) check(r, 'the measured command');
    }
    ops += sampleEvery;
    now = hrtime();
  }
  return { ops, elapsedNs: now - start, samples: buf };
}

export async function measureInProcess(scenario: SteadyScenario, timing: Timing): Promise<Measurement> {
  const engine = startedEngine();
  const resent: string[] = [];
  const exchange = engineExchange(engine, resent);
  const prepared = await scenario.prepare(exchange);
  const command = prepared.command;
  const first = await exchange(command, 'the measured command (first, before warm-up)');

  const sampleEvery = scenario.inProcessSampleEvery;
  if (timing.warmup > 0) loop(engine, command, timing.warmup, sampleEvery, null);

  const samples = new SampleBuffer();
  const machine0 = machineCpu();
  const cpu0 = process.cpuUsage();
  const result = loop(engine, command, timing.duration, sampleEvery, samples);
  const cpu = cpuMicros(cpu0, process.cpuUsage());
  const load = loadBetween(machine0, machineCpu(), cpu);
  for (const cmd of prepared.teardown) await exchange(cmd, 'a teardown command');
  const seconds = Number(result.elapsedNs) / 1e9;
  return {
    scenario: scenario.id,
    scenarioTitle: scenario.title,
    path: 'in-process',
    peer: 'vtpmd-engine',
    label: 'in-process (engine)',
    concurrency: 1,
    ops: result.ops,
    seconds,
    opsPerSec: result.ops / seconds,
    latencyUs: summarize(samples.values(), sampleEvery),
    cpuUsPerOp: cpu / result.ops,
    processRssMB: mb(process.memoryUsage().rss),
    commandHex: command.toString('hex'),
    ...(prepared.detail ? { setupDetail: prepared.detail } : {}),
    ...(resent.length > 0 ? { resent } : {}),
    firstResponse: first.toString('hex'),
    ...(load ? { load } : {}),
  };
}
