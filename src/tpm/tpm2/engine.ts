import { randomInt } from 'node:crypto';
import { TpmRandom, type EntropySource } from '../crypto/random.ts';
import { CC, HT, RH, SU } from './constants.ts';
import type { CommandDef } from './command.ts';
import { COMMANDS } from './commands/index.ts';
import { compileTable, dispatch, type CompiledCommand } from './dispatcher.ts';
import { RC, TpmError } from './rc.ts';
import { CLOCK_UPDATE_INTERVAL, MAX_COMMAND_SIZE, MAX_RESPONSE_SIZE } from './limits.ts';
import { asBuffer, detached, Writer } from '../wire/buffer.ts';
import { TpmClock } from './state/clock.ts';
import { PcrBanks } from './state/pcr-banks.ts';
import { ObjectSlots, type TransientObject } from './state/objects.ts';
import { SessionSlots } from './auth/sessions.ts';
import type { TimeBase } from './auth/session-codec.ts';
import { Lockout } from './state/lockout.ts';
import { nvName } from './types/nv.ts';
import { deserializeObject } from './objects/persistent.ts';
import { nvIndexAccessible, nvOnStartupClear } from './commands/nv.ts';
import { trimAuth } from './auth/auth-value.ts';
import { MemoryStateStore, type StateStore } from './state/store.ts';
import { DEFAULT_IDENTITY, type TpmIdentity } from './capability/properties.ts';
import { ExternalOperationNeeded, type HardwareKeyBackend } from './hardware-keys.ts';
import { deriveRsa, deriveRsaAsync, generateRsa, type RsaKey } from '../crypto/rsa.ts';
import type { SeededStream } from '../crypto/drbg.ts';
import type { RsaKeyPool } from '../crypto/rsa-key-pool.ts';
import type { TpmObject } from './objects/model.ts';
import { decodeRunningState, encodeRunningHead, encodeRunningState, type RunningState } from './state/running-state.ts';
import { DeltaWriter } from '../state-delta.ts';
import { NO_POLICY, deserializeNv, manufacture, serializeNv, type AuthPolicy, type HierarchyEnables, type NvState, type SavedSessions } from './state/nv-state.ts';

export interface Tpm2Options {
  /** Where NV lives; default in memory. */
  store?: StateStore;
  /** Milliseconds, monotonic; default performance.now. */
  now?: () => number;
  /** Entropy for the RNG and for manufacturing; default the system's. */
  entropy?: EntropySource;
  /** PCRs per bank (PC-Client: 24). */
  pcrCount?: number;
  /** Transient object slots. */
  objectSlots?: number;
  /** Loaded session slots. */
  sessionSlots?: number;
  /** Manufacturer and vendor strings GetCapability reports. */
  identity?: TpmIdentity;
  /** Told of internal faults (a bug or an I/O failure); the command gets TPM_RC_FAILURE. */
  onInternalError?: (e: unknown) => void;
  /** A hardware-backed vTPM's link to the host chip for the keys it keeps there. */
  hardwareKeys?: HardwareKeyBackend;
  /**
   * Where fresh RSA keys come from: a key the pool has ready, and when it has none the command
   * raises ExternalOperationNeeded ('rsa-key') for its device model to wait for one and run it
   * again. Such an engine also has RSA primaries derived off the main thread ('derive-rsa').
   * Without a pool both are made inline, stopping the thread for as long.
   */
  rsaKeys?: RsaKeyPool;
}


const TABLE: ReadonlyMap<number, CompiledCommand> = compileTable(COMMANDS);


/**
 * One TPM 2.0: NV state, volatile state and the command table. Deterministic given its store,
 * clock and entropy source; no module-level state, so a process can hold thousands.
 */
