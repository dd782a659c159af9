/**
 * The swtpm socket path: N data endpoints served by other processes (one `vtpmd socket`, one
 * `vtpmd serve` holding N VMs, or N `swtpm socket` processes). The same client drives them all:
 * one connection per vTPM, one command in flight on each, every round trip timed.
 */
import { combineRuns, type Bed, type ColdLoader, type Drive, type RunResult } from './bed.ts';
import { DataChannelClient } from './data-client.ts';
import { makeExchange, mapLimit } from './exchange.ts';
import type { Endpoint } from './serve-peer.ts';
import { SampleBuffer } from './stats.ts';

/** Connections opened at once: enough to be quick at 512 without a burst the servers' backlogs refuse. */
const CONNECT_PARALLEL = 32;

export interface SocketBedSpec {
  peer: string;
  label: string;
  endpoints: readonly Endpoint[];
  pids: readonly number[];
  /** A loader for the cold-load scenario, or why this server has none. */
  coldLoader: () => Promise<ColdLoader> | string;
  logTail: () => string;
  stop: () => Promise<void>;
}

async function runAll(clients: readonly DataChannelClient[], commands: readonly Buffer[], seconds: number, sampleEvery: number, samples: SampleBuffer | null): Promise<RunResult> {
  if (clients.length === 1) return clients[0]!.run(commands[0]!, seconds, sampleEvery, samples);
  const own = clients.map(() => (samples ? new SampleBuffer(1 << 10) : null));
  const results = await Promise.all(clients.map((c, i) => c.run(commands[i]!, seconds, sampleEvery, own[i]!)));
  if (samples) for (const buf of own) for (const v of buf!.values()) samples.push(v);
  return combineRuns(results);
}

export function socketBed(spec: SocketBedSpec): Bed {
  return {
    path: 'swtpm-socket',
    peer: spec.peer,
    label: spec.label,
    vtpms: spec.endpoints.length,
    pids: spec.pids,
    samplesEveryCall: true,
    open: async (): Promise<Drive> => {
      const clients: DataChannelClient[] = [];
      try {
        await mapLimit(spec.endpoints, CONNECT_PARALLEL, async (e, i) => {
          clients[i] = await DataChannelClient.connect(e.host, e.port, `${spec.peer} (port ${e.port})`);
        });
      } catch (err) {
        await Promise.all(clients.filter(Boolean).map((c) => c.close()));
        throw err;
      }
      const resent: string[] = [];
      return {
        exchanges: clients.map((c, i) => makeExchange((command) => c.exchange(command), `${spec.peer} (port ${spec.endpoints[i]!.port})`, resent)),
        resent,
        run: (commands, seconds, sampleEvery, samples) => runAll(clients, commands, seconds, sampleEvery, samples),
        close: async () => {
          await Promise.all(clients.map((c) => c.close()));
        },
      };
    },
    coldLoader: spec.coldLoader,
    logTail: spec.logTail,
    stop: spec.stop,
  };
}
