import { TpmRandom, type EntropySource } from '../crypto/random.ts';
import { generateRsa, type RsaKey } from '../crypto/rsa.ts';
import { MemoryStateStore, type StateStore } from '../tpm2/state/store.ts';
import { AUTH_USAGE, ES, KEY_USAGE, KH, NV_INDEX, NV_PER, SS, ST, STAG } from './constants.ts';
import type { Command12Def } from './command.ts';
import { COMMANDS } from './commands/index.ts';
import { compileTable, dispatch, type Compiled12 } from './dispatcher.ts';
import { RC, Tpm12Error } from './rc.ts';
import { SessionSlots } from './auth/sessions.ts';
import { KeySlots } from './state/key-slots.ts';
import { PcrBank } from './state/pcrs.ts';
import { rsaKeyParmsFor, type KeyObject12 } from './state/key-object.ts';
import { deserializeNv, freshStclear, manufacture, serializeNv, type NvArea, type Tpm12Nv } from './state/nv-state.ts';
import { decodeRunningState12, encodeRunningState12 } from './state/running-state.ts';
import type { StclearFlags } from './structures/flags.ts';
import { PCR_SELECT_MAX } from './structures/pcr.ts';
import { asBuffer } from '../wire/buffer.ts';

export interface Tpm12Identity {
  /** TPM_CAP_PROP_MANUFACTURER and tpmVendorID: four ASCII characters. */
  manufacturer: string;
  /** TPM_CAP_VERSION_INFO version revMajor / revMinor (firmware revision). */
  revMajor: number;
  revMinor: number;
}

export const DEFAULT_IDENTITY_12: Tpm12Identity = { manufacturer: 'VTPD', revMajor: 1, revMinor: 0 };

export interface Tpm12Options {
  /** Where NV lives; default in memory. */
  store?: StateStore;
  /** Entropy for nonces, tpmProof and the RNG; default the system's. */
  entropy?: EntropySource;
  /** Makes RSA key pairs (EK, SRK, wrapped keys); default node:crypto. Tests inject a pool. */
  rsaKeyGen?: (bits: number) => RsaKey;
  /** Key slots (TPM_CAP_PROP_MAX_KEYS); default 5. */
  keySlots?: number;
  /** Authorization session slots (TPM_CAP_PROP_MAX_AUTHSESS); default 8. */
  sessionSlots?: number;
  /** Monotonic counters that may exist at once (TPM_CAP_PROP_MAX_COUNTERS); default 8. */
  maxCounters?: number;
  /** Bytes of NV available to TPM_NV_DefineSpace; default 4096. */
  nvSpace?: number;
  /** Whether the manufacturer creates the EK at first power-on (default true). */
  manufactureEk?: boolean;
  identity?: Tpm12Identity;
  /** Told of internal faults (a bug or an I/O failure); the command gets TPM_FAIL. */
  onInternalError?: (e: unknown) => void;
}

const TABLE: ReadonlyMap<number, Compiled12> = compileTable(COMMANDS);

/** Largest command (TPM_CAP_PROP_INPUT_BUFFER), as swtpm reports it. */
export const MAX_COMMAND_SIZE_12 = 4096;

/**
 * One TPM 1.2: NV (EK, owner, SRK, flags, DIR, counters, NV areas) and volatile state (PCRs,
 * STCLEAR flags, loaded keys, sessions). Deterministic given its store, entropy and key source.
 */
export class Tpm12Engine {
  readonly maxCommandSize = MAX_COMMAND_SIZE_12;
  readonly commands = TABLE;
  readonly random: TpmRandom;
  readonly keys: KeySlots;
  readonly sessions: SessionSlots;
  readonly maxCounters: number;
  readonly nvSpace: number;
  readonly identity: Tpm12Identity;
  nv: Tpm12Nv;
  pcrs = new PcrBank();
  stclear: StclearFlags;
  started = false;
  /** The counter incremented since the last TPM_Startup(ST_CLEAR) (only one may be per boot). */
  activeCounter: number | null = null;
  /** The physical presence pin (hardware), honoured when physicalPresenceHWEnable is set. */
  hwPhysicalPresence = false;
  private nvDirty = false;
  private readonly store: StateStore;
  private readonly rsaKeyGen: (bits: number) => RsaKey;
  private readonly onInternalError: (e: unknown) => void;

