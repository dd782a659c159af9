/**
 * The beds of one number of vTPMs N, one per selected path: N engines in process, N hypervisor
 * partitions, `vtpmd socket` (N = 1), one `vtpmd serve` with N VMs per durability mode, N
 * `swtpm socket` processes as libvirt runs them (one per vTPM), and the node-floor calibration
 * server (N = 1). A bed that cannot exist for N is reported with the reason.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Bed } from './bed.ts';
import { hypervisorBed } from './hypervisor-path.ts';
import { inProcessBed } from './in-process.ts';
import { progress } from './measurement.ts';
import { startNodeFloor, startSwtpm, startVtpmd, type Peer } from './peers.ts';
import { startServe, type Durability } from './serve-peer.ts';
import { socketBed } from './socket-bed.ts';
import { serveColdLoader, swtpmColdLoader } from './socket-cold.ts';

export const PATHS = ['in-process', 'hypervisor', 'vtpmd', 'vtpmd-serve', 'swtpm', 'node-floor'] as const;
export type PathName = (typeof PATHS)[number];
export const DEFAULT_PATHS: readonly PathName[] = ['in-process', 'hypervisor', 'vtpmd', 'vtpmd-serve', 'swtpm'];

export interface BedSkip {
  path: PathName;
  peer: string;
  vtpms: number;
  reason: string;
}

export interface BedOptions {
  vtpms: number;
  paths: ReadonlySet<PathName>;
  workDir: string;
  durabilities: readonly Durability[];
  /** swtpm on PATH, or undefined when it is not installed. */
  swtpm: string | undefined;
  cpuProfDir?: string;
  /** Canned responses for node-floor, per command code. */
  floorResponses?: () => Promise<ReadonlyMap<number, Buffer>>;
}

export interface BedSet {
  beds: Bed[];
  skipped: BedSkip[];
  /** Every server started, for the JSON. */
  servers: { name: string; version: string; label: string; argv: readonly string[] }[];
  stop(): Promise<void>;
}

function peerBed(peer: Peer, coldLoadReason: string): Bed {
  return socketBed({
    peer: peer.name,
    label: peer.label,
    endpoints: [{ host: peer.host, port: peer.dataPort }],
    pids: [peer.pid],
    coldLoader: () => coldLoadReason,
    logTail: () => peer.logTail(),
    stop: () => peer.stop(),
  });
}

export async function startBeds(opts: BedOptions): Promise<BedSet> {
  const n = opts.vtpms;
  const set: BedSet = {
    beds: [],
    skipped: [],
    servers: [],
    stop: async () => {
      for (const bed of set.beds) await bed.stop();
    },
  };
  const skip = (path: PathName, peer: string, reason: string): void => {
    progress(`${n} vTPM(s): no ${peer} — ${reason}`);
    set.skipped.push({ path, peer, vtpms: n, reason });
  };
  try {
    if (opts.paths.has('in-process')) set.beds.push(inProcessBed(n));
    if (opts.paths.has('hypervisor')) set.beds.push(await hypervisorBed(n, opts.workDir));
    if (opts.paths.has('vtpmd')) {
      if (n === 1) {
        progress('starting vtpmd socket');
        const peer = await startVtpmd({ workDir: opts.workDir, ...(opts.cpuProfDir ? { cpuProfDir: opts.cpuProfDir } : {}) });
        set.servers.push(peer);
        set.beds.push(peerBed(peer, '`vtpmd socket` serves one TPM for the life of its process and has no PSS to load from; see vtpmd-serve'));
      } else {
        skip('vtpmd', 'vtpmd', '`vtpmd socket` serves one TPM per process; N vTPMs on vtpmd are the vtpmd-serve rows');
      }
    }
    if (opts.paths.has('vtpmd-serve')) {
      for (const durability of opts.durabilities) {
        const peer = durability === 'per-command' ? 'vtpmd-serve' : 'vtpmd-serve-batched';
        progress(`starting vtpmd serve with ${n} VM(s), durability ${durability}`);
        const daemon = await startServe({
          stateDir: join(opts.workDir, `serve-${n}-${durability}`),
          vms: n,
          durability,
          onProgress: progress,
          ...(opts.cpuProfDir ? { cpuProfDir: opts.cpuProfDir } : {}),
        });
        const label = `socket vtpmd serve ${daemon.version}${durability === 'batched' ? ' (batched)' : ''}`;
        set.servers.push({ name: peer, version: daemon.version, label, argv: daemon.argv });
        set.beds.push(
          socketBed({
            peer,
            label,
            endpoints: daemon.endpoints,
            pids: [daemon.pid],
            coldLoader: () => Promise.resolve(serveColdLoader(daemon)),
            logTail: () => daemon.logTail(),
            stop: () => daemon.stop(),
          }),
        );
      }
    }
    if (opts.paths.has('swtpm')) {
      const binary = opts.swtpm;
      if (binary === undefined) {
        skip('swtpm', 'swtpm', "swtpm is not installed (no swtpm on PATH); install Debian's swtpm package to get the reference rows and the ratios");
      } else {
        progress(`starting ${n} swtpm process(es)`);
        const peers: Peer[] = [];
        try {
          for (let i = 0; i < n; i++) {
            const dir = join(opts.workDir, `swtpm-${n}-${i}`);
            mkdirSync(dir, { recursive: true });
            peers.push(await startSwtpm(binary, dir));
          }
        } catch (err) {
          await Promise.all(peers.map((p) => p.stop()));
          throw err;
        }
        const first = peers[0]!;
        set.servers.push(first);
        set.beds.push(
          socketBed({
            peer: 'swtpm',
            label: first.label,
            endpoints: peers.map((p) => ({ host: p.host, port: p.dataPort })),
            pids: peers.map((p) => p.pid),
            coldLoader: () => Promise.resolve(swtpmColdLoader(binary, join(opts.workDir, `swtpm-${n}-cold`))),
            logTail: () => first.logTail(),
            stop: async () => {
              await Promise.all(peers.map((p) => p.stop()));
            },
          }),
        );
      }
    }
    if (opts.paths.has('node-floor')) {
      if (n === 1 && opts.floorResponses) {
        const peer = await startNodeFloor(opts.workDir, await opts.floorResponses());
        set.servers.push(peer);
        set.beds.push(peerBed(peer, 'node-floor answers canned responses and has no TPM state to load'));
      } else {
        skip('node-floor', 'node-floor', 'the calibration floor is measured with one connection only');
      }
    }
    return set;
  } catch (err) {
    await set.stop();
    throw err;
  }
}
