/**
 * The socket path: the swtpm data channel of a server running in another process, one
 * connection, one command in flight. Client CPU comes from process.cpuUsage(); the server's CPU
 * and memory from /proc.
 */
import { DataChannelClient } from './data-client.ts';
import { mb, type Measurement, type Timing } from './measurement.ts';
import type { Peer } from './peers.ts';
import { cpuMicrosOf, loadBetween, machineCpu, memoryOf } from './proc.ts';
import { makeExchange, type Exchange, type SteadyScenario } from './scenarios.ts';
import { SampleBuffer, cpuMicros, summarize } from './stats.ts';

/** Timing a ~30 µs round trip costs ~0.1 µs, so every operation is timed. */
export const SOCKET_SAMPLE_EVERY = 1;

/** The client behind the Exchange interface (resends on TPM_RC_RETRY and the like, logged in `resent`). */
export function clientExchange(client: DataChannelClient, peer: Peer, resent: string[]): Exchange {
  return makeExchange((command) => client.exchange(command), peer.name, resent);
}

export async function measureSocket(scenario: SteadyScenario, peer: Peer, timing: Timing): Promise<Measurement> {
  const client = await DataChannelClient.connect(peer.host, peer.dataPort, peer.name);
  try {
    const resent: string[] = [];
    const exchange = clientExchange(client, peer, resent);
    const prepared = await scenario.prepare(exchange);
    const command = prepared.command;
    const first = await exchange(command, 'the measured command (first, before warm-up)');

    if (timing.warmup > 0) await client.run(command, timing.warmup, SOCKET_SAMPLE_EVERY, null);

    const samples = new SampleBuffer(1 << 18);
    const machine0 = machineCpu();
    const serverCpu0 = cpuMicrosOf(peer.pid);
    const cpu0 = process.cpuUsage();
    const result = await client.run(command, timing.duration, SOCKET_SAMPLE_EVERY, samples);
    const cpu = cpuMicros(cpu0, process.cpuUsage());
    const serverCpu1 = cpuMicrosOf(peer.pid);
    const machine1 = machineCpu();
    const memory = memoryOf(peer.pid);
    for (const cmd of prepared.teardown) await exchange(cmd, 'a teardown command');
    if (serverCpu0 === undefined || serverCpu1 === undefined || memory === undefined) {
      throw new Error(`${peer.name} (pid ${peer.pid}) is gone from /proc after the measurement`);
    }
    const seconds = Number(result.elapsedNs) / 1e9;
    const load = loadBetween(machine0, machine1, cpu + (serverCpu1 - serverCpu0));
    return {
      scenario: scenario.id,
      scenarioTitle: scenario.title,
      path: 'swtpm-socket',
      peer: peer.name,
      label: peer.label,
      concurrency: 1,
      ops: result.ops,
      seconds,
      opsPerSec: result.ops / seconds,
      latencyUs: summarize(samples.values(), SOCKET_SAMPLE_EVERY),
      cpuUsPerOp: cpu / result.ops,
      processRssMB: mb(process.memoryUsage().rss),
      server: {
        pid: peer.pid,
        rssMB: mb(memory.rss),
        peakRssMB: mb(memory.hwm),
        cpuUsPerOp: (serverCpu1 - serverCpu0) / result.ops,
      },
      commandHex: command.toString('hex'),
      ...(prepared.detail ? { setupDetail: prepared.detail } : {}),
      ...(resent.length > 0 ? { resent } : {}),
      firstResponse: first.toString('hex'),
      ...(load ? { load } : {}),
    };
  } finally {
    await client.close();
  }
}