  constructor(opts: Tpm12Options = {}) {
    this.store = opts.store ?? new MemoryStateStore();
    this.random = new TpmRandom(opts.entropy);
    this.rsaKeyGen = opts.rsaKeyGen ?? ((bits) => generateRsa(bits, 65537));
    this.keys = new KeySlots(positive(opts.keySlots ?? 5, 'keySlots'));
    this.sessions = new SessionSlots(positive(opts.sessionSlots ?? 8, 'sessionSlots'));
    this.maxCounters = positive(opts.maxCounters ?? 8, 'maxCounters');
    this.nvSpace = positive(opts.nvSpace ?? 4096, 'nvSpace', 1 << 20);
    this.identity = opts.identity ?? DEFAULT_IDENTITY_12;
    this.onInternalError = opts.onInternalError ?? (() => {});
    const stored = this.store.load();
    if (stored) {
      this.nv = deserializeNv(stored);
    } else {
      this.nv = manufacture();
      if (opts.manufactureEk ?? true) {
        this.nv.ek = this.makeEk();
        this.nv.flags.enableRevokeEK = false;
      }
      this.store.save(serializeNv(this.nv));
    }
    this.stclear = freshStclear(this.nv.flags.deactivated);
  }

  execute(command: Uint8Array, locality = 0): Buffer {
    return dispatch(this, this.commands, asBuffer(command), locality);
  }

  /** TPM_Init: volatile state is lost; the next command must be TPM_Startup. */
  powerOn(): void {
    this.started = false;
    this.keys.clear();
    this.sessions.clear();
    this.pcrs = new PcrBank();
    this.stclear = freshStclear(this.nv.flags.deactivated);
    this.activeCounter = null;
  }

  /** Power removed: nothing is written, as a chip losing power writes nothing. */
  powerOff(): void {
    this.started = false;
  }

  /**
   * The running TPM, volatile state and NV, as one record (see state/running-state.ts for what
   * is left out). Taken between commands, it is consistent.
   */
  snapshot(): Buffer {
    return encodeRunningState12(
      { started: this.started, pcrs: this.pcrs.values, stclear: this.stclear, activeCounter: this.activeCounter },
      this.nv,
    );
  }

  /**
   * Continues from a snapshot as though power had never been lost; NV goes to this engine's
   * store. A damaged snapshot is refused (Tpm12RunningStateError) before anything changes.
   */
  resume(snapshot: Buffer): void {
    const { state, nv } = decodeRunningState12(snapshot);
    this.nv = nv;
    this.keys.clear();
    this.sessions.clear();
    this.pcrs = new PcrBank();
    this.pcrs.values = state.pcrs;
    this.stclear = state.stclear;
    this.started = state.started;
    this.activeCounter = state.activeCounter;
    this.commitNv();
  }

  /** The state checks of part 3 section 1 that precede every command. */
  checkState(def: Command12Def): void {
    if (!this.started && !def.preStartup) throw new Tpm12Error(RC.INVALID_POSTINIT);
    if (this.nv.flags.disable && !def.whenDisabled) throw new Tpm12Error(RC.DISABLED);
    if (this.stclear.deactivated && !def.whenDeactivated) throw new Tpm12Error(RC.DEACTIVATED);
  }

  /** TPM_Startup. */
  startup(type: number): void {
    const nv = this.nv;
    if (type === ST.STATE) {
      if (!nv.saved) throw new Tpm12Error(RC.FAIL);
      this.pcrs.values = nv.saved.pcrs.map((b) => Buffer.from(b));
      this.stclear = { ...nv.saved.stclear };
    } else {
      this.pcrs.startupClear();
      this.stclear = freshStclear(nv.flags.deactivated || type === ST.DEACTIVATED);
      this.activeCounter = null;
      for (const a of nv.nv) {
        a.pub.bReadSTClear = false;
        a.pub.bWriteSTClear = false;
      }
    }
    this.keys.clear();
    this.sessions.clear();
    if (nv.saved) {
      nv.saved = null;
      this.markNvDirty();
    }
    this.started = true;
  }