export class Tpm2Engine {
  readonly pcrCount: number;
  readonly maxCommandSize = MAX_COMMAND_SIZE;
  readonly commands = TABLE;
  /** Scratch space for assembling responses (the dispatcher copies each one out). */
  readonly responseWriter = new Writer(MAX_RESPONSE_SIZE);
  private clockCheckAt = 0;
  private readonly now: () => number;
  readonly random: TpmRandom;
  readonly clock: TpmClock;
  readonly objects: ObjectSlots;
  readonly sessions: SessionSlots;
  nv: NvState;
  pcrs: PcrBanks;
  started = false;
  /** Whether the last Startup followed an orderly Shutdown (TPMA_STARTUP_CLEAR.orderly). */
  orderlyStart = false;
  readonly identity: TpmIdentity;
  /** Platform hierarchy authValue and policy: volatile, cleared at every Startup(CLEAR). */
  platformAuth: Buffer = Buffer.alloc(0);
  platformPolicy: AuthPolicy = NO_POLICY;
  /** TPMA_STARTUP_CLEAR hierarchy enables. */
  enables: HierarchyEnables = { ph: true, sh: true, eh: true, phNV: true };
  readonly lockout: Lockout;
  /** The null hierarchy's seed and proof: new at every TPM Reset, so its objects never outlive one. */
  nullSeed: Buffer;
  nullProof: Buffer;
  readonly hardwareKeys: HardwareKeyBackend | undefined;
  private readonly rsaKeys: RsaKeyPool | undefined;
  /** The key the pool made for the command waiting for it (rsaKeyWait). */
  private waitedRsaKey: { readonly key: RsaKey; readonly bits: number; readonly exponent: number } | undefined;
  /** Keys derived for commands waiting for them, by the position of the stream they came from. */
  private readonly derivedRsaKeys = new Map<string, { readonly key: RsaKey; readonly after: SeededStream }>();
  /** The platform's physical-presence signal, which PolicyPhysicalPresence requires. */
  physicalPresence = false;
  /** Set by handlers that changed NV; the dispatcher persists once per command. */
  private nvDirty = false;
  /** NV as the last commit serialized it (snapshots reuse it). */
  private nvBytes: Buffer | undefined;
  /** The parts of the running state last handed over (handOver), which the next change is made against. */
  private handedOver: { readonly head: Buffer; nv: Buffer; readonly pcrs: PcrBanks } | undefined;
  private readonly store: StateStore;
  private readonly onInternalError: (e: unknown) => void;

  constructor(opts: Tpm2Options = {}) {
    this.store = opts.store ?? new MemoryStateStore();
    this.pcrCount = opts.pcrCount ?? 24;
    if (!Number.isInteger(this.pcrCount) || this.pcrCount < 24 || this.pcrCount > 256) {
      throw new RangeError('pcrCount must be an integer from 24 to 256');
    }
    this.random = new TpmRandom(opts.entropy);
    this.identity = opts.identity ?? DEFAULT_IDENTITY;
    this.onInternalError = opts.onInternalError ?? (() => {});
    this.hardwareKeys = opts.hardwareKeys;
    this.rsaKeys = opts.rsaKeys;
    const now = opts.now ?? (() => performance.now());
    this.now = now;
    const stored = this.store.load();
    if (stored) {
      this.nv = deserializeNv(stored);
    } else {
      this.nv = manufacture(this.pcrCount, (n) => this.random.bytes(n));
      this.nv.shutdown = 'clear';
      this.store.save(serializeNv(this.nv));
    }
    this.clock = new TpmClock(now, this.nv.clock);
    this.objects = new ObjectSlots(opts.objectSlots ?? 3);
    this.sessions = new SessionSlots(opts.sessionSlots ?? 3);
    this.pcrs = new PcrBanks(this.pcrCount, this.nv.allocation);
    this.pcrs.initialize();
    // Time, not Clock: ClockSet can move Clock forward, which must not end a lockout early.
    this.lockout = new Lockout(() => this.nv.da, () => this.clock.time, () => this.markNvDirty());
    this.nullSeed = this.random.bytes(64);
    this.nullProof = this.random.bytes(64);
  }

  /** Executes one command; always returns a response. */
  execute(command: Uint8Array, locality = 0): Buffer {
    return dispatch(this, this.commands, asBuffer(command), locality);
  }

  /** _TPM_Init: volatile state is lost; the next command must be TPM2_Startup. */
  powerOn(): void {
    this.started = false;
    this.objects.clear();
    this.sessions.clear();
    this.parkedSequences.clear();
    // Startup restores the saved sessions a Shutdown(STATE) recorded.
    this.savedSessions.clear();
    this.clock.powerOn(this.nv.clock);
    this.startTimeRun();
    this.pcrs = new PcrBanks(this.pcrCount, this.nv.allocation);
    this.pcrs.initialize();
  }

