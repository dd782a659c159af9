/**
 * The simulated hypervisor. At start it reserves the TPM partition (id 0), which owns the vTPM
 * service — the GVTPM manager — and runs the scheduler that serves every guest partition's input
 * queue. Guest partitions (ids from 1) are created with a vTPM instantiated in the TPM partition,
 * run, and are terminated; termination destroys or keeps their vTPM as their policy says.
 */
import type { TpmDevice } from '../tpm/device.ts';
import { VtpmError, type GvtpmManager } from '../vtpm/manager.ts';
import type { ModelConfig } from '../vtpm/model-measurement.ts';
import { HypervisorError } from './errors.ts';
import { GuestDriver, type GuestDriverOptions } from './guest.ts';
import { Partition, type PartitionCounters, type PartitionOptions, type PartitionState, type VtpmPolicy } from './partition.ts';
import { Scheduler, type SchedulerOptions } from './scheduler.ts';

/** Where a partition's TPM comes from: a device the caller owns, or a vTPM of the GVTPM manager. */
export type PartitionSource =
  | { device: TpmDevice }
  | { vtpm: { name: string; manager?: GvtpmManager; config?: Partial<ModelConfig> } };

export interface HypervisorOptions {
  /** The vTPM service the TPM partition owns; needed for `{ vtpm }` partitions that name none. */
  manager?: GvtpmManager;
  scheduler?: SchedulerOptions;
  /** Defaults for every partition, overridable per partition. */
  partitionDefaults?: PartitionOptions;
  guest?: GuestDriverOptions;
}

/** The reserved partition hosting the vTPMs. */
export interface TpmPartition {
  readonly id: 0;
  readonly name: 'tpm';
  readonly manager: GvtpmManager | undefined;
  /** Guest partitions whose vTPM it currently hosts. */
  readonly hosted: ReadonlySet<string>;
}

export interface PartitionInfo {
  id: number;
  name: string;
  state: PartitionState;
  policy: VtpmPolicy;
  /** The manager's VM name when the TPM is a managed vTPM. */
  vtpm: string | undefined;
  channels: number;
  queueDepth: number;
  queued: number;
  counters: PartitionCounters;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

interface Entry {
  partition: Partition;
  vtpm: { name: string; manager: GvtpmManager } | undefined;
  guest: GuestDriver;
}

export class Hypervisor {
  readonly scheduler: Scheduler;
  readonly tpmPartition: TpmPartition;
  readonly #hosted = new Set<string>();
  readonly #entries = new Map<string, Entry>();
  readonly #creating = new Set<string>();
  readonly #opts: HypervisorOptions;
  #nextId = 1;
  #running = true;

  private constructor(opts: HypervisorOptions) {
    this.#opts = opts;
    this.scheduler = new Scheduler(opts.scheduler);
    this.tpmPartition = { id: 0, name: 'tpm', manager: opts.manager, hosted: this.#hosted };
  }

  /** Boots the hypervisor, reserving the TPM partition before any guest exists. */
  static async start(opts: HypervisorOptions = {}): Promise<Hypervisor> {
    return new Hypervisor(opts);
  }

  /** Creates a partition and instantiates its vTPM in the TPM partition; it starts `created`. */
  async createPartition(name: string, source: PartitionSource, policy: VtpmPolicy = 'destroy', opts: PartitionOptions = {}): Promise<PartitionInfo> {
    this.#checkStarted();
    if (!NAME.test(name)) throw new HypervisorError('bad-config', `partition name '${name}' is invalid: use 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
    if (policy !== 'destroy' && policy !== 'keep') throw new HypervisorError('bad-config', `policy must be 'destroy' or 'keep', not '${String(policy)}'`);
    const existing = this.#entries.get(name);
    if (this.#creating.has(name) || (existing && existing.partition.state !== 'terminated')) throw new HypervisorError('duplicate-partition', `a partition named '${name}' exists; terminate it first`);
    this.#creating.add(name);
    try {
      let device: TpmDevice;
      let vtpm: Entry['vtpm'];
      if ('device' in source) device = source.device;
      else {
        const manager = source.vtpm.manager ?? this.#opts.manager;
        if (!manager) throw new HypervisorError('bad-config', `partition '${name}' asks for a vTPM but neither it nor the hypervisor names a GVTPM manager`);
        vtpm = { name: source.vtpm.name, manager };
        if (!(await vtpmExists(manager, vtpm.name))) await manager.create(vtpm.name, source.vtpm.config);
        device = await manager.device(vtpm.name);
      }
      const partition = new Partition(this.#nextId++, name, device, policy, this.scheduler, { ...this.#opts.partitionDefaults, ...opts });
      const guest = new GuestDriver(partition.crbs, () => partition.checkRunning(), this.#opts.guest);
      this.#entries.set(name, { partition, vtpm, guest });
      this.#hosted.add(name);
      return info(this.#entries.get(name)!);
    } finally {
      this.#creating.delete(name);
    }
  }

  /** Runs the partition: its vTPM sees a platform reset (_TPM_Init) unless `reset` is false. */
  async startPartition(name: string, opts: { reset?: boolean } = {}): Promise<PartitionInfo> {
    const e = this.#entry(name);
    await e.partition.start(opts);
    return info(e);
  }

  /** Stops the partition; its vTPM is then destroyed or kept (flushed, unloaded) per its policy. */
  async terminate(name: string): Promise<PartitionInfo> {
    const e = this.#entry(name);
    if (e.partition.state === 'terminated') throw new HypervisorError('bad-state', `partition '${name}' is already terminated`);
    await e.partition.terminate();
    this.#hosted.delete(name);
    const { device, policy } = e.partition;
    if (e.vtpm) {
      if (policy === 'destroy') await e.vtpm.manager.destroy(e.vtpm.name);
      else await e.vtpm.manager.unload(e.vtpm.name);
    } else if (policy === 'destroy') await device.powerOff();
    else await device.flush();
    return info(e);
  }

  list(): PartitionInfo[] {
    return [...this.#entries.values()].map(info).sort((a, b) => a.id - b.id);
  }

  get(name: string): PartitionInfo {
    return info(this.#entry(name));
  }

  /** The partition itself (queues, CRBs, counters), for the hypervisor's own tooling and tests. */
  partition(name: string): Partition {
    return this.#entry(name).partition;
  }

  /** The guest's TPM driver: raw MMIO, or whole commands through the CRB register sequence. */
  guest(name: string): GuestDriver {
    return this.#entry(name).guest;
  }

  /** Terminates every running partition (each per its policy) and stops accepting new ones. */
  async stop(): Promise<void> {
    this.#running = false;
    for (const e of this.#entries.values()) if (e.partition.state !== 'terminated') await this.terminate(e.partition.name);
  }

  #entry(name: string): Entry {
    const e = this.#entries.get(name);
    if (!e) throw new HypervisorError('unknown-partition', `no partition named '${name}'`);
    return e;
  }

  #checkStarted(): void {
    if (!this.#running) throw new HypervisorError('not-started', 'the hypervisor is stopped');
  }
}

async function vtpmExists(manager: GvtpmManager, name: string): Promise<boolean> {
  try {
    await manager.get(name);
    return true;
  } catch (e) {
    if (e instanceof VtpmError && e.code === 'unknown-vm') return false;
    throw e;
  }
}

function info(e: Entry): PartitionInfo {
  const p = e.partition;
  return {
    id: p.id,
    name: p.name,
    state: p.state,
    policy: p.policy,
    vtpm: e.vtpm?.name,
    channels: p.crbs.length,
    queueDepth: p.input.capacity,
    queued: p.input.length,
    counters: { ...p.counters },
  };
}