  saveState(): void {
    this.nv.saved = { pcrs: this.pcrs.values.map((b) => Buffer.from(b)), stclear: { ...this.stclear } };
    this.markNvDirty();
  }

  /** Physical presence as commands see it: the TSC flag, or the pin where hardware presence is enabled. */
  get physicalPresence(): boolean {
    return this.stclear.physicalPresence || (this.nv.flags.physicalPresenceHWEnable && this.hwPhysicalPresence);
  }

  get tpmProof(): Buffer | undefined {
    return this.nv.owner?.tpmProof;
  }

  /** A loaded key by handle (the SRK by TPM_KH_SRK); anything else is TPM_INVALID_KEYHANDLE. */
  key(handle: number): KeyObject12 {
    if (handle === KH.SRK) {
      const srk = this.nv.owner?.srk;
      if (!srk) throw new Tpm12Error(RC.INVALID_KEYHANDLE);
      return srk;
    }
    const k = this.keys.get(handle);
    if (!k) throw new Tpm12Error(RC.INVALID_KEYHANDLE);
    return k;
  }

  generateRsa(bits: number): RsaKey {
    return this.rsaKeyGen(bits);
  }

  /** A fresh EK: RSA-2048 storage-type key, OAEP, used only to decrypt owner and identity secrets. */
  makeEk(): KeyObject12 {
    const rsa = this.generateRsa(2048);
    return {
      key12: false,
      usage: KEY_USAGE.STORAGE,
      flags: 0,
      authDataUsage: AUTH_USAGE.ALWAYS,
      parms: rsaKeyParmsFor(2048, ES.RSAESOAEP_SHA1_MGF1, SS.NONE),
      pcrInfo: Buffer.alloc(0),
      n: rsa.n,
      p: rsa.p,
      exponent: 65537,
      usageAuth: Buffer.alloc(20),
      migrationAuth: Buffer.alloc(20),
      parentPCRStatus: false,
      rsa,
    };
  }

  /**
   * The manufacturer's step after making the EK: stores its certificate in the TPM_NV_INDEX_EKCert
   * area (readable by anyone, writable only by the manufacturer, i.e. this method).
   */
  writeEkCertificate(cert: Uint8Array): void {
    const area: NvArea = {
      pub: {
        tag: STAG.NV_DATA_PUBLIC,
        nvIndex: NV_INDEX.EKCert,
        pcrInfoRead: emptyPcrShort(),
        pcrInfoWrite: emptyPcrShort(),
        permission: { tag: STAG.NV_ATTRIBUTES, attributes: NV_PER.OWNERWRITE | NV_PER.WRITEALL },
        bReadSTClear: false,
        bWriteSTClear: false,
        bWriteDefine: false,
        dataSize: cert.length,
      },
      auth: Buffer.alloc(20),
      data: Buffer.from(cert),
    };
    this.nv.nv = this.nv.nv.filter((a) => a.pub.nvIndex !== NV_INDEX.EKCert);
    this.nv.nv.push(area);
    this.commitNv();
  }

  markNvDirty(): void {
    this.nvDirty = true;
  }

  afterCommand(): void {
    if (this.nvDirty) this.commitNv();
  }

  commitNv(): void {
    this.store.save(serializeNv(this.nv));
    this.nvDirty = false;
  }

  commitNvIfDirty(): void {
    if (this.nvDirty) this.commitNv();
  }

  reportInternalError(e: unknown): void {
    this.onInternalError(e);
  }
}

export function emptyPcrShort() {
  return { pcrSelection: Buffer.alloc(PCR_SELECT_MAX), localityAtRelease: 0x1f, digestAtRelease: Buffer.alloc(20) };
}

function positive(n: number, name: string, max = 1024): number {
  if (!Number.isInteger(n) || n < 1 || n > max) throw new RangeError(`${name} must be an integer from 1 to ${max}`);
  return n;
}