  /** Power removed: nothing is written, exactly as a chip losing power writes nothing. */
  powerOff(): void {
    this.started = false;
  }

  /** Command audit state; audit.ts finds it here. */
  get audit() {
    return this.nv.audit;
  }

  markNvDirty(): void {
    this.nvDirty = true;
  }

  /** Called by the dispatcher after each successful command. */
  afterCommand(def: CommandDef): void {
    if (this.nv.shutdown !== 'none' && def.cc !== CC.Shutdown && def.cc !== CC.GetCapability) {
      // Anything done after Shutdown makes the saved state stale: the next start is not orderly.
      this.nv.shutdown = 'none';
      this.nv.saved = null;
      this.nvDirty = true;
    }
    // Checking the clock costs a BigInt; once a second is plenty for a 70-minute update interval.
    const t = this.now();
    if (t >= this.clockCheckAt) {
      this.clockCheckAt = t + 1000;
      if (this.clock.clock - this.nv.clock >= BigInt(CLOCK_UPDATE_INTERVAL)) this.persistClock();
    }
    if (this.nvDirty) this.commitNv();
  }

  persistClock(): void {
    this.nv.clock = this.clock.clock;
    this.nv.clockSafe = true;
    this.nvDirty = true;
  }

  commitNv(): void {
    this.nvBytes = serializeNv(this.nv);
    this.store.save(this.nvBytes);
    this.nvDirty = false;
  }

  commitNvIfDirty(): void {
    if (this.nvDirty) this.commitNv();
  }

  reportInternalError(e: unknown): void {
    this.onInternalError(e);
  }

  /** TPM2_Startup: TPM Reset, TPM Restart or TPM Resume, by what the last Shutdown saved. */
  startup(type: number, locality = 0): void {
    const nv = this.nv;
    this.orderlyStart = nv.shutdown !== 'none';
    if (type === SU.STATE) {
      if (nv.shutdown !== 'state' || !nv.saved || nv.pendingAllocation) throw TpmError.parameter(RC.VALUE, 1);
      this.pcrs.restoreState(nv.saved.pcrs);
      this.pcrs.updateCounter = nv.saved.pcrUpdateCounter;
      if (nv.saved.enables) this.enables = { ...nv.saved.enables };
      if (nv.saved.auditDigest) nv.audit.restoreDigest(nv.saved.auditDigest);
      this.restoreShutdownSessions(nv.saved.sessions);
      nv.restartCount++;
    } else {
      if (nv.pendingAllocation) {
        nv.allocation = nv.pendingAllocation;
        nv.pendingAllocation = null;
      }
      this.pcrs = new PcrBanks(this.pcrCount, nv.allocation);
      this.pcrs.initialize();
      // PC-Client: PCR 0 records the locality the TPM was started from in its last byte.
      this.pcrs.markStartupLocality(locality);
      if (nv.shutdown === 'state') {
        if (nv.saved?.auditDigest) nv.audit.restoreDigest(nv.saved.auditDigest);
        this.restoreShutdownSessions(nv.saved?.sessions);
        nv.restartCount++;
      } else {
        if (nv.shutdown === 'none') nv.clockSafe = false;
        nv.resetCount++;
        nv.restartCount = 0;
        this.lockout.onReset();
        this.nullSeed = this.random.bytes(64);
        this.nullProof = this.random.bytes(64);
      }
      this.platformAuth = Buffer.alloc(0);
      this.platformPolicy = NO_POLICY;
      this.enables = { ph: true, sh: true, eh: true, phNV: true };
      nvOnStartupClear(this);
    }
    nv.shutdown = 'none';
    nv.saved = null;
    this.started = true;
    this.markNvDirty();
  }

