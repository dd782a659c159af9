/**
 * The simulated physical TPM: a command engine (TPM 2.0 or TPM 1.2 personality) inside the things
 * a chip on a motherboard has around it — a power rail, the locality lines of the TIS/CRB
 * interface, a physical-presence pin, a few object and session slots, NV in a file that survives
 * power loss, and, when asked for, the latency of a real part.
 *
 * Everything that talks to the chip goes through one lock: a chip runs one command at a time, and
 * a multi-command operation (load a key, use it, flush it) must not have another caller's
 * commands land in the middle and take its slot.
 */
import type { TpmDevice } from '../tpm/device.ts';
import { SerialQueue } from '../tpm/serial-queue.ts';
import { Tpm2Device } from '../tpm/tpm2/device.ts';
import { Tpm2Engine } from '../tpm/tpm2/engine.ts';
import type { StateStore } from '../tpm/tpm2/state/store.ts';
import { Tpm12Device } from '../tpm/tpm12/device.ts';
import { Tpm12Engine } from '../tpm/tpm12/engine.ts';
import type { EntropySource } from '../tpm/crypto/random.ts';
import { ChipNvFile } from './nv-file.ts';
import { delayFor, type LatencyModel } from './latency.ts';
import type { RsaKeyPool } from '../tpm/crypto/rsa-key-pool.ts';

export type Personality = 'tpm2' | 'tpm12';

export interface ChipOptions {
  personality: Personality;
  /** Where the chip's NV file lives; without it NV is kept in `store` (or in memory). */
  stateDir?: string;
  store?: StateStore;
  /** Transient object (key) slots; a discrete TPM typically has 3. */
  objectSlots?: number;
  /** Loaded session slots. */
  sessionSlots?: number;
  /** Off unless given: then every command takes at least the time a real part would. */
  latency?: LatencyModel;
  /** How the latency model waits; default a timer. */
  sleep?: (ms: number) => Promise<void>;
  entropy?: EntropySource;
  now?: () => number;
  onInternalError?: (e: unknown) => void;
  /** TPM 2.0: where fresh RSA keys come from (Tpm2Options.rsaKeys); default made inline. */
  rsaKeys?: RsaKeyPool;
}

/** Builds the command engine of one personality over the chip's NV store. */
export type PersonalityFactory = (store: StateStore, opts: ChipOptions) => TpmDevice;

const FACTORIES: Record<Personality, PersonalityFactory> = {
  tpm2: (store, o) =>
    new Tpm2Device(
      new Tpm2Engine({
        store,
        objectSlots: o.objectSlots ?? 3,
        sessionSlots: o.sessionSlots ?? 3,
        ...(o.entropy ? { entropy: o.entropy } : {}),
        ...(o.now ? { now: o.now } : {}),
        ...(o.onInternalError ? { onInternalError: o.onInternalError } : {}),
        ...(o.rsaKeys ? { rsaKeys: o.rsaKeys } : {}),
      }),
    ),
  tpm12: (store, o) =>
    new Tpm12Device(
      new Tpm12Engine({
        store,
        keySlots: o.objectSlots ?? 3,
        sessionSlots: o.sessionSlots ?? 3,
        ...(o.entropy ? { entropy: o.entropy } : {}),
        ...(o.onInternalError ? { onInternalError: o.onInternalError } : {}),
      }),
    ),
};

export const NV_FILE_NAMES: Record<Personality, string> = { tpm2: 'chip-tpm2.nv', tpm12: 'chip-tpm12.nv' };

/** What a chip answers while a locality other than the one asking holds the interface. */
const LOCALITY_REFUSED: Record<Personality, Buffer> = {
  // TPM_RC_LOCALITY
  tpm2: Buffer.from([0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x07]),
  // TPM_BAD_LOCALITY
  tpm12: Buffer.from([0x00, 0xc4, 0, 0, 0, 10, 0, 0, 0, 0x3d]),
};

export class Chip implements TpmDevice {
  readonly family: Personality;
  /** True when this open found no NV and the engine was manufactured just now. */
  readonly fresh: boolean;
  private readonly lock = new SerialQueue();
  private readonly latency: LatencyModel | undefined;
  private readonly sleep: (ms: number) => Promise<void>;
  private activeLocality: number | undefined;
  private presence = false;

