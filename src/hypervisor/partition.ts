/**
 * A guest partition: its lifecycle, the CRB device(s) it sees, and the bounded input and output
 * queues between its trapped TPM accesses and its vTPM in the TPM partition.
 *
 * Capacity of the input queue counts queued commands plus places reserved by a CRB's cmdReady,
 * so a guest that was told "ready" can always START; when the queue is full, cmdReady stays
 * pending (see crb.ts) until the scheduler takes a command off the queue.
 *
 * A guest normally has one CRB, and the CRB protocol allows one outstanding command, so its
 * driver serializes its clients (Linux holds a mutex around each transmit). `channels` gives a
 * guest several CRB instances in front of the same vTPM and queues — one per vCPU that talks to
 * the TPM — which is what lets a single guest have several commands queued at once, and so fill
 * its queue.
 */
import type { TpmDevice } from '../tpm/device.ts';
import { CrbDevice, type CrbBackend, type CrbCommand, type CrbOptions } from './crb.ts';
import { HypervisorError } from './errors.ts';
import { BoundedQueue, type Withdrawable } from './queue.ts';
import type { Schedulable, Scheduler } from './scheduler.ts';

export type PartitionState = 'created' | 'running' | 'terminated';
export type VtpmPolicy = 'destroy' | 'keep';

export interface PartitionOptions {
  /** Input (and output) queue depth. Default 64. */
  queueDepth?: number;
  /** CRB instances the guest sees. Default 1. */
  channels?: number;
  crb?: CrbOptions;
  /**
   * Use the device's synchronous execute when it has one. Safe because the partition owns its
   * device: it never has two commands at it. Default true.
   */
  synchronous?: boolean;
}

export interface PartitionCounters {
  submitted: number;
  completed: number;
  withdrawn: number;
  /** Times a cmdReady or START had to wait for a place in the full input queue. */
  backpressured: number;
}

interface Completion extends Withdrawable {
  cmd: CrbCommand;
  result: Uint8Array | Error;
}

export class Partition implements Schedulable {
  readonly crbs: readonly CrbDevice[];
  readonly input: BoundedQueue<CrbCommand>;
  readonly output: BoundedQueue<Completion>;
  readonly counters: PartitionCounters = { submitted: 0, completed: 0, withdrawn: 0, backpressured: 0 };
  busy = false;
  inRing = false;

  #state: PartitionState = 'created';
  #reserved = 0;
  #placeWaiters: CrbDevice[] = [];
  #idle: (() => void)[] = [];
  readonly #sync: ((command: Uint8Array, locality: number) => Uint8Array) | undefined;

  constructor(
    readonly id: number,
    readonly name: string,
    readonly device: TpmDevice,
    readonly policy: VtpmPolicy,
    private readonly scheduler: Scheduler,
    opts: PartitionOptions = {},
  ) {
    const depth = opts.queueDepth ?? 64;
    const channels = opts.channels ?? 1;
    if (!Number.isInteger(depth) || depth < 1) throw new HypervisorError('bad-config', `queueDepth must be a positive integer, not ${depth}`);
    if (!Number.isInteger(channels) || channels < 1 || channels > 64) throw new HypervisorError('bad-config', `channels must be an integer from 1 to 64, not ${channels}`);
    this.input = new BoundedQueue(depth);
    this.output = new BoundedQueue(depth);
    const backend = this.#backend();
    this.crbs = Array.from({ length: channels }, () => new CrbDevice(backend, opts.crb));
    const sync = opts.synchronous !== false ? device.executeSync : undefined;
    this.#sync = sync ? sync.bind(device) : undefined;
  }

  get state(): PartitionState {
    return this.#state;
  }

  get pending(): number {
    return this.input.length;
  }

  /** Reserved places plus queued commands: what counts against the queue depth. */
  get occupancy(): number {
    return this.input.length + this.#reserved;
  }

  /** Platform reset of the guest: _TPM_Init reaches its vTPM. */
  /**
   * Runs the guest. `reset: false` is for a guest that kept running while the hypervisor
   * process restarted: its vTPM continues without a _TPM_Init.
   */
  async start(opts: { reset?: boolean } = {}): Promise<void> {
    if (this.#state !== 'created') throw new HypervisorError('bad-state', `partition '${this.name}' is ${this.#state}; only a created partition can start`);
    if (opts.reset !== false) await this.device.powerOn();
    this.#state = 'running';
  }

  /**
   * Stops the guest: its CRBs go dark, queued commands are dropped, and the command at the vTPM
   * (if any) is allowed to finish so the vTPM's state is consistent before the policy applies.
   */
  async terminate(): Promise<void> {
    if (this.#state === 'terminated') return;
    this.#state = 'terminated';
    for (const crb of this.crbs) crb.shutdown();
    this.counters.withdrawn += this.input.drain().length;
    this.#placeWaiters = [];
    if (this.busy) await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  /** Throws unless the guest may touch its devices. */
  checkRunning(): void {
    if (this.#state !== 'running') throw new HypervisorError(this.#state === 'terminated' ? 'terminated' : 'bad-state', `partition '${this.name}' is ${this.#state}`);
  }

  next(): CrbCommand | undefined {
    const cmd = this.input.shift();
    if (cmd) this.#admit();
    return cmd;
  }

  run(cmd: CrbCommand): Uint8Array | Promise<Uint8Array> {
    return this.#sync ? this.#sync(cmd.command, cmd.locality) : this.device.execute(cmd.command, cmd.locality);
  }

  deliver(cmd: CrbCommand, result: Uint8Array | Error): void {
    this.counters.completed++;
    if (this.#state === 'terminated') {
      for (const w of this.#idle.splice(0)) w();
      return;
    }
    this.output.push({ cmd, result, withdrawn: false });
    // The hypervisor completes guest accesses as soon as answers arrive; the output queue keeps
    // them in order should a CRB ever answer later than the vTPM.
    for (let c = this.output.shift(); c; c = this.output.shift()) c.cmd.crb.complete(c.cmd, c.result);
  }

  #admit(): void {
    while (this.#placeWaiters.length > 0 && this.occupancy < this.input.capacity) {
      this.#reserved++;
      this.#placeWaiters.shift()!.placeGranted();
    }
  }

  #backend(): CrbBackend {
    const device = this.device;
    return {
      reserve: () => {
        if (this.#state !== 'running' || this.occupancy >= this.input.capacity) return false;
        this.#reserved++;
        return true;
      },
      release: () => {
        this.#reserved--;
        this.#admit();
      },
      awaitPlace: (crb) => {
        this.counters.backpressured++;
        this.#placeWaiters.push(crb);
      },
      stopAwaitingPlace: (crb) => {
        const i = this.#placeWaiters.indexOf(crb);
        if (i >= 0) this.#placeWaiters.splice(i, 1);
      },
      submit: (cmd) => {
        this.#reserved--;
        this.input.push(cmd);
        this.counters.submitted++;
        this.scheduler.notify(this);
      },
      withdraw: (cmd) => {
        if (!this.input.withdraw(cmd)) return false;
        this.counters.withdrawn++;
        this.#admit();
        return true;
      },
      get established() {
        return device.established;
      },
      resetEstablished: (locality) => device.resetEstablished(locality),
      get maxCommandSize() {
        return device.maxCommandSize;
      },
    };
  }
}