  /** TPM2_Shutdown: records an orderly shutdown and, for STATE, what Startup(STATE) restores. */
  shutdown(type: number): void {
    const nv = this.nv;
    if (type === SU.STATE) {
      // Saved PCRs would not fit a different allocation: only a CLEAR shutdown may follow PCR_Allocate.
      if (nv.pendingAllocation) throw TpmError.parameter(RC.TYPE, 1);
      nv.saved = {
        pcrs: this.pcrs.saveState(),
        pcrUpdateCounter: this.pcrs.updateCounter,
        enables: { ...this.enables },
        auditDigest: nv.audit.savedDigest(),
        sessions: this.savedSessionList(),
      };
      nv.shutdown = 'state';
    } else {
      nv.saved = null;
      nv.shutdown = 'clear';
    }
    this.persistClock();
  }

  /**
   * The whole running TPM — NV plus what it holds only while powered — for a vTPM that must outlive
   * its host process unseen by its guest (see state/running-state.ts for what is left out).
   */
  snapshot(): Buffer {
    const nv = this.currentNvBytes();
    return this.image(encodeRunningHead(this.runningState(), nv.length), nv);
  }

  /**
   * The running state for whoever keeps it (a vTPM's PSS): as a change (state-delta.ts) to the
   * state last handed over or resumed from, or whole when there is none or its layout moved (a
   * field changed length). Either way what it describes becomes the state handed over. A change
   * costs what changed — the head (tens of bytes), NV only when written, the PCRs extended — not
   * building and comparing the whole image, which is most of a durable PCR_Extend's work.
   */
  handOver(): { readonly delta: Buffer } | { readonly image: Buffer } {
    const nv = this.currentNvBytes();
    const head = encodeRunningHead(this.runningState(), nv.length);
    const before = this.handedOver;
    if (!before || before.pcrs !== this.pcrs || before.head.length !== head.length || before.nv.length !== nv.length) {
      // Kept for the engine's life, and updated in place from then on.
      this.handedOver = { head: detached(head), nv, pcrs: this.pcrs };
      this.pcrs.forgetChanges();
      return { image: this.image(head, nv) };
    }
    const w = new DeltaWriter(head.length + nv.length + this.pcrs.encodedSize).diff(0, before.head, head);
    if (nv !== before.nv) w.diff(head.length, before.nv, nv);
    this.pcrs.takeChanges(w, head.length + nv.length);
    const delta = w.finish();
    before.head.set(head);
    before.nv = nv;
    return { delta };
  }

  private image(head: Buffer, nv: Buffer): Buffer {
    return encodeRunningState(head, nv, (w) => this.pcrs.writeAll(w), this.pcrs.encodedSize);
  }

  /** NV as the last commit serialized it, or serialized now when it changed since. */
  private currentNvBytes(): Buffer {
    // NV changes far less often than PCRs: reuse what the last commit serialized.
    return this.nvDirty || !this.nvBytes ? (this.nvBytes = serializeNv(this.nv)) : this.nvBytes;
  }

  private runningState(): RunningState {
    return {
      started: this.started,
      orderlyStart: this.orderlyStart,
      pcrUpdateCounter: this.pcrs.updateCounter,
      enables: { ...this.enables },
      platformAuth: this.platformAuth,
      platformPolicy: this.platformPolicy,
      nullSeed: this.nullSeed,
      nullProof: this.nullProof,
      auditDigest: this.nv.audit.savedDigest(),
      contextSequence: this.contextSequence,
      sessionNumber: this.sessions.lastNumber,
      savedSessions: this.savedSessions,
      time: { origin: this.timeOrigin, clockMinusTime: this.clock.clockMinusTime, epoch: this.timeEpoch },
    };
  }

  /** Continues from a snapshot as though power had never been lost; NV goes to this engine's store. */
  resume(snapshot: Buffer): void {
    const { state, nv, readPcrs } = decodeRunningState(snapshot);
    this.nv = deserializeNv(nv);
    this.objects.clear();
    this.sessions.clear();
    this.parkedSequences.clear();
    this.persistentCache.clear();
    const pcrs = new PcrBanks(this.pcrCount, this.nv.allocation);
    readPcrs((r) => pcrs.readAll(r));
    this.pcrs = pcrs;
    this.pcrs.updateCounter = state.pcrUpdateCounter;
    this.started = state.started;
    this.orderlyStart = state.orderlyStart;
    this.enables = { ...state.enables };
    this.platformAuth = state.platformAuth;
    this.platformPolicy = state.platformPolicy;
    this.nullSeed = state.nullSeed;
    this.nullProof = state.nullProof;
    this.nv.audit.restoreDigest(state.auditDigest);
    this.contextSequence = state.contextSequence;
    this.restoreSavedSessions(state.sessionNumber, state.savedSessions);
    this.resumeTime(state.time);
    this.commitNv();
    // What was resumed from counts as handed over, so the next hand-over is a change to it, if
    // this engine writes it back byte for byte (else the next one is whole).
    this.handedOver = undefined;
    const again = this.handOver();
    if (!('image' in again && again.image.equals(snapshot))) this.handedOver = undefined;
  }

