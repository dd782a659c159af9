/**
 * The TPM 1.2 vTPM device model (software-based): a complete TPM 1.2 engine whose keys live in
 * the model, protected by the chip only through the PSS.
 *
 * After every command that changed what the vTPM must remember, the model hands its state to
 * `persist` and releases the response only once that resolves, so a response the guest saw is
 * never lost to a crash of the host process.
 */
import { ORD } from '../tpm/tpm12/constants.ts';
import { errorResponse } from '../tpm/tpm12/dispatcher.ts';
import { Tpm12Engine, type Tpm12Options } from '../tpm/tpm12/engine.ts';
import { RC } from '../tpm/tpm12/rc.ts';
import { PersistedModel, succeeded, type Persist } from './persisted-model.ts';
import { commandCodeOf } from '../tpm/device.ts';
import { processRsaKeyPool } from '../tpm/crypto/rsa-key-pool.ts';
import { DEFAULT_EXPONENT } from '../tpm/crypto/rsa.ts';

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

export interface Tpm12VtpmModelOptions extends Omit<Tpm12Options, 'store'> {
  /** A snapshot to continue from; without it the vTPM is manufactured new. */
  snapshot?: Buffer;
}

export class Tpm12VtpmModel extends PersistedModel {
  readonly family = 'tpm12' as const;
  protected readonly engine: Tpm12Engine;

  /** Use `create` (which persists the new vTPM before anyone can use it) or `restore`. */
  private constructor(persist: Persist, opts: Tpm12VtpmModelOptions) {
    super(persist);
    const { snapshot, ...engineOpts } = opts;
    // A restored vTPM gets its EK from the snapshot; making one first would only waste a key generation.
    // A TPM 1.2 command cannot wait for a key: it takes a ready one from the process's pool
    // (rsa-key-pool.ts) and makes one inline only when none is.
    const rsaKeyGen = (bits: number) => processRsaKeyPool().takeOrMake(bits, DEFAULT_EXPONENT);
    this.engine = new Tpm12Engine({ rsaKeyGen, ...engineOpts, ...(snapshot ? { manufactureEk: false } : {}), store: this.store });
    if (snapshot) this.engine.resume(snapshot);
  }

  get design(): 'software' {
    return 'software';
  }

  /** Manufactures a new TPM 1.2 (its EK made now) and persists it before returning it. */
  static async create(persist: Persist, opts: Omit<Tpm12VtpmModelOptions, 'snapshot'> = {}): Promise<Tpm12VtpmModel> {
    const v = new Tpm12VtpmModel(persist, opts);
    await persist(v.handOver());
    return v;
  }

  /** Continues a vTPM from its last snapshot; throws Tpm12RunningStateError if it is damaged. */
  static restore(persist: Persist, snapshot: Buffer, opts: Omit<Tpm12VtpmModelOptions, 'snapshot'> = {}): Tpm12VtpmModel {
    return new Tpm12VtpmModel(persist, { ...opts, snapshot });
  }

  protected run(command: Uint8Array, locality: number): Buffer {
    return this.engine.execute(command, locality);
  }

  protected changedRunningState(command: Uint8Array, response: Buffer): boolean {
    return succeeded(response) && VOLATILE_CHANGING.has(commandCodeOf(command));
  }

  /** A chip without power does not answer; TPM_FAIL is the closest a byte interface can say. */
  holdsLoadedState(): boolean {
    return this.engine.keys.handles.length > 0 || this.engine.sessions.handles.length > 0;
  }

  protected unpoweredResponse(): Buffer {
    return errorResponse(RC.FAIL);
  }
}
