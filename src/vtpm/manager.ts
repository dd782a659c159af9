/**
 * The GVTPM manager: creates, loads, unloads and destroys one vTPM device model per VM. Each model
 * is measured (code and configuration) before it first runs; its state lives in the protected
 * storage service, bound to that measurement. A model idle for a while is dropped from memory —
 * its state is already in the PSS — and reloaded by the next command addressed to it.
 */
import type { Logger } from 'pino';
import type { TpmDevice } from '../tpm/device.ts';
import { SerialQueue } from '../tpm/serial-queue.ts';
import { DEFAULT_MODEL_CONFIG, ModelMeasurer, type ModelConfig } from './model-measurement.ts';
import { VmRegistry, type VmRecord } from './registry.ts';
import { Tpm2VtpmModel, type HardwareBacking, type Persist } from './tpm2-model.ts';
import type { StateChange } from '../tpm/state-delta.ts';
import { Tpm12VtpmModel } from './tpm12-model.ts';
import { tpm2Turn, type HostTpm } from '../hwtpm/host-tpm.ts';
import { ChipRefusal, unsealCurrentOrStaged, type ChipClient } from '../hwtpm/chip-client.ts';
import { GVTPM_PCR, hostTcbPcrs } from '../hwtpm/host-boot.ts';
import { HardwareKeyService } from './hardware-key-service.ts';
import { readSrk } from '../hwtpm/tpm2-provisioning.ts';
import { proveSrk, SrkProofError } from './srk-proof.ts';
import type { ParsedCertificate } from '../hwtpm/credentials/x509.ts';
import { randomBytes } from 'node:crypto';

/** What the manager needs of the PSS. */
export interface ModelStorage {
  /** `nvm`: the whole state, or a change to what the model handed over before (state-delta.ts). */
  save(vmId: string, measurement: Buffer, nvm: Buffer | StateChange, opts?: { durable?: boolean }): Promise<void>;
  /** `earlier`: measurements of models whose state this one may continue (an upgrade's predecessors). */
  load(vmId: string, measurement: Buffer, earlier?: readonly Buffer[]): Promise<Buffer | undefined>;
  /** Model code digests upgrades authorized to continue from earlier code: earlier → later. */
  codeTransitions?(): readonly (readonly [Buffer, Buffer])[];
  remove(vmId: string): Promise<void>;
  /** The vTPM left memory: whatever the storage kept to make its saves smaller can go. */
  release(vmId: string): void;
}

/** A request the manager cannot honour: unknown VM, duplicate name, bad configuration. */
export class VtpmError extends Error {
  constructor(
    readonly code: 'unknown-vm' | 'duplicate-vm' | 'bad-config' | 'unsupported' | 'tcb-changed' | 'untrusted-chip',
    message: string,
  ) {
    super(message);
    this.name = 'VtpmError';
  }
}

/** The chip a manager shares among hardware-backed vTPMs. */
export interface ManagerChip {
  readonly chip: HostTpm;
  readonly client: ChipClient;
  /** PCRs the key-binding key is sealed to; default the host TCB and the GVTPM manager. */
  readonly bindPcrs?: readonly number[];
  /**
   * Manufacturer roots the chip's EK certificate must chain to: with them the hwSRK is proven to
   * be the certified chip's before its Name is pinned (srk-proof.ts); without them the Name the
   * chip reports on the manager's first start is trusted.
   */
  readonly ekRoots?: readonly ParsedCertificate[];
  /**
   * The hwSRK Name the host has pinned its chip client to (storage-root-pin.ts), proven there when
   * it had roots: taken as this manager's, so it is not proven a second time.
   */
  readonly srkName?: Buffer;
}

export interface ManagerOptions {
  /** Where the VM registry (level) lives. */
  registryDir: string;
  storage: ModelStorage;
  /** Unload a model after this long without a command; 0 keeps models loaded. Default 60 s. */
  idleUnloadMs?: number;
  measurer?: ModelMeasurer;
  logger?: Logger;
  /** Without it only software-based vTPMs can be made. */
  hardware?: ManagerChip;
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const TPM_VERSIONS = ['2.0', '1.2'] as const;

/** What the manager shares among hardware-backed vTPMs: the key-binding key and the chip's key and session manager. */
interface SharedBacking {
  readonly kbk: Buffer;
  readonly keys: HardwareKeyService;
}

export class GvtpmManager {
  private readonly handles = new Map<string, VtpmHandle>();
  private readonly measurer: ModelMeasurer;
  private readonly idleUnloadMs: number;
  private readonly hardware: ManagerChip | undefined;