  /** The primary seed of a hierarchy (TPM_RH_OWNER, _ENDORSEMENT, _PLATFORM or _NULL). */
  seedOf(hierarchy: number): Buffer {
    const s = this.nv.hierarchy.seeds;
    return hierarchy === RH.OWNER ? s.owner : hierarchy === RH.ENDORSEMENT ? s.endorsement : hierarchy === RH.PLATFORM ? s.platform : this.nullSeed;
  }

  /** The proof of a hierarchy: the secret behind its tickets and saved contexts. */
  proofOf(hierarchy: number): Buffer {
    const p = this.nv.hierarchy.proofs;
    return hierarchy === RH.OWNER ? p.owner : hierarchy === RH.ENDORSEMENT ? p.endorsement : hierarchy === RH.PLATFORM ? p.platform : this.nullProof;
  }

  /** The hierarchy a permanent handle belongs to is enabled (TPMA_STARTUP_CLEAR). */
  hierarchyEnabled(h: number): boolean {
    switch (h) {
      case RH.OWNER:
        return this.enables.sh;
      case RH.ENDORSEMENT:
        return this.enables.eh;
      case RH.PLATFORM:
        return this.enables.ph;
      case RH.PLATFORM_NV:
        return this.enables.phNV;
      default:
        return true;
    }
  }

  /** TPM_RC_SUCCESS if the handle names something present, else the code the dispatcher numbers. */
  checkHandle(h: number): number {
    switch (h >>> 24) {
      case HT.PCR:
        return h < this.pcrCount ? RC.SUCCESS : RC.VALUE;
      case HT.PERMANENT:
        return this.hierarchyEnabled(h) ? RC.SUCCESS : RC.HIERARCHY;
      case HT.TRANSIENT:
        return this.objects.get(h) ? RC.SUCCESS : RC.REFERENCE_H0;
      case HT.PERSISTENT:
        // A disabled hierarchy's persistent objects are as good as absent.
        if (!(h >= PLATFORM_PERSISTENT ? this.enables.ph : this.enables.sh)) return RC.HANDLE;
        return this.nv.persistent.has(h) ? RC.SUCCESS : RC.HANDLE;
      case HT.NV_INDEX:
        return nvIndexAccessible(this, h);
      case HT.HMAC_SESSION:
      case HT.POLICY_SESSION:
        return this.sessions.get(h) ? RC.SUCCESS : RC.REFERENCE_H0;
      default:
        return RC.HANDLE;
    }
  }

  /** The authValue of an entity, trailing zeros removed. */
  authValue(h: number): Buffer {
    const hier = this.nv.hierarchy;
    switch (h >>> 24) {
      case HT.PERMANENT:
        if (h === RH.OWNER) return trimAuth(hier.auth.owner);
        if (h === RH.ENDORSEMENT) return trimAuth(hier.auth.endorsement);
        if (h === RH.LOCKOUT) return trimAuth(hier.auth.lockout);
        if (h === RH.PLATFORM || h === RH.PLATFORM_NV) return trimAuth(this.platformAuth);
        return EMPTY;
      case HT.NV_INDEX:
        return trimAuth(this.nv.nvIndices.get(h)?.auth ?? EMPTY);
      case HT.TRANSIENT:
      case HT.PERSISTENT:
        return trimAuth(this.objectAt(h)?.auth ?? EMPTY);
      default:
        return EMPTY;
    }
  }

