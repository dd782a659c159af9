/**
 * The TPM 2.0 vTPM device model, in both designs. Software-based: a complete TPM 2.0 engine whose
 * keys live in the model, protected by the chip only through the PSS. Hardware-backed: the same
 * engine, but its keys — primaries (EK, SRK) and the objects guests create under a parent, keys
 * the guest may duplicate among them, but for what moves with a parent the guest may duplicate
 * (see chip-key-backend.ts) — are made and used inside the chip, the guest holding only
 * double-wrapped blobs; the guest's authorization session is checked by the engine, which then
 * has the model use the key in the chip.
 *
 * After every command that changed what the vTPM must remember, the model hands its state to
 * `persist` and releases the response only once that resolves, so a response the guest saw is
 * never lost to a crash of the host process.
 */
import { ALG, CC } from '../tpm/tpm2/constants.ts';
import { errorResponse } from '../tpm/tpm2/dispatcher.ts';
import { RC } from '../tpm/tpm2/rc.ts';
import { ExternalOperationNeeded, type ChipRequest } from '../tpm/tpm2/hardware-keys.ts';
import { ChipKeyBackend } from './chip-key-backend.ts';
import { processRsaKeyPool } from '../tpm/crypto/rsa-key-pool.ts';
import { PersistedModel, succeeded, type Persist } from './persisted-model.ts';
import { commandCodeOf } from '../tpm/device.ts';
import { Tpm2Engine, type Tpm2Options } from '../tpm/tpm2/engine.ts';

export type { Persist };

/**
 * Commands that change volatile state a guest would miss after an unseen host restart (PCRs,
 * platform auth, enables, context sequence) without necessarily writing NV. Commands that write
 * NV are caught by the engine's store; those that touch only loaded objects and sessions need no
 * save, as those are not part of a snapshot (which session contexts may come back is, and
 * changedRunningState sees it move).
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

/** What a hardware-backed model needs: the chip's key-binding key and the service that uses the chip. */
export interface HardwareBacking {
  readonly kbk: Buffer;
  readonly service: { perform(request: ChipRequest): Promise<unknown> };
}

export interface Tpm2VtpmModelOptions extends Omit<Tpm2Options, 'store' | 'hardwareKeys' | 'now'> {
  /** A snapshot to continue from; without it the vTPM is manufactured new. */
  snapshot?: Buffer;
  /** Makes the model hardware-backed. */
  hardware?: HardwareBacking;
}

/** A command needs at most a couple of chip operations and a key; more means something loops. */
const MAX_EXTERNAL_ROUNDS = 4;

export class Tpm2VtpmModel extends PersistedModel {
  readonly family = 'tpm2' as const;
  protected readonly engine: Tpm2Engine;
  private readonly backend: ChipKeyBackend | undefined;
  private readonly service: HardwareBacking['service'] | undefined;
  /** While a command is retried around what it waits for its clock stands still, so every attempt attests the same time. */
  private frozenAt: number | undefined;
  private auditBefore: Buffer | undefined;
  private savedSessionsBefore = 0;

  /** Use `create` (which persists the new vTPM before anyone can use it) or `restore`. */
  private constructor(persist: Persist, opts: Tpm2VtpmModelOptions) {
    super(persist);
    const { snapshot, hardware, ...engineOpts } = opts;
    this.backend = hardware ? new ChipKeyBackend(hardware.kbk, (sel) => this.engine.pcrs.digestOf(ALG.SHA256, sel).digest) : undefined;
    this.service = hardware?.service;
    this.engine = new Tpm2Engine({
      // Fresh RSA keys come from the process's pool, made off the main thread (rsa-key-pool.ts).
      rsaKeys: processRsaKeyPool(),
      ...engineOpts,
      store: this.store,
      now: () => this.frozenAt ?? performance.now(),
      ...(this.backend ? { hardwareKeys: this.backend } : {}),
    });
    if (snapshot) {
      this.engine.resume(snapshot);
      this.resumedFrom(snapshot);
    }
  }

  holdsLoadedState(): boolean {
    const e = this.engine;
    // Saved sessions are not here: their contexts carry them, and a snapshot which may come back.
    return e.objects.used > 0 || e.sessions.used > 0 || e.parkedSequences.size > 0;
  }

  get design(): 'software' | 'hardware' {
    return this.backend ? 'hardware' : 'software';
  }

  static async create(persist: Persist, opts: Omit<Tpm2VtpmModelOptions, 'snapshot'> = {}): Promise<Tpm2VtpmModel> {
    const v = new Tpm2VtpmModel(persist, opts);
    await persist(v.handOver());
    return v;
  }

  static restore(persist: Persist, snapshot: Buffer, opts: Omit<Tpm2VtpmModelOptions, 'snapshot'> = {}): Tpm2VtpmModel {
    return new Tpm2VtpmModel(persist, { ...opts, snapshot });
  }

  protected run(command: Uint8Array, locality: number): Buffer | Promise<Buffer> {
    this.auditBefore = this.engine.audit.digest;
    this.savedSessionsBefore = this.engine.savedSessions.size;
    if (this.backend) return this.executeWaiting(command, locality);
    try {
      return this.engine.execute(command, locality);
    } catch (e) {
      if (!(e instanceof ExternalOperationNeeded)) throw e;
      return this.executeWaiting(command, locality, e);
    }
  }

  protected changedRunningState(command: Uint8Array, response: Buffer): boolean {
    // An audited command moves the audit digest, which only a snapshot keeps; a session context
    // loaded or flushed must not come back after a restart (ContextSave is in VOLATILE_CHANGING).
    const e = this.engine;
    return e.audit.digest !== this.auditBefore || e.savedSessions.size !== this.savedSessionsBefore || (succeeded(response) && VOLATILE_CHANGING.has(commandCodeOf(command)));
  }

  protected unpoweredResponse(): Buffer {
    return errorResponse(RC.FAILURE);
  }

  /**
   * Runs the command, doing what the engine asks for — an operation on the chip, or waiting for
   * an RSA key made off this thread — and then running it again, the main thread serving other
   * vTPMs meanwhile. `first` is the request an attempt already raised.
   */
  private async executeWaiting(command: Uint8Array, locality: number, first?: ExternalOperationNeeded): Promise<Buffer> {
    this.frozenAt = performance.now();
    try {
      for (let round = 0, pending = first; ; round++) {
        if (pending) await this.perform(pending);
        try {
          return this.engine.execute(command, locality);
        } catch (e) {
          if (!(e instanceof ExternalOperationNeeded) || round >= MAX_EXTERNAL_ROUNDS) throw e;
          pending = e;
        }
      }
    } finally {
      this.frozenAt = undefined;
    }
  }

  private async perform(e: ExternalOperationNeeded): Promise<void> {
    const { request } = e;
    if (request.kind === 'rsa-key' || request.kind === 'derive-rsa') return this.engine.rsaKeyWait(e);
    this.backend!.provide(request, await this.service!.perform(request));
  }
}