  private constructor(
    readonly device: TpmDevice,
    readonly store: StateStore,
    opts: ChipOptions,
    fresh: boolean,
  ) {
    this.family = opts.personality;
    this.fresh = fresh;
    this.latency = opts.latency;
    this.sleep = opts.sleep ?? ((ms) => new Promise((ok) => setTimeout(ok, ms)));
  }

  /**
   * Powers up the chip whose NV lives in `opts.stateDir` (or `opts.store`). An empty NV means a
   * chip fresh from the fab; a damaged NV file throws ChipNvError.
   */
  static open(opts: ChipOptions): Chip {
    const factory = FACTORIES[opts.personality];
    const store = opts.store ?? (opts.stateDir !== undefined ? new ChipNvFile(opts.stateDir, NV_FILE_NAMES[opts.personality]) : undefined);
    if (!store) throw new Error('a chip needs a stateDir or a store for its NV');
    const fresh = store.load() === undefined;
    return new Chip(factory(store, opts), store, opts, fresh);
  }

  get powered(): boolean {
    return this.device.powered;
  }

  get established(): boolean {
    return this.device.established;
  }

  get maxCommandSize(): number {
    return this.device.maxCommandSize;
  }

  /** The locality that holds the interface, if one requested it. */
  get locality(): number | undefined {
    return this.activeLocality;
  }

  get physicalPresence(): boolean {
    return this.presence;
  }

  /** The physical-presence pin (a jumper or a BIOS-asserted signal). */
  setPhysicalPresence(asserted: boolean): void {
    this.presence = asserted;
    // TPM 1.2 honours the pin when physicalPresenceHWEnable is set; TPM 2.0 when a policy asks for it.
    if (this.device instanceof Tpm12Device) this.device.engine.hwPhysicalPresence = asserted;
    else if (this.device instanceof Tpm2Device) this.device.engine.physicalPresence = asserted;
  }

  /**
   * TIS/CRB locality request: granted when no other locality holds the interface, or when a
   * higher locality asks (it seizes the interface, as TPM_ACCESS.Seize lets it).
   */
  requestLocality(locality: number): boolean {
    checkLocality(locality);
    if (this.activeLocality === undefined || this.activeLocality === locality || locality > this.activeLocality) {
      this.activeLocality = locality;
      return true;
    }
    return false;
  }

  relinquishLocality(locality: number): void {
    if (this.activeLocality === locality) this.activeLocality = undefined;
  }

  execute(command: Uint8Array, locality: number): Promise<Uint8Array> {
    return this.lock.run(() => this.executeLocked(command, locality));
  }

  /**
   * Runs `job` with the chip to itself: `exec` sends commands at `locality` without letting
   * anyone else's commands in between.
   */
  exclusive<T>(job: (exec: (command: Uint8Array) => Promise<Uint8Array>) => Promise<T>, locality = 0): Promise<T> {
    return this.lock.run(() => job((c) => this.executeLocked(c, locality)));
  }

  async powerOn(): Promise<void> {
    await this.lock.run(async () => {
      this.activeLocality = undefined;
      await this.device.powerOn();
    });
  }

  async powerOff(): Promise<void> {
    await this.lock.run(async () => {
      this.activeLocality = undefined;
      await this.device.powerOff();
    });
  }

  resetEstablished(locality: number): boolean {
    return this.device.resetEstablished(locality);
  }

  flush(): Promise<void> {
    return this.lock.run(async () => {
      await this.device.flush();
      await this.durable();
    });
  }

  private durable(): Promise<void> {
    return (this.store as StateStore & { durable?: () => Promise<void> }).durable?.() ?? Promise.resolve();
  }

  private async executeLocked(command: Uint8Array, locality: number): Promise<Uint8Array> {
    checkLocality(locality);
    if (this.activeLocality !== undefined && this.activeLocality !== locality) return Buffer.from(LOCALITY_REFUSED[this.family]);
    const started = this.latency ? performance.now() : 0;
    const response = await this.device.execute(command, locality);
    // Like a chip, answer only once what the command wrote to NV would survive a power loss.
    await this.durable();
    if (this.latency) {
      const wait = delayFor(this.latency, this.family, command) - (performance.now() - started);
      if (wait > 0) await this.sleep(wait);
    }
    return response;
  }
}

function checkLocality(locality: number): void {
  if (!Number.isInteger(locality) || locality < 0 || locality > 4) throw new RangeError(`locality ${locality} does not exist (0–4)`);
}