  /** The authPolicy of an entity; empty when it has none (no policy session can satisfy it). */
  authPolicy(h: number): Buffer {
    const p = this.nv.hierarchy.policies;
    switch (h >>> 24) {
      case HT.PERMANENT:
        if (h === RH.OWNER) return p.owner.digest;
        if (h === RH.ENDORSEMENT) return p.endorsement.digest;
        if (h === RH.LOCKOUT) return p.lockout.digest;
        if (h === RH.PLATFORM || h === RH.PLATFORM_NV) return this.platformPolicy.digest;
        return EMPTY;
      case HT.NV_INDEX:
        return this.nv.nvIndices.get(h)?.authPolicy ?? EMPTY;
      case HT.TRANSIENT:
      case HT.PERSISTENT:
        return this.objectAt(h)?.authPolicy ?? EMPTY;
      default:
        return EMPTY;
    }
  }

  /** The Name of an entity: the handle for PCRs, permanent handles and sessions. */
  nameOf(h: number): Buffer {
    const ht = h >>> 24;
    if (ht === HT.TRANSIENT || ht === HT.PERSISTENT) {
      const obj = this.objectAt(h);
      if (obj?.name) return obj.name;
    } else if (ht === HT.NV_INDEX) {
      const ix = this.nv.nvIndices.get(h);
      if (ix) return nvName({ nvIndex: ix.handle, nameAlg: ix.nameAlg, attributes: ix.attributes, authPolicy: ix.authPolicy, dataSize: ix.dataSize });
    }
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(h >>> 0);
    return b;
  }

  /** A loaded transient object or a persistent one. */
  objectAt(h: number): TransientObject | undefined {
    if (h >>> 24 === HT.TRANSIENT) return this.objects.get(h);
    if (h >>> 24 !== HT.PERSISTENT) return undefined;
    let o = this.persistentCache.get(h);
    if (!o) {
      const blob = this.nv.persistent.get(h);
      if (!blob) return undefined;
      o = this.attachBackend(deserializeObject(blob));
      this.persistentCache.set(h, o);
    }
    return o;
  }

  /** A fresh RSA key (see Tpm2Options.rsaKeys). */
  freshRsaKey(bits: number, exponent: number): RsaKey {
    if (!this.rsaKeys) return generateRsa(bits, exponent);
    const waited = this.waitedRsaKey;
    if (waited && waited.bits === bits && waited.exponent === exponent) {
      this.waitedRsaKey = undefined;
      return waited.key;
    }
    const key = this.rsaKeys.take(bits, exponent);
    if (!key) throw new ExternalOperationNeeded({ kind: 'rsa-key', bits, exponent });
    return key;
  }

  /**
   * The RSA key `stream` derives (a primary's). An engine that can wait (one with an RSA key
   * pool) has the search run with its candidates tested off the main thread, and the command
   * run again; one that cannot derives it here.
   */
  derivedRsaKey(stream: SeededStream, bits: number, exponent: number): RsaKey {
    if (!this.rsaKeys) return deriveRsa(stream, bits, exponent);
    const at = stream.position();
    const derived = this.derivedRsaKeys.get(at);
    if (!derived) throw new ExternalOperationNeeded({ kind: 'derive-rsa', stream: stream.fork(), bits, exponent });
    this.derivedRsaKeys.delete(at);
    // Whatever the command draws next comes from where the search left the stream.
    stream.catchUp(derived.after);
    return derived.key;
  }

  /**
   * When `e` is a command's request for an RSA key: resolves once the key is made for this
   * engine (fresh from the pool, or derived), which the command gets when it runs again.
   * Undefined for anything else.
   */
  rsaKeyWait(e: unknown): Promise<void> | undefined {
    if (!(e instanceof ExternalOperationNeeded) || !this.rsaKeys) return undefined;
    const r = e.request;
    if (r.kind === 'rsa-key') {
      return this.rsaKeys.next(r.bits, r.exponent).then((key) => {
        this.waitedRsaKey = { key, bits: r.bits, exponent: r.exponent };
      });
    }
    if (r.kind !== 'derive-rsa') return undefined;
    const at = r.stream.position();
    return deriveRsaAsync(r.stream, r.bits, r.exponent).then((key) => {
      this.derivedRsaKeys.set(at, { key, after: r.stream });
    });
  }

  /** Gives a hardware-backed object this engine's way to its chip. */
  attachBackend<T extends TpmObject>(o: T): T {
    if (o.hardware) o.hardware.backend = this.hardwareKeys;
    return o;
  }

