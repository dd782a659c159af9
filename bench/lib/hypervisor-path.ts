/**
 * The simulated hypervisor's guest TPM path, in this process: the guest's CRB driver (the
 * register sequence Linux's tpm_crb follows) → partition input queue → scheduler → vTPM →
 * output queue → CRB. N partitions, one guest client each, every vTPM an in-memory engine.
 *
 * Its cold load runs the host stack `vtpmd serve` runs (chip, PSS, GVTPM manager) in process:
 * a partition whose vTPM the manager unloaded reloads it from the PSS on the guest's next command.
 */
import { mkdtempSync } from 'node:fs';
import { join } from 'node:path';
import { Host } from '../../src/daemon/host.ts';
import { asBuffer } from '../../src/tpm/wire/buffer.ts';
import { Hypervisor } from '../../src/hypervisor/hypervisor.ts';
import type { GuestDriver } from '../../src/hypervisor/guest.ts';
import { Tpm2Device } from '../../src/tpm/tpm2/device.ts';
import { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { combineRuns, type Bed, type ColdLoader, type Drive, type RunResult } from './bed.ts';
import { hex, responseCodeOf, startupClear } from './commands.ts';
import { makeExchange } from './exchange.ts';
import type { SampleBuffer } from './stats.ts';

const hrtime = process.hrtime.bigint;

/** Creates and starts partitions with in-memory engines, each sent Startup(CLEAR) by its guest. */
export async function startPartitions(hv: Hypervisor, names: readonly string[], channels = 1): Promise<void> {
  for (const name of names) {
    await hv.createPartition(name, { device: new Tpm2Device(new Tpm2Engine()) }, 'destroy', { channels });
    await hv.startPartition(name);
    const rc = responseCodeOf(asBuffer(await hv.guest(name).transmit(startupClear())));
    if (rc !== 0) throw new Error(`Startup on partition ${name} answered ${hex(rc)}`);
  }
}

/** Each guest sends its command back to back until the deadline; any rc but 0 fails the run. */
export async function driveGuests(
  guests: readonly GuestDriver[],
  commands: readonly Buffer[],
  seconds: number,
  sampleEvery: number,
  samples: SampleBuffer | null,
): Promise<RunResult> {
  const start = hrtime();
  const deadline = start + BigInt(Math.round(seconds * 1e9));
  const runs = await Promise.all(
    guests.map(async (guest, i): Promise<RunResult> => {
      const command = commands[i]!;
      let ops = 0;
      let now = hrtime();
      while (now < deadline) {
        const t0 = now;
        const r = await guest.transmit(command);
        now = hrtime();
        if (samples && ops % sampleEvery === 0) samples.push(Number(now - t0));
        if (r[6]! | r[7]! | r[8]! | r[9]!) {
          throw new Error(`partition ${i} answered the measured command with rc ${hex(asBuffer(r).readUInt32BE(6))} after ${ops} successful ones`);
        }
        ops++;
      }
      return { ops, elapsedNs: now - start };
    }),
  );
  return combineRuns(runs);
}

/** One VM of the host stack behind a partition; `makeCold` has the manager unload its vTPM. */
async function hypervisorColdLoader(workDir: string): Promise<ColdLoader> {
  const stateDir = mkdtempSync(join(workDir, 'hypervisor-host-'));
  // idleUnloadMs 0: only the bench unloads, so every iteration is exactly one reload.
  const host = await Host.open({ stateDir, hostId: 'bench-host', idleUnloadMs: 0 });
  const hv = await Hypervisor.start({ manager: host.manager });
  const name = 'cold';
  const send = async (command: Buffer): Promise<Buffer> => asBuffer(await hv.guest(name).transmit(command));
  const exchange = makeExchange(send, 'hypervisor vTPM', []);
  return {
    covers: "the guest's CRB transmit of the first command to a partition whose vTPM the GVTPM manager unloaded: reload from the PSS, then the command",
    prepare: async (seed) => {
      await hv.createPartition(name, { vtpm: { name } }, 'keep');
      await hv.startPartition(name, { reset: true });
      await exchange(startupClear(), 'Startup(CLEAR)');
      await exchange(seed, 'the seed command');
    },
    makeCold: () => host.manager.unload(name),
    firstCommand: send,
    after: async () => undefined,
    close: async () => {
      await hv.stop();
      await host.close();
    },
  };
}

export async function hypervisorBed(vtpms: number, workDir: string): Promise<Bed> {
  const hv = await Hypervisor.start();
  const names = Array.from({ length: vtpms }, (_, i) => `vm-${i}`);
  await startPartitions(hv, names);
  const guests = names.map((n) => hv.guest(n));
  return {
    path: 'hypervisor',
    peer: 'vtpmd-engine',
    label: 'hypervisor CRB (engine)',
    vtpms,
    pids: [],
    samplesEveryCall: true,
    open: async (): Promise<Drive> => {
      const resent: string[] = [];
      return {
        exchanges: guests.map((g, i) => makeExchange(async (c) => asBuffer(await g.transmit(c)), `partition ${i}`, resent)),
        resent,
        run: (commands, seconds, sampleEvery, samples) => driveGuests(guests, commands, seconds, sampleEvery, samples),
        close: async () => undefined,
      };
    },
    coldLoader: () => hypervisorColdLoader(workDir),
    logTail: () => '',
    stop: () => hv.stop(),
  };
}