  private constructor(
    private readonly registry: VmRegistry,
    private readonly storage: ModelStorage,
    opts: ManagerOptions,
    private readonly backing: SharedBacking | VtpmError | undefined,
  ) {
    this.measurer = opts.measurer ?? new ModelMeasurer();
    this.idleUnloadMs = opts.idleUnloadMs ?? 60_000;
    this.hardware = opts.hardware;
  }

  /**
   * Seals the key-binding key a second time, to `expected` values of its PCRs (code-upgrade.ts),
   * replacing an earlier staging; the first start whose PCRs hold them makes that binding the only
   * one. Throws why not when this manager has no key-binding key to seal.
   */
  async stageBinding(expected: ReadonlyMap<number, Buffer>): Promise<void> {
    if (!this.hardware || !this.backing) throw new VtpmError('bad-config', 'this manager has no hwTPM, so no key-binding key');
    if (this.backing instanceof VtpmError) throw this.backing;
    await this.registry.putMeta(KBK_STAGED_META, await this.hardware.client.seal(this.backing.kbk, kbkPcrs(this.hardware), expected));
  }

  /** What a model of `config` measures as under the code running now. */
  measure(config: ModelConfig): Promise<Buffer> {
    return this.measurer.measure(config);
  }

  /** The model code digests of the code running now, one per TPM version. */
  runningCode(): Promise<Buffer[]> {
    return Promise.all(TPM_VERSIONS.map((tpm) => this.measurer.codeDigest(tpm)));
  }

  /** Running model code → the model code under `codeRoot`, for each TPM version whose code differs. */
  async codeTransitionsTo(codeRoot: string): Promise<[Buffer, Buffer][]> {
    const next = new ModelMeasurer(codeRoot);
    const pairs: [Buffer, Buffer][] = [];
    for (const tpm of TPM_VERSIONS) {
      const [from, to] = [await this.measurer.codeDigest(tpm), await next.codeDigest(tpm)];
      if (!from.equals(to)) pairs.push([from, to]);
    }
    return pairs;
  }

  /** Drops a staged binding of the key-binding key; true when there was one. */
  async cancelStaged(): Promise<boolean> {
    if (!(await this.registry.getMeta(KBK_STAGED_META))) return false;
    await this.registry.deleteMeta(KBK_STAGED_META);
    return true;
  }

  static async open(opts: ManagerOptions): Promise<GvtpmManager> {
    const registry = await VmRegistry.open(opts.registryDir);
    try {
      let backing: SharedBacking | VtpmError | undefined;
      if (opts.hardware) {
        try {
          const kbk = await keyBindingKey(registry, opts.hardware, opts.logger);
          backing = { kbk, keys: new HardwareKeyService(opts.hardware.chip, { srkName: await pinnedSrkName(registry, opts.hardware, opts.logger) }) };
        } catch (e) {
          // Software vTPMs keep running; only those whose keys live in the chip are refused.
          if (e instanceof ChipRefusal && e.reason === 'pcr-mismatch') {
            backing = new VtpmError('tcb-changed', 'the host TCB changed since the key-binding key was sealed: hardware-backed vTPMs cannot use their keys');
            opts.logger?.error('the chip refused the key-binding key: the host TCB changed; hardware-backed vTPMs are unavailable');
          } else if (e instanceof SrkProofError || (e instanceof ChipRefusal && e.reason === 'untrusted-srk')) {
            backing = new VtpmError('untrusted-chip', `${e.message}; hardware-backed vTPMs are unavailable`);
            opts.logger?.error(backing.message);
          } else throw e;
        }
      }
      return new GvtpmManager(registry, opts.storage, opts, backing);
    } catch (e) {
      await registry.close();
      throw e;
    }
  }

