/**
 * The software-based vTPM device model: a complete TPM 2.0 engine whose keys live in the model.
 * The chip protects it only through the PSS: after every command that changed what the vTPM must
 * remember, the model hands its state to `persist` and releases the response only once that
 * resolves, so a response the guest saw is never lost to a crash of the host process.
 */
import type { TpmDevice } from '../tpm/device.ts';
import { SerialQueue } from '../tpm/serial-queue.ts';
import { CC } from '../tpm/tpm2/constants.ts';
import { Tpm2Engine, type Tpm2Options } from '../tpm/tpm2/engine.ts';
import type { StateStore } from '../tpm/tpm2/state/store.ts';

/** Makes one snapshot of the vTPM durable; resolves when it is. */
export type Persist = (snapshot: Buffer) => Promise<void>;

/**
 * Commands that change volatile state a guest would miss after an unseen host restart (PCRs,
 * platform auth, enables, context sequence) without necessarily writing NV. Commands that write
 * NV are caught by the engine's store; those that touch only objects and sessions need no save,
 * as those are not part of a snapshot.
 */
const VOLATILE_CHANGING: ReadonlySet<number> = new Set([
  CC.Startup,
  CC.Shutdown,
  CC.PCR_Extend,
  CC.PCR_Event,
  CC.PCR_Reset,
  CC.EventSequenceComplete,
  CC.PCR_Allocate,
  CC.PCR_SetAuthPolicy,
  CC.PCR_SetAuthValue,
  CC.HierarchyControl,
  CC.HierarchyChangeAuth,
  CC.SetPrimaryPolicy,
  CC.ContextSave,
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

export interface SoftwareVtpmOptions extends Omit<Tpm2Options, 'store'> {
  /** A snapshot to continue from; without it the vTPM is manufactured new. */
  snapshot?: Buffer;
}

export class SoftwareVtpm implements TpmDevice {
  readonly family = 'tpm2' as const;
  private readonly engine: Tpm2Engine;
  private readonly store = new DirtyFlagStore();
  private readonly queue = new SerialQueue();
  private on = true;

  /** Use `create` (which persists the new vTPM before anyone can use it) or `restore`. */
  private constructor(
    private readonly persist: Persist,
    opts: SoftwareVtpmOptions,
  ) {
    const { snapshot, ...engineOpts } = opts;
    this.engine = new Tpm2Engine({ ...engineOpts, store: this.store });
    if (snapshot) this.engine.resume(snapshot);
  }

  static async create(persist: Persist, opts: Omit<SoftwareVtpmOptions, 'snapshot'> = {}): Promise<SoftwareVtpm> {
    const v = new SoftwareVtpm(persist, opts);
    await persist(v.engine.snapshot());
    return v;
  }

  static restore(persist: Persist, snapshot: Buffer, opts: Omit<SoftwareVtpmOptions, 'snapshot'> = {}): SoftwareVtpm {
    return new SoftwareVtpm(persist, { ...opts, snapshot });
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
      if (!this.on) return Buffer.from([0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01]);
      this.store.dirty = false;
      const auditBefore = this.engine.audit.digest;
      const response = this.engine.execute(command, locality);
      if (this.store.dirty || this.engine.audit.digest !== auditBefore || (succeeded(response) && VOLATILE_CHANGING.has(commandCode(command)))) {
        await this.persist(this.engine.snapshot());
      }
      return response;
    });
  }

  /** A guest reboot: TPM_Init. The reset PCRs are persisted before the guest can send Startup. */
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

function commandCode(command: Uint8Array): number {
  return command.length < 10 ? 0 : ((command[6]! << 24) | (command[7]! << 16) | (command[8]! << 8) | command[9]!) >>> 0;
}

function succeeded(response: Uint8Array): boolean {
  return response.length >= 10 && response[6] === 0 && response[7] === 0 && response[8] === 0 && response[9] === 0;
}
