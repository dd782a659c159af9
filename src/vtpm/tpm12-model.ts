/**
 * The TPM 1.2 vTPM device model (software-based): a complete TPM 1.2 engine whose keys live in
 * the model, protected by the chip only through the PSS.
 *
 * After every command that changed what the vTPM must remember, the model hands its state to
 * `persist` and releases the response only once that resolves, so a response the guest saw is
 * never lost to a crash of the host process.
 */
import type { TpmDevice } from '../tpm/device.ts';
import { SerialQueue } from '../tpm/serial-queue.ts';
import type { StateStore } from '../tpm/tpm2/state/store.ts';
import { ORD } from '../tpm/tpm12/constants.ts';
import { errorResponse } from '../tpm/tpm12/dispatcher.ts';
import { Tpm12Engine, type Tpm12Options } from '../tpm/tpm12/engine.ts';
import { RC } from '../tpm/tpm12/rc.ts';
import type { Persist } from './tpm2-model.ts';

export type { Persist };

/**
 * Commands that, when they succeed, may change running state a guest would miss after an unseen
 * host restart — PCRs, TPM_STCLEAR_FLAGS, the started flag, the boot's active counter — without
 * necessarily writing NV. Commands that write NV are caught by the engine's store; those that
 * touch only loaded keys and sessions need no save, as those are not part of a snapshot.
 */
const VOLATILE_CHANGING: ReadonlySet<number> = new Set([
  ORD.Startup,
  ORD.SaveState,
  ORD.Extend,
  ORD.PCR_Reset,
  ORD.TSC_PhysicalPresence,
  ORD.PhysicalEnable,
  ORD.PhysicalDisable,
  ORD.PhysicalSetDeactivated,
  ORD.IncrementCounter,
  // Writing NV index 0 sets bGlobalLock, a TPM_STCLEAR_FLAGS bit, and writes no NV.
  ORD.NV_WriteValue,
  // Clearing the owner also forgets the boot's active counter.
  ORD.OwnerClear,
  ORD.ForceClear,
  ORD.ReleaseCounter,
  ORD.ReleaseCounterOwner,
]);

/** Notes whether the engine wrote NV during a command. */
class DirtyFlagStore implements StateStore {
  dirty = false;
  load(): Buffer | undefined {
    return undefined;
  }
  save(): void {
    this.dirty = true;
  }
}

export interface Tpm12VtpmModelOptions extends Omit<Tpm12Options, 'store'> {
  /** A snapshot to continue from; without it the vTPM is manufactured new. */
  snapshot?: Buffer;
}

export class Tpm12VtpmModel implements TpmDevice {
  readonly family = 'tpm12' as const;
  private readonly engine: Tpm12Engine;
  private readonly store = new DirtyFlagStore();
  private readonly queue = new SerialQueue();
  private on = true;

  /** Use `create` (which persists the new vTPM before anyone can use it) or `restore`. */
  private constructor(
    private readonly persist: Persist,
    opts: Tpm12VtpmModelOptions,
  ) {
    const { snapshot, ...engineOpts } = opts;
    // A restored vTPM gets its EK from the snapshot; making one first would only waste a key generation.
    this.engine = new Tpm12Engine({ ...engineOpts, ...(snapshot ? { manufactureEk: false } : {}), store: this.store });
    if (snapshot) this.engine.resume(snapshot);
  }

  get design(): 'software' {
    return 'software';
  }

  /** Manufactures a new TPM 1.2 (its EK made now) and persists it before returning it. */
  static async create(persist: Persist, opts: Omit<Tpm12VtpmModelOptions, 'snapshot'> = {}): Promise<Tpm12VtpmModel> {
    const v = new Tpm12VtpmModel(persist, opts);
    await persist(v.engine.snapshot());
    return v;
  }

  /** Continues a vTPM from its last snapshot; throws Tpm12RunningStateError if it is damaged. */
  static restore(persist: Persist, snapshot: Buffer, opts: Omit<Tpm12VtpmModelOptions, 'snapshot'> = {}): Tpm12VtpmModel {
    return new Tpm12VtpmModel(persist, { ...opts, snapshot });
  }

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
      // A chip without power does not answer; TPM_FAIL is the closest a byte interface can say.
      if (!this.on) return errorResponse(RC.FAIL);
      this.store.dirty = false;
      const response = this.engine.execute(command, locality);
      if (this.store.dirty || (succeeded(response) && VOLATILE_CHANGING.has(ordinal(command)))) {
        await this.persist(this.engine.snapshot());
      }
      return response;
    });
  }

  /** A guest reboot: TPM_Init. The reset PCRs are persisted before the guest can send TPM_Startup. */
  powerOn(): Promise<void> {
    return this.queue.run(async () => {
      this.engine.powerOn();
      this.on = true;
      await this.persist(this.engine.snapshot());
    });
  }

  powerOff(): Promise<void> {
    return this.queue.run(async () => {
      this.engine.powerOff();
      this.on = false;
    });
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

function ordinal(command: Uint8Array): number {
  return command.length < 10 ? 0 : ((command[6]! << 24) | (command[7]! << 16) | (command[8]! << 8) | command[9]!) >>> 0;
}

function succeeded(response: Uint8Array): boolean {
  return response.length >= 10 && response[6] === 0 && response[7] === 0 && response[8] === 0 && response[9] === 0;
}
