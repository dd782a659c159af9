/**
 * The simulated hypervisor's guest TPM path: in-process CRB trap → partition input queue →
 * scheduler → vTPM → output queue → CRB, driven by the guest driver's register sequence.
 *
 *   throughput  PCR_Extend SHA-256 ops/s aggregate across 1, 8, 64 partitions (one guest client
 *               each, in-memory Tpm2Device engines), next to the bare engine in the same run
 *               (`vtpmd bench --paths hypervisor` measures every scenario on this path), and
 *               the same path with a device that answers at once: what the guest driver, the CRB
 *               trap, the queues and the scheduler cost without any TPM work
 *   fairness    a victim partition's p99 latency while one other partition floods from 8
 *               concurrent clients (8 CRB channels), against the victim's p99 unloaded
 *
 *   node --import tsx bench/hypervisor.ts [--seconds 3] [--partitions 1,8,64] [--json]
 */
import { parseArgs } from 'node:util';
import { Hypervisor } from '../src/hypervisor/hypervisor.ts';
import type { TpmDevice } from '../src/tpm/device.ts';
import { Tpm2Device } from '../src/tpm/tpm2/device.ts';
import { Tpm2Engine } from '../src/tpm/tpm2/engine.ts';
import { startupClear } from './lib/commands.ts';
import { driveGuests, startPartitions } from './lib/hypervisor-path.ts';
import { describeMachine } from './lib/machine.ts';
import { pcrExtendSha256 } from './lib/scenarios.ts';
import { percentile } from './lib/stats.ts';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '3' },
    partitions: { type: 'string', default: '1,8,64' },
    json: { type: 'boolean', default: false },
  },
});
const seconds = Number(values.seconds);
const counts = values.partitions!.split(',').map(Number);
const log = (m: string) => process.stderr.write(`${m}\n`);
const extend = pcrExtendSha256().sampleCommand;

/** Ops/s of the bare engine, sequential, as the ceiling the hypervisor path is compared to. */
function bareEngine(): number {
  const d = new Tpm2Device(new Tpm2Engine());
  d.executeSync(startupClear(), 0);
  const warm = performance.now() + 300;
  while (performance.now() < warm) d.executeSync(extend, 0);
  let n = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 256; i++) d.executeSync(extend, 0);
    n += 256;
  }
  return n / ((performance.now() - t0) / 1000);
}

/** A TPM that does nothing: every command gets the same 10-byte success response at once. */
function answeringDevice(): TpmDevice {
  const ok = Buffer.from([0x80, 0x01, 0, 0, 0, 10, 0, 0, 0, 0]);
  return {
    family: 'tpm2',
    execute: async () => ok,
    executeSync: () => ok,
    powerOn: async () => undefined,
    powerOff: async () => undefined,
    powered: true,
    established: false,
    resetEstablished: () => true,
    maxCommandSize: 4096,
    flush: async () => undefined,
  };
}

async function throughput(n: number, floor = false): Promise<{ partitions: number; opsPerSecond: number }> {
  const hv = await Hypervisor.start();
  const names = Array.from({ length: n }, (_, i) => `vm-${i}`);
  if (floor) {
    for (const name of names) {
      await hv.createPartition(name, { device: answeringDevice() }, 'destroy');
      await hv.startPartition(name);
    }
  } else await startPartitions(hv, names);
  const guests = names.map((name) => hv.guest(name));
  const commands = guests.map(() => extend);
  await driveGuests(guests, commands, 0.5, 1, null);
  const r = await driveGuests(guests, commands, seconds, 1, null);
  await hv.stop();
  return { partitions: n, opsPerSecond: r.ops / (Number(r.elapsedNs) / 1e9) };
}

/** p99 (µs) of the victim's sequential PCR_Extends, optionally with a flooder running. */
async function victimP99(flood: boolean): Promise<{ p50: number; p99: number; samples: number; floodOps: number }> {
  const hv = await Hypervisor.start();
  await startPartitions(hv, ['victim']);
  await startPartitions(hv, ['flooder'], 8);
  let stop = false;
  let floodOps = 0;
  const flooders = flood
    ? Array.from({ length: 8 }, async () => {
        const g = hv.guest('flooder');
        while (!stop) {
          await g.transmit(extend);
          floodOps++;
        }
      })
    : [];
  const g = hv.guest('victim');
  const samples: number[] = [];
  const warm = performance.now() + 300;
  while (performance.now() < warm) await g.transmit(extend);
  floodOps = 0;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    const t = performance.now();
    await g.transmit(extend);
    samples.push((performance.now() - t) * 1000);
  }
  stop = true;
  await Promise.all(flooders);
  await hv.stop();
  samples.sort((a, b) => a - b);
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), samples: samples.length, floodOps: floodOps / seconds };
}

const machine = describeMachine();
log(`bare engine PCR_Extend (${seconds} s)…`);
const engine = bareEngine();
const rows: { partitions: number; opsPerSecond: number }[] = [];
for (const n of counts) {
  log(`PCR_Extend through the guest CRB path, ${n} partition(s)…`);
  rows.push(await throughput(n));
}
const floorRows: { partitions: number; opsPerSecond: number }[] = [];
for (const n of counts) {
  log(`the guest CRB path alone (a device that answers at once), ${n} partition(s)…`);
  floorRows.push(await throughput(n, true));
}
log('victim latency, unloaded…');
const unloaded = await victimP99(false);
log('victim latency, one partition flooding from 8 clients…');
const loaded = await victimP99(true);
const result = {
  machine,
  seconds,
  bareEngineOpsPerSecond: engine,
  throughput: rows.map((r) => ({ ...r, shareOfBareEngine: r.opsPerSecond / engine })),
  pathAlone: floorRows,
  fairness: { unloaded, flooded: loaded, p99Ratio: loaded.p99 / unloaded.p99 },
};

if (values.json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
else {
  const k = (x: number) => `${(x / 1000).toFixed(1)} k/s`;
  const out = [
    `vtpmd hypervisor bench — ${machine.cpuModel}, ${machine.availableParallelism} CPUs, node ${machine.node}, load ${machine.loadAverageAtStart.toFixed(2)}`,
    '',
    `PCR_Extend SHA-256, guest CRB path (${seconds} s per row)`,
    `  bare engine, sequential            ${k(engine)}`,
    ...result.throughput.map((r) => `  ${String(r.partitions).padStart(3)} partition(s), 1 client each   ${k(r.opsPerSecond).padStart(10)}   (${(r.shareOfBareEngine * 100).toFixed(0)}% of bare engine)`),
    '',
    'the same path with a device that answers at once (no TPM work)',
    ...floorRows.map((r) => `  ${String(r.partitions).padStart(3)} partition(s), 1 client each   ${k(r.opsPerSecond).padStart(10)}`),
    '',
    'fairness: victim partition, sequential PCR_Extend',
    `  unloaded                 p50 ${unloaded.p50.toFixed(1)} µs   p99 ${unloaded.p99.toFixed(1)} µs   (${unloaded.samples} samples)`,
    `  flooder with 8 clients   p50 ${loaded.p50.toFixed(1)} µs   p99 ${loaded.p99.toFixed(1)} µs   (${loaded.samples} samples; flooder ${k(loaded.floodOps)})`,
    `  p99 ratio                ${result.fairness.p99Ratio.toFixed(2)}× (goal ≤ 3×)`,
  ];
  process.stdout.write(`${out.join('\n')}\n`);
}