  /** Creates, measures and persists a new VM's vTPM; it exists (and survives a crash) once this resolves. */
  async create(name: string, config: Partial<ModelConfig> = {}): Promise<VmRecord> {
    if (!NAME.test(name)) throw new VtpmError('bad-config', `VM name '${name}' is invalid: use 1–64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
    const full = checkConfig({ ...DEFAULT_MODEL_CONFIG, ...config });
    if (full.design === 'hardware') this.hardwareBacking(name);
    if (this.handles.has(name) || (await this.registry.get(name))) throw new VtpmError('duplicate-vm', `a VM named '${name}' already exists`);
    const measurement = await this.measurer.measure(full);
    const record: VmRecord = { name, config: full, measurement: measurement.toString('hex'), createdAt: new Date().toISOString() };
    const handle = this.handleFor(record);
    await handle.manufacture();
    // Registered last: a crash before this leaves an orphan blob, never a VM without state.
    await this.registry.put(record);
    this.handles.set(name, handle);
    return record;
  }

  async get(name: string): Promise<VmRecord> {
    const r = await this.registry.get(name);
    if (!r) throw new VtpmError('unknown-vm', `no VM named '${name}'`);
    return r;
  }

  list(): Promise<VmRecord[]> {
    return this.registry.list();
  }

  /** The VM's vTPM as a device; it loads from the PSS on its first command. */
  async device(name: string): Promise<VtpmHandle> {
    let h = this.handles.get(name);
    if (!h) {
      h = this.handleFor(await this.get(name));
      this.handles.set(name, h);
    }
    return h;
  }

  /** Drops the model from memory (its state is in the PSS already). */
  async unload(name: string): Promise<void> {
    await this.handles.get(name)?.unload();
  }

  async destroy(name: string): Promise<void> {
    await this.get(name);
    const h = this.handles.get(name);
    await h?.unload();
    this.handles.delete(name);
    await this.registry.delete(name);
    await this.storage.remove(name);
    if (this.backing && !(this.backing instanceof VtpmError)) await this.backing.keys.forget(name);
  }

  private hardwareBacking(name: string): HardwareBacking {
    if (this.backing instanceof VtpmError) throw this.backing;
    if (!this.backing) throw new VtpmError('unsupported', `VM '${name}' is hardware-backed and this manager was opened without the host chip`);
    return { kbk: this.backing.kbk, service: this.backing.keys.forVm(name) };
  }

  private handleFor(record: VmRecord): VtpmHandle {
    const hardware = record.config.design === 'hardware' ? this.hardwareBacking(record.name) : undefined;
    return new VtpmHandle(record, this.storage, this.measurer, this.idleUnloadMs, hardware);
  }

  /** Small values the daemon keeps per VM beside the registry (desired state, endpoint port). */
  getMeta(key: string): Promise<Buffer | undefined> {
    return this.registry.getMeta(`daemon/${key}`);
  }

  setMeta(key: string, value: Buffer): Promise<void> {
    return this.registry.putMeta(`daemon/${key}`, value);
  }

  /** What the chip holds for hardware-backed vTPMs between their operations (saved sessions and key contexts), for metrics. */
  chipContexts(): { sessions: number; keys: number } {
    const keys = this.backing instanceof VtpmError ? undefined : this.backing?.keys;
    return { sessions: keys?.savedSessions ?? 0, keys: keys?.savedContexts ?? 0 };
  }

  /** Every loaded model's state to the storage again (see VtpmHandle.saveAgain); resolves with how many failed. */
  async saveLoadedAgain(): Promise<number> {
    const saves = [...this.handles.values()].filter((h) => h.loaded).map((h) => h.saveAgain());
    return (await Promise.allSettled(saves)).filter((r) => r.status === 'rejected').length;
  }

  /** Loaded models, for metrics and tests. */
  loadedCount(): number {
    let n = 0;
    for (const h of this.handles.values()) if (h.loaded) n++;
    return n;
  }

  async close(): Promise<void> {
    for (const h of this.handles.values()) await h.unload();
    this.handles.clear();
    await this.registry.close();
  }
}

function checkConfig(c: ModelConfig): ModelConfig {
  if (c.design !== 'software' && c.design !== 'hardware') throw new VtpmError('bad-config', `design must be 'software' or 'hardware', not '${c.design}'`);
  if (c.tpm !== '2.0' && c.tpm !== '1.2') throw new VtpmError('bad-config', `tpm must be '2.0' or '1.2', not '${c.tpm}'`);
  if (!Number.isInteger(c.pcrCount) || c.pcrCount < 24 || c.pcrCount > 256) throw new VtpmError('bad-config', `pcrCount must be an integer from 24 to 256, not ${c.pcrCount}`);
  if (c.durability !== 'per-command' && c.durability !== 'batched') throw new VtpmError('bad-config', `durability must be 'per-command' or 'batched'`);
  if (c.tpm === '1.2' && c.design === 'hardware') throw new VtpmError('unsupported', 'TPM 1.2 vTPMs are software-based only; use design software or tpm 2.0');
  if (c.tpm === '1.2' && c.pcrCount !== 24) throw new VtpmError('bad-config', 'a TPM 1.2 has 24 PCRs; pcrCount cannot be changed for tpm 1.2');
  return c;
}

/**
 * One VM's vTPM as the hypervisor and the transports see it. The model behind it comes and goes
 * (idle unload, reload on demand); commands, power signals and loads are serialized, so a command
 * never races its model's reload.
 */
type Model = Tpm2VtpmModel | Tpm12VtpmModel;

export class VtpmHandle implements TpmDevice {
  readonly family: 'tpm2' | 'tpm12';
  private model: Model | undefined;
  private readonly queue = new SerialQueue();
  private idleTimer: NodeJS.Timeout | undefined;

  // An unloaded vTPM is this handle alone, kept by its endpoint: what only a loaded model needs
  // (the measurement as bytes, the save callback) lives in the model's closures, not here.
  constructor(
    readonly record: VmRecord,
    private readonly storage: ModelStorage,
    private readonly measurer: ModelMeasurer,
    private readonly idleUnloadMs: number,
    private readonly hardware: HardwareBacking | undefined,
  ) {
    this.family = record.config.tpm === '1.2' ? 'tpm12' : 'tpm2';
  }

  get name(): string {
    return this.record.name;
  }

  get loaded(): boolean {
    return this.model !== undefined;
  }

  get powered(): boolean {
    return this.model?.powered ?? true;
  }

  get established(): boolean {
    return false;
  }

  get maxCommandSize(): number {
    return 4096;
  }

  resetEstablished(locality: number): boolean {
    return locality >= 3;
  }

  /** The model's measurement by the code running now: taken before every model is made or loaded. */
  private measurement(): Promise<Buffer> {
    return this.measurer.measure(this.record.config);
  }

  /** What the model calls with its NVM after each state-changing command. */
  private persister(measurement: Buffer): Persist {
    const { storage, record } = this;
    const opts = { durable: record.config.durability === 'per-command' };
    return (state) => storage.save(record.name, measurement, state, opts);
  }

  private tpm2Options() {
    return { pcrCount: this.record.config.pcrCount, ...(this.hardware ? { hardware: this.hardware } : {}) };
  }

  /** Makes the brand-new vTPM and hands its first state to the PSS. */
  async manufacture(): Promise<void> {
    await this.queue.run(async () => {
      const persist = this.persister(await this.measurement());
      this.model = this.family === 'tpm12' ? await Tpm12VtpmModel.create(persist) : await Tpm2VtpmModel.create(persist, this.tpm2Options());
      this.touch();
    });
  }

  private async ensureLoaded(): Promise<Model> {
    if (this.model) return this.model;
    const measurement = await this.measurement();
    const earlier = await this.measurer.earlierMeasurements(this.record.config, this.storage.codeTransitions?.() ?? []);
    const snapshot = await this.storage.load(this.record.name, measurement, earlier);
    if (!snapshot) throw new VtpmError('unknown-vm', `the PSS holds no state for VM '${this.record.name}'`);
    const persist = this.persister(measurement);
    this.model = this.family === 'tpm12' ? Tpm12VtpmModel.restore(persist, snapshot) : Tpm2VtpmModel.restore(persist, snapshot, this.tpm2Options());
    return this.model;
  }

  private touch(): void {
    if (this.idleUnloadMs <= 0) return;
    if (this.idleTimer) this.idleTimer.refresh();
    else {
      this.idleTimer = setTimeout(() => void this.unloadIfIdle(), this.idleUnloadMs);
      this.idleTimer.unref();
    }
  }

  execute(command: Uint8Array, locality: number): Promise<Uint8Array> {
    return this.queue.run(async () => {
      const model = await this.ensureLoaded();
      this.touch();
      // As unlessFailed does, without another async frame on every command.
      try {
        return await model.execute(command, locality);
      } catch (e) {
        this.discardModel();
        throw e;
      }
    });
  }

  powerOn(): Promise<void> {
    return this.queue.run(async () => this.unlessFailed((await this.ensureLoaded()).powerOn()));
  }

  powerOff(): Promise<void> {
    return this.queue.run(async () => this.unlessFailed((await this.ensureLoaded()).powerOff()));
  }

  /**
   * Hands the loaded model's state to the storage again: after the PSS recovered from a failed
   * commit it holds only what reached the disk, and a batched vTPM's last saves may not have.
   */
  saveAgain(): Promise<void> {
    return this.queue.run(async () => {
      if (!this.model) return;
      await this.unlessFailed(this.model.snapshot().then(this.persister(await this.measurement())));
    });
  }

  /**
   * A model whose state did not reach the storage (its save failed) holds what the storage may
   * never see: it leaves memory, and the vTPM continues from the storage's state on its next
   * command, as it would after a restart of the host process.
   */
  private async unlessFailed<T>(work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (e) {
      this.discardModel();
      throw e;
    }
  }

  private discardModel(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
    if (!this.model) return;
    this.model = undefined;
    this.storage.release(this.record.name);
  }

  flush(): Promise<void> {
    return this.queue.run(async () => this.model?.flush());
  }

  unload(): Promise<void> {
    return this.queue.run(() => this.dropModel());
  }

  /**
   * The idle timer's unload. A vTPM holding loaded objects or sessions stays in memory, as they
   * stay in a chip that keeps its power: the guest may use them again at any time.
   */
  private unloadIfIdle(): Promise<void> {
    return this.queue.run(async () => {
      if (this.model?.holdsLoadedState()) this.idleTimer?.refresh();
      else await this.dropModel();
    });
  }

  private async dropModel(): Promise<void> {
    await this.model?.flush();
    this.discardModel();
  }
}

const KBK_META = 'kbk-sealed';
/** The key-binding key sealed to the PCR values an upgrade expects, until that upgrade runs. */
const KBK_STAGED_META = 'kbk-staged';
const SRK_NAME_META = 'hwsrk-name';

/**
 * The hwSRK's Name, recorded when the manager first runs on this chip and read back after: chip
 * sessions are salted only to that key, so a changed answer on the way to the chip cannot redirect
 * them. Recorded only once proven beside the certified EK when the host trusts manufacturer roots
 * (a failed proof records nothing and throws SrkProofError); otherwise as the chip reports it.
 * Undefined for a TPM 1.2 chip (hardware-backed vTPMs need a TPM 2.0 one).
 */
async function pinnedSrkName(registry: VmRegistry, hw: ManagerChip, logger: Logger | undefined): Promise<Buffer | undefined> {
  const recorded = await registry.getMeta(SRK_NAME_META);
  if (recorded && hw.srkName && !recorded.equals(hw.srkName)) {
    throw new SrkProofError(`the host pinned the hwSRK ${hw.srkName.toString('hex')}, and this manager was set up with ${recorded.toString('hex')}`);
  }
  if (recorded || hw.chip.family !== 'tpm2') return recorded;
  const roots = hw.ekRoots;
  const name = hw.srkName ?? await tpm2Turn(hw.chip, async (tpm) => {
    if (roots) return proveSrk(tpm, roots);
    logger?.warn("no manufacturer roots to prove the chip's hwSRK against: its Name is trusted as the chip reports it");
    return (await readSrk(tpm)).name;
  });
  await registry.putMeta(SRK_NAME_META, name);
  return name;
}

/**
 * The key-binding key: made once, sealed by the chip to the host TCB and the GVTPM manager, and
 * unsealed at every start. A changed TCB therefore leaves hardware-backed keys unusable.
 */
async function keyBindingKey(registry: VmRegistry, hw: ManagerChip, logger: Logger | undefined): Promise<Buffer> {
  const sealed = await registry.getMeta(KBK_META);
  if (sealed) {
    const staged = await registry.getMeta(KBK_STAGED_META);
    const released = await unsealCurrentOrStaged(hw.client, sealed, staged);
    if (released.staged) {
      await registry.putMeta(KBK_META, staged!);
      await registry.deleteMeta(KBK_STAGED_META);
      logger?.info('the chip released the key-binding key to the upgraded code staged for it; that binding is now the only one');
    }
    return released.secret;
  }
  const kbk = randomBytes(32);
  await registry.putMeta(KBK_META, await hw.client.seal(kbk, kbkPcrs(hw)));
  return kbk;
}

function kbkPcrs(hw: ManagerChip): readonly number[] {
  return hw.bindPcrs ?? [...hostTcbPcrs(), GVTPM_PCR.MANAGER];
}