  /** Sequence objects whose contexts were saved (their hash state cannot be serialized). */
  readonly parkedSequences = new Map<string, TransientObject>();
  /** Sessions whose contexts were saved: handle → the sequence of the one blob that may bring it back. */
  readonly savedSessions = new Map<number, bigint>();
  private contextSequence = 0n;
  /** Which run of Time this is: saved sessions carry it, so a timeout from another run is not measured against this one. */
  private timeEpoch = randomInt(0x1_0000_0000);
  /** The wall-clock millisecond at which Time was zero: a restarted host process continues Time from it. */
  private timeOrigin = Date.now();

  /** Time restarts from zero (power-on): a new run of it. */
  private startTimeRun(): void {
    this.timeEpoch = randomInt(0x1_0000_0000);
    this.timeOrigin = Date.now();
  }

  nextContextSequence(): bigint {
    return ++this.contextSequence;
  }

  /** The saved sessions as a Shutdown(STATE) records them in NV. */
  private savedSessionList(): SavedSessions {
    return { lastNumber: this.sessions.lastNumber, saved: [...this.savedSessions].map(([h, seq]) => [h, seq.toString()]) };
  }

  private restoreSavedSessions(lastNumber: number, saved: Iterable<readonly [number, bigint]>): void {
    this.sessions.continueAfter(lastNumber);
    this.savedSessions.clear();
    for (const [h, seq] of saved) this.savedSessions.set(h, seq);
  }

  /** TPM Resume and Restart: the saved sessions the last Shutdown(STATE) recorded. */
  private restoreShutdownSessions(list: SavedSessions | undefined): void {
    this.restoreSavedSessions(list?.lastNumber ?? 0, (list?.saved ?? []).map(([h, seq]) => [h, BigInt(seq)] as const));
  }

  /**
   * The TPM kept its power while its host process restarted, so Time counts on from where it was
   * zero, downtime included, and Clock keeps its distance from Time (never going back past what
   * NV holds). A record without them (version 1) restarts Time, as power-on does.
   */
  private resumeTime(t: RunningState['time']): void {
    this.clock.powerOn(this.nv.clock);
    if (!t) return this.startTimeRun();
    const time = BigInt(Math.max(0, Date.now() - t.origin));
    const clock = time + t.clockMinusTime;
    this.clock.resume(time, clock > this.nv.clock ? clock : this.nv.clock);
    this.timeOrigin = t.origin;
    this.timeEpoch = t.epoch;
  }

  timeBase(): TimeBase {
    return { now: this.clock.time, epoch: this.timeEpoch };
  }

  /** Persistent objects already parsed out of NV (their keys made once, not per command). */
  private readonly persistentCache = new Map<number, TransientObject>();

  evictPersistentCache(h?: number): void {
    if (h === undefined) this.persistentCache.clear();
    else this.persistentCache.delete(h);
  }

  /**
   * Whether dictionary-attack protection covers the entity: lockoutAuth, objects without noDA
   * and NV indices without TPMA_NV_NO_DA. Every other permanent handle, PCRs and sequences are exempt.
   */
  isDaProtected(h: number): boolean {
    switch (h >>> 24) {
      case HT.PERMANENT:
        return h === RH.LOCKOUT;
      case HT.NV_INDEX:
        return ((this.nv.nvIndices.get(h)?.attributes ?? 0) & NV_NO_DA) === 0;
      case HT.TRANSIENT:
      case HT.PERSISTENT:
        return !(this.objectAt(h)?.noDA ?? true);
      default:
        return false;
    }
  }

  /** TPM_RC_AUTH_FAIL for entities under dictionary-attack protection, TPM_RC_BAD_AUTH for the rest. */
  authFailureCode(h: number): number {
    return this.isDaProtected(h) ? RC.AUTH_FAIL : RC.BAD_AUTH;
  }
}

const EMPTY = Buffer.alloc(0);
/** Persistent handles from here up belong to the platform hierarchy. */
const PLATFORM_PERSISTENT = 0x81800000;
/** TPMA_NV_NO_DA. */
const NV_NO_DA = 1 << 25;
