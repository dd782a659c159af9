/**
 * What every vTPM device model does whichever TPM it runs: one command at a time, and after each
 * command that changed what the vTPM must remember, its state handed to `persist` before the
 * response is released — so a response the guest saw is never lost to a crash of the host
 * process. The TPM-specific parts (the engine, which commands change volatile state, how an
 * unpowered TPM answers) come from the subclass.
 */
import type { TpmDevice } from '../tpm/device.ts';
import { SerialQueue } from '../tpm/serial-queue.ts';
import type { StateStore } from '../tpm/tpm2/state/store.ts';
import type { StateChange } from '../tpm/state-delta.ts';

/** Makes the vTPM's state durable — a whole snapshot, or a change to the last one — and resolves when it is. */
export type Persist = (state: Buffer | StateChange) => Promise<void>;

/** The engine as a model drives it. */
export interface ModelEngine {
  readonly maxCommandSize: number;
  powerOn(): void;
  powerOff(): void;
  snapshot(): Buffer;
  /** The state as a change to the one last handed over, where the engine can tell one (Tpm2Engine.handOver). */
  handOver?(): { readonly delta: Buffer } | { readonly image: Buffer };
}

/** Notes whether the engine wrote NV during a command (the engine's own NV goes into snapshots). */
export class DirtyFlagStore implements StateStore {
  dirty = false;
  load(): Buffer | undefined {
    return undefined;
  }
  save(): void {
    this.dirty = true;
  }
}

/**
 * An engine's state as its keeper gets it, one hand-over after another: a change to the last
 * where the engine can tell one (Tpm2Engine.handOver), else the whole snapshot; it remembers what
 * it handed over last, which the next change names as what it follows.
 */
export class StateHandOver {
  private handed: object | undefined;

  constructor(private readonly engine: Pick<ModelEngine, 'snapshot' | 'handOver'>) {}

  next(): Buffer | StateChange {
    const e = this.engine;
    const h = e.handOver?.() ?? { image: e.snapshot() };
    if ('image' in h || !this.handed) return (this.handed = 'image' in h ? h.image : e.snapshot());
    const change: StateChange = { after: this.handed, id: {}, delta: h.delta, image: () => e.snapshot() };
    this.handed = change.id;
    return change;
  }

  /** The engine continues from `snapshot`: the next change follows it. */
  resumedFrom(snapshot: Buffer): void {
    this.handed = snapshot;
  }
}

export abstract class PersistedModel implements TpmDevice {
  abstract readonly family: 'tpm2' | 'tpm12';
  protected readonly store = new DirtyFlagStore();
  private readonly queue = new SerialQueue();
  private on = true;
  private handOvers: StateHandOver | undefined;

  constructor(protected readonly persist: Persist) {}

  protected abstract get engine(): ModelEngine;
  /** Runs one command on the engine. */
  protected abstract run(command: Uint8Array, locality: number): Buffer | Promise<Buffer>;
  /** Whether a command changed running state a snapshot holds, beyond what the store saw written. */
  protected abstract changedRunningState(command: Uint8Array, response: Buffer): boolean;
  /** What the TPM answers without power. */
  protected abstract unpoweredResponse(): Buffer;
  /**
   * Whether the TPM holds what a snapshot leaves out — loaded objects, sessions, saved-session
   * tracking — which leaving memory while the guest runs would lose.
   */
  abstract holdsLoadedState(): boolean;

  get powered(): boolean {
    return this.on;
  }

  get established(): boolean {
    return false;
  }

  resetEstablished(locality: number): boolean {
    return locality >= 3;
  }

  get maxCommandSize(): number {
    return this.engine.maxCommandSize;
  }

  execute(command: Uint8Array, locality: number): Promise<Uint8Array> {
    return this.queue.run(async () => {
      if (!this.on) return this.unpoweredResponse();
      this.store.dirty = false;
      const response = await this.run(command, locality);
      if (this.store.dirty || this.changedRunningState(command, response)) await this.persist(this.handOver());
      return response;
    });
  }

  /** A guest reboot: TPM_Init. The reset PCRs are persisted before the guest can send Startup. */
  powerOn(): Promise<void> {
    return this.queue.run(async () => {
      this.engine.powerOn();
      this.on = true;
      await this.persist(this.handOver());
    });
  }

  powerOff(): Promise<void> {
    return this.queue.run(async () => {
      this.engine.powerOff();
      this.on = false;
    });
  }

  /** The state for `persist`: a change to what it got last where the engine can tell one, else the whole snapshot. */
  protected handOver(): Buffer | StateChange {
    return (this.handOvers ??= new StateHandOver(this.engine)).next();
  }

  /** The model continues from `snapshot`, which its engine resumed from. */
  protected resumedFrom(snapshot: Buffer): void {
    (this.handOvers ??= new StateHandOver(this.engine)).resumedFrom(snapshot);
  }

  /** Every response already waited for its save; this only waits for commands in flight. */
  flush(): Promise<void> {
    return this.queue.idle();
  }

  /** The current state, as `persist` last received it or newer. */
  snapshot(): Promise<Buffer> {
    return this.queue.run(async () => this.engine.snapshot());
  }
}

export function succeeded(response: Uint8Array): boolean {
  return response.length >= 10 && response[6] === 0 && response[7] === 0 && response[8] === 0 && response[9] === 0;
}
