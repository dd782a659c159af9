/**
 * The protected storage service: keeps each vTPM's NVM encrypted under a storage key that only
 * this host's chip releases, and only while the host TCB, the GVTPM manager and the PSS measure
 * as they did when the key was made; and refuses to hand back any NVM that is not exactly the
 * requesting vTPM's latest.
 *
 * Durability. `save` resolves once the blob, its record and the head are in a synced level batch
 * and the chip's monotonic counter has moved to the batch's epoch: a vTPM that releases its
 * response only then loses nothing to a crash. Concurrent saves share one batch and one counter
 * increment (group-commit.ts), so throughput grows with the number of vTPMs saving at once; the
 * next batch is written while the previous one's increment runs (establish.ts says why that is
 * safe), and a crowd larger than a window runs its commands while the window before it syncs.
 *
 * Deltas. While the PSS holds a VM's latest image (after saving or loading it, until `release`),
 * a save that changes little of it stores only the change, as a delta blob naming its
 * predecessor (blob.ts, state-delta.ts); every MAX_CHAIN saves, or when most of the image
 * changed, the whole image is stored again and the deltas before it are deleted in the same
 * batch. A PCR_Extend then writes tens of bytes, not the vTPM's whole NVM. A model whose engine
 * can tell what it changed hands over that change (a StateChange) instead of its whole image:
 * the PSS patches the image it holds in place, if it holds the very state the change follows,
 * and otherwise asks for the whole image — so neither side builds or compares whole images on
 * the path every durable command takes.
 *
 * `{ durable: false }` is the per-VM batching option and trades durability for speed: the save
 * returns at once, holding the image in memory, and only the newest image of each VM is sealed,
 * when the next commit window takes it — a vTPM saving faster than windows land pays for one
 * seal, delta and record per window, not per command. If no durable save shares that window, it
 * is written without sync and without a counter increment, so (a) a process crash before the
 * window lands loses it, a host crash before the next synced commit may lose it, and (b) until a
 * durable commit follows, a rollback to the last durable state is not detected. Loads see it
 * immediately either way. Versions count sealed images, so a batched VM's advance by one per
 * window it saved in, not per save.
 *
 * Memory. Of a VM whose vTPM is not loaded the PSS keeps only its chain's span and its record's
 * keyed digest (StoredRef): the record itself is read back, and checked against that digest, when
 * the vTPM loads again. Records stay in memory only while the PSS holds the VM's image or a change
 * of its is not yet committed.
 *
 * A violation concerns one vTPM and leaves the others running; only a condition of the database
 * as a whole (found at open: TCB changed, rollback, foreign or edited database) refuses them all.
 *
 * Failure. A commit that cannot be written or whose counter increment fails (the disk or the
 * host TPM stopped answering) fails its saves and every save after it, since what the database
 * and the counter hold is no longer known. recover() finds out again, from the disk and the
 * chip, as opening does; the owner of the PSS calls it once the cause may have gone.
 *
 * Upgrades. The storage key is sealed to the GVTPM components' PCRs, so new vtpmd code would find
 * it refused. stageBinding() seals it a second time, to the values those PCRs will hold once the
 * new code is measured (code-upgrade.ts); the first open the chip releases it to under that
 * binding makes it the only one, after the database has been proven with the key it released.
 */
import pino, { type Logger } from 'pino';
import type { ChipClient } from '../hwtpm/chip-client.ts';
import { GVTPM_PCR, hostTcbPcrs } from '../hwtpm/host-boot.ts';
import { bufferedEntropy, systemEntropy, type EntropySource } from '../tpm/crypto/random.ts';
import { MAX_MEASUREMENT_BYTES, MAX_VM_ID_BYTES, NONCE_BYTES } from './blob.ts';
import { BlobSealer, type EncodedRecord, type SealThreadMode } from './blob-sealer.ts';
import { encodeDelta, handedId, maxDeltaBytes, patchInPlace, type StateChange } from '../tpm/state-delta.ts';
import { PssError, PssViolation, type PssCondition } from './errors.ts';
import { establish, MAX_UNCONFIRMED_COMMITS, type Established } from './establish.ts';
import { GroupCommit, type Written } from './group-commit.ts';
import { codeTransitionsMac, headMac, recordDigest, xorInto, type CodeTransition } from './integrity.ts';
import { openDatabase, type PssDatabase } from './database.ts';
import { decodeMeta, decodeRecord, encodeHead, encodeMeta, encodeRecord, KEY, type Meta, type StagedKey, type VmRecord } from './records.ts';
import { constantTimeEqual } from '../tpm/crypto/hash.ts';
import { verifyRestore } from './verify.ts';
import { asBuffer, detached } from '../tpm/wire/buffer.ts';

export interface ProtectedStorageOptions {
  /** The level database directory (created if missing). */
  dir: string;
  /** An owned chip client (takeOwnership done). */
  chip: ChipClient;
  /** PCRs the storage key is sealed to; default the host TCB, the GVTPM manager and the PSS. */
  bindPcrs?: readonly number[];
  logger?: Logger;
  /** Where storage keys, PSS ids and nonces come from; default the system's. */
  entropy?: EntropySource;
  /**
   * Most saves one commit carries (default 128). Beyond it, saves wait for the next commit while
   * preparing theirs, so one crowd's commands run while another's commit is on its way to disk
   * (group-commit.ts).
   */
  maxCommitBatch?: number;
  /**
   * Where blobs are sealed (blob-sealer.ts): 'auto' (the default) moves sealing to a worker
   * thread once a commit window carries a crowd of saves; 'always' from the start; 'never' keeps
   * it on the calling thread.
   */
  sealThread?: SealThreadMode;
}

export interface SaveOptions {
  /** Default true. False: the per-VM batching option (see the module comment for the trade). */
  durable?: boolean;
}

export interface PssStatus {
  /** Hex; undefined only when the database is unreadable. */
  readonly pssId: string | undefined;
  readonly counterId: number | undefined;
  /** The epoch of the last durable commit written; the chip counter reaches it before that commit is acknowledged. */
  readonly epoch: bigint | undefined;
  readonly vms: number;
  /** Commit windows since open. */
  readonly commits: number;
  /** Set when the PSS refuses every vTPM. */
  readonly refusal: PssCondition | undefined;
  /** Why a commit failed (the host TPM or the disk stopped answering), once one has: no save is taken until recover() succeeds. */
  readonly failure: string | undefined;
  /** Why the last recover() since the failure did not bring the PSS back. */
  readonly recoveryError: string | undefined;
  /** Times recover() brought the PSS back from a failed commit. */
  readonly recoveries: number;
  /** VMs whose record or image is in memory (loaded vTPMs, uncommitted changes); the rest are on disk only. */
  readonly held: number;
  /** Whether the sealing thread is running (blob-sealer.ts): it starts with the first crowded commit window. */
  readonly sealingThread: boolean;
  /** When an upgrade staged a binding of the storage key that still waits for its code (ISO 8601). */
  readonly upgradeStagedAt: string | undefined;
}

/**
 * What the PSS keeps in memory of a VM whose state is on disk only: its chain's span (to name its
 * blobs, and to delete them) and its committed record's keyed digest, as a latin1 string (a
 * Buffer per VM costs several times its 32 bytes), which the record read back must match.
 */
interface StoredRef {
  readonly version: number;
  readonly base: number;
  readonly digest: string;
}

/**
 * One VM's changes in a commit window: blob keys to delete, then blobs to write, then its record
 * (undefined: the VM is removed).
 */
interface Change {
  readonly vmId: string;
  readonly record: VmRecord | undefined;
  readonly dels: readonly string[];
  readonly puts: readonly (readonly [string, Buffer])[];
  /** Followed by the VM's batched image, sealed when the window takes this change. */
  readonly sealsWaitingImage?: true;
  /** Settles when the bytes of `puts` and the record's blob id are final (blob-sealer.ts). */
  readonly sealing?: Promise<void> | undefined;
  /** The record encoded with its digest, when sealed where that was done too; else the commit encodes it. */
  readonly encoded?: EncodedRecord | undefined;
}

/** What a batched save queues: nothing yet but the promise to seal the VM's image in time. */
function waitingImageChange(vmId: string): Change {
  return { vmId, record: undefined, dels: [], puts: [], sealsWaitingImage: true };
}

function isOnlyWaitingImage(c: Change): boolean {
  return c.record === undefined && c.dels.length === 0 && c.puts.length === 0;
}

/** A save still waiting for its window and a later one: the later's deltas need the earlier's blobs. */
function mergeChanges(earlier: Change, later: Change): Change {
  if (later.sealsWaitingImage && isOnlyWaitingImage(later)) return isOnlyWaitingImage(earlier) ? later : { ...earlier, sealsWaitingImage: true };
  const restarts = later.record === undefined || later.record.base === later.record.version;
  // One VM's seals complete in order, so the later one's completion covers the earlier's.
  const sealing = later.sealing ?? earlier.sealing;
  return { vmId: later.vmId, record: later.record, dels: [...earlier.dels, ...later.dels], puts: restarts ? later.puts : [...earlier.puts, ...later.puts], sealing, encoded: later.encoded };
}

/** Which versions a VM's chain holds: base (the whole image) … version. */
type ChainSpan = Pick<VmRecord, 'base' | 'version'>;

/** The deltas a record's chain holds (versions base + 1 … version). */
function deltaKeys(vmId: string, r: ChainSpan): string[] {
  const keys: string[] = [];
  for (let v = r.base + 1; v <= r.version; v++) keys.push(KEY.delta(vmId, v));
  return keys;
}

/** Every key of a record's chain, whole image first. */
function chainKeys(vmId: string, r: ChainSpan): string[] {
  return [KEY.blob(vmId), ...deltaKeys(vmId, r)];
}

const DEFAULT_MAX_COMMIT_BATCH = 128;
/** Waiters a commit answers per turn of the event loop (group-commit.ts). */
const ANSWER_SLICE = 64;
/** Saves in one commit window that make sealing worth a thread of its own. */
const SEALING_CROWD = 32;
/** Saves per whole image: bounds what a load reads and verifies, and what a chain costs on disk. */
const MAX_CHAIN = 64;

/** An image the PSS holds, what the model handed over for it, and whether the PSS may patch it as is. */
interface HeldImage {
  image: Buffer;
  /** What the model handed over for it (handedId), or the image load returned. */
  handed: object;
  /** Someone else may read it (the model that handed it over, a seal not yet made): patch a copy. */
  shared: boolean;
}

/** A batched save's image, until its window seals it. */
interface WaitingImage {
  measurement: Uint8Array;
  image: Buffer;
  handed: object;
  /** Made by the PSS, so later batched changes may patch it in place. */
  own: boolean;
}

export function defaultBindPcrs(): number[] {
  return [...hostTcbPcrs(), GVTPM_PCR.MANAGER, GVTPM_PCR.PSS];
}

export class ProtectedStorage {
  /**
   * Records held in memory, overlaying `stored`: those of VMs whose image the PSS holds and those
   * not yet committed; null for a removal not yet committed. What loads check against.
   */
  private readonly latest = new Map<string, VmRecord | null>();
  /** VMs with a change queued or in flight: their `latest` entry must stay until it is committed. */
  private readonly unsettled = new Set<string>();
  /** Blobs queued but not yet in the database, by key. */
  private readonly pendingBlobs = new Map<string, Buffer>();
  /** The latest image of each VM the PSS sealed or loaded since it last released it: what deltas are made against. */
  private readonly images = new Map<string, HeldImage>();
  /** Batched saves' newest images, not sealed yet (see the module comment). */
  private readonly waitingImages = new Map<string, WaitingImage>();
  /** Every committed record, as a span and digest; `aggregate` is the XOR of the digests, as the head holds it. */
  private readonly stored = new Map<string, StoredRef>();
  private aggregate: Buffer;
  private epoch: bigint;
  private readonly committer: GroupCommit<Change>;
  private readonly sealer: BlobSealer | undefined;
  private failure: PssError | undefined;
  /** What made the commit fail, for status(). */
  private failureCause: string | undefined;
  /** The chip counter's last increment, or the one in progress. */
  private counting: Promise<void> = Promise.resolve();
  private closed = false;
  private recoveries = 0;
  /** Why the last recover() after the failure did not succeed. */
  private recoveryError: string | undefined;
  private recovering: Promise<boolean> | undefined;
  private readonly failureListeners = new Set<(cause: string) => void>();
  private stagedAt: string | undefined;
  private transitions: readonly CodeTransition[];

  private constructor(
    private db: PssDatabase,
    private readonly dir: string,
    private readonly chip: ChipClient,
    private readonly log: Logger,
    private readonly entropy: EntropySource,
    private readonly state: Established | undefined,
    /** Set when the database as a whole cannot be trusted. */
    readonly refusal: PssViolation | undefined,
    private readonly ids: { pssId: Buffer | undefined; counterId: number | undefined },
    maxCommitBatch: number,
    sealThread: SealThreadMode,
  ) {
    this.sealer = state && new BlobSealer(state.blobKey, state.storageKey, state.keys.record, sealThread, log);
    this.committer = new GroupCommit<Change>((changes, durable) => this.commit(changes, durable), {
      maxWindow: maxCommitBatch,
      maxUnconfirmed: MAX_UNCONFIRMED_COMMITS,
      answerSlice: ANSWER_SLICE,
      merge: mergeChanges,
    });
    this.aggregate = Buffer.from(state?.aggregate ?? Buffer.alloc(32));
    this.epoch = state?.epoch ?? 0n;
    this.stagedAt = state?.stagedAt;
    this.transitions = state?.codeTransitions ?? [];
    for (const [vmId, { record, digest }] of state?.records ?? []) this.stored.set(vmId, storedRef(record, digest));
    // The records themselves are read back when their VM loads.
    state?.records.clear();
  }

  /**
   * Opens (or creates) the PSS in `opts.dir`. A database that cannot be trusted — the chip will not
   * release the key (TCB changed), it is older than the chip counter (rollback), it was edited or
   * comes from another host — still opens, in a refusing state: every vTPM operation then throws
   * that PssViolation, and `refusal` says which.
   */
  static async open(opts: ProtectedStorageOptions): Promise<ProtectedStorage> {
    const log = (opts.logger ?? pino({ enabled: false })).child({ component: 'pss' });
    const entropy = opts.entropy ?? bufferedEntropy(systemEntropy);
    const batch = opts.maxCommitBatch ?? DEFAULT_MAX_COMMIT_BATCH;
    if (!Number.isInteger(batch) || batch < 1) throw new PssError('bad-request', `maxCommitBatch must be a positive integer, not ${batch}`);
    const db = await openDatabase(opts.dir);
    try {
      const r = await establish(db, opts.chip, log, { bindPcrs: opts.bindPcrs ?? defaultBindPcrs(), entropy });
      if ('refusal' in r) {
        log.error({ condition: r.refusal.condition }, r.refusal.message);
        return new ProtectedStorage(db, opts.dir, opts.chip, log, entropy, undefined, r.refusal, { pssId: r.pssId, counterId: r.counterId }, batch, 'never');
      }
      log.info({ pssId: r.pssId.toString('hex'), epoch: r.epoch.toString(), vms: r.records.size }, 'PSS opened');
      return new ProtectedStorage(db, opts.dir, opts.chip, log, entropy, r, undefined, { pssId: r.pssId, counterId: r.counterId }, batch, opts.sealThread ?? 'auto');
    } catch (e) {
      await db.close().catch(() => undefined);
      throw e;
    }
  }

  /**
   * Stores `nvm` as the latest state of `vmId`'s vTPM, made by the model measuring `measurement`.
   * Durable (the default): resolves once a crash can no longer lose it. The PSS keeps `nvm` (to
   * make the next save a delta): the caller must not change it afterwards.
   */
  save(vmId: string, measurement: Uint8Array, nvm: Uint8Array | StateChange, opts: SaveOptions = {}): Promise<void> {
    let state: Established;
    try {
      state = this.usable(vmId);
      checkRequest(vmId, measurement);
    } catch (e) {
      return Promise.reject(e);
    }
    if (opts.durable ?? true) {
      // The batched image this one supersedes needs no blob of its own: deltas are made against
      // the last sealed image, whatever came between.
      this.waitingImages.delete(vmId);
      return this.committer.submit(vmId, this.seal(state, vmId, measurement, nvm));
    }
    this.wait(vmId, measurement, nvm);
    // A failed commit is recorded in `failure` and reported by the next operation.
    this.committer.defer(vmId, waitingImageChange(vmId));
    return Promise.resolve();
  }

  /**
   * Holds a batched save's image until its window: a change patched into the image waiting (or a
   * copy of the one held) where it follows that, so that a vTPM saving faster than windows land
   * neither builds nor copies its whole image per command.
   */
  private wait(vmId: string, measurement: Uint8Array, nvm: Uint8Array | StateChange): void {
    const waiting = this.waitingImages.get(vmId);
    const base = waiting ?? this.images.get(vmId);
    const handed = handedId(nvm);
    if (base && !(nvm instanceof Uint8Array) && base.handed === nvm.after) {
      const image = waiting?.own ? waiting.image : Buffer.from(base.image);
      if (patchInPlace(image, nvm.delta)) {
        this.waitingImages.set(vmId, { measurement, image, handed, own: true });
        return;
      }
    }
    this.waitingImages.set(vmId, { measurement, image: wholeImage(nvm), handed, own: !(nvm instanceof Uint8Array) });
  }

  /**
   * Seals `nvm` as `vmId`'s next version: a delta against its last sealed image where one will do.
   * `handed` is what the model handed over for it, when not `nvm` itself.
   */
  private seal(state: Established, vmId: string, measurement: Uint8Array, nvm: Uint8Array | StateChange, handed = handedId(nvm)): Change {
    const prev = this.current(vmId);
    const version = (prev?.version ?? 0) + 1;
    const nonce = this.entropy(NONCE_BYTES);
    // Only a record in memory can start a delta: its image is held (a VM on disk only has none).
    const held = prev && 'measurement' in prev ? prev : undefined;
    const sameModel = held !== undefined && held.measurement.equals(measurement);
    // The record keeps it while it is in memory: the previous record's copy when it is the same.
    const m = sameModel ? held.measurement : detached(measurement);
    const header = { pssId: state.pssId, vmId, measurement: m, version, nonce };
    const kept = this.images.get(vmId);
    const given = this.patched(kept, nvm);
    const image = given ? kept!.image : wholeImage(nvm);
    // A chain holds one model's saves only: a new measurement starts a new image.
    const chains = sameModel && kept !== undefined && version - held.base < MAX_CHAIN;
    const delta = !chains ? undefined : given ? (given.length <= maxDeltaBytes(image.length) ? given : undefined) : encodeDelta(kept.image, image);
    // A delta continues the held chain; a whole image starts a new one, dropping the old deltas.
    const chain =
      held && delta
        ? { base: held.base, key: KEY.delta(vmId, version), header: { ...header, prevId: held.blobId }, body: delta, dels: [] }
        : { base: version, key: KEY.blob(vmId), header, body: image, dels: prev ? deltaKeys(vmId, prev) : [] };
    const sealed = this.sealer!.seal(vmId, chain.header, chain.body, chain.base);
    const record: VmRecord = { vmId, measurement: m, version, base: chain.base, blobId: sealed.id, nonce };
    const change: Change = { vmId, record, dels: chain.dels, puts: [[chain.key, sealed.blob]], sealing: sealed.done, encoded: sealed.record };
    this.latest.set(vmId, record);
    this.unsettled.add(vmId);
    if (given) {
      kept!.handed = handed;
      // Sealed whole, it is read by its seal later.
      if (chain.body === image) kept!.shared = true;
    } else this.images.set(vmId, { image, handed, shared: true }); // the model's, too

    for (const key of change.dels) this.pendingBlobs.delete(key);
    for (const [key, blob] of change.puts) this.pendingBlobs.set(key, blob);
    return change;
  }

  /**
   * Applies a model's change to the image held for it, if that is exactly the state the change
   * follows (else the caller asks the model for its whole image); the change's delta, or undefined.
   */
  private patched(kept: HeldImage | undefined, nvm: Uint8Array | StateChange): Buffer | undefined {
    if (!kept || nvm instanceof Uint8Array || kept.handed !== nvm.after) return undefined;
    const image = kept.shared ? Buffer.from(kept.image) : kept.image;
    if (!patchInPlace(image, nvm.delta)) return undefined;
    kept.image = image;
    kept.shared = false;
    return nvm.delta;
  }

  /** `vmId`'s waiting batched image, sealed and no longer waiting; undefined when it has none. */
  private takeWaiting(vmId: string): Change | undefined {
    const u = this.waitingImages.get(vmId);
    if (!u) return undefined;
    this.waitingImages.delete(vmId);
    return this.seal(this.state!, vmId, u.measurement, u.image, u.handed);
  }

  /** Seals `vmId`'s batched image now, into the next window, if it has one waiting. */
  private sealWaiting(vmId: string): void {
    const sealed = this.takeWaiting(vmId);
    if (sealed) this.committer.defer(vmId, sealed);
  }

  /** A window's change with its batched image sealed in; undefined when nothing is left to write. */
  private sealedForWindow(c: Change): Change | undefined {
    if (!c.sealsWaitingImage) return c;
    const { sealsWaitingImage: _, ...written } = c;
    const base = isOnlyWaitingImage(c) ? undefined : written;
    const sealed = this.takeWaiting(c.vmId);
    if (!sealed) return base;
    return base ? mergeChanges(base, sealed) : sealed;
  }

  /** `vmId`'s latest record (in memory) or stored span (on disk only); undefined when it has none. */
  private current(vmId: string): VmRecord | StoredRef | undefined {
    const held = this.latest.get(vmId);
    return held === undefined ? this.stored.get(vmId) : (held ?? undefined);
  }

  /** Drops `vmId`'s record from memory once nothing needs it there: it is committed and its image not held. */
  private settle(vmId: string): void {
    if (!this.unsettled.has(vmId) && !this.images.has(vmId) && !this.waitingImages.has(vmId)) this.latest.delete(vmId);
  }

  /**
   * Forgets the image deltas are made against (a vTPM leaving memory); its next save is whole, and
   * its record leaves memory once committed.
   */
  release(vmId: string): void {
    if (this.state && !this.failure) this.sealWaiting(vmId);
    this.images.delete(vmId);
    this.settle(vmId);
  }

  /**
   * The latest NVM of `vmId`'s vTPM, or undefined when it has none. Throws a PssViolation naming
   * the condition when the stored state is not exactly that vTPM's latest, made here, by the model
   * measuring `measurement` or one of the `earlier` models it may continue from.
   */
  async load(vmId: string, measurement: Uint8Array, earlier: readonly Uint8Array[] = []): Promise<Buffer | undefined> {
    for (;;) {
      const state = this.usable(vmId);
      checkRequest(vmId, measurement);
      this.sealWaiting(vmId);
      // Its latest blobs and record are final only once sealed (a seal that failed fails the load).
      const sealing = this.sealer!.pending(vmId);
      if (sealing) {
        await sealing;
        continue;
      }
      const latest = this.current(vmId);
      if (!latest) return undefined;
      // Queued blobs leave this map only once they are in the database, so whatever is not
      // here now is read from there; so is the record of a VM on disk only.
      const keys = chainKeys(vmId, latest);
      const queued = keys.map((k) => this.pendingBlobs.get(k));
      const missing = keys.filter((_, i) => queued[i] === undefined);
      const onDiskOnly = !('measurement' in latest);
      if (onDiskOnly) missing.push(KEY.record(vmId));
      const stored = missing.length ? ((await this.db.getMany(missing)) as (Buffer | undefined)[]) : [];
      // A save or removal that landed while the blobs were being read: check against the new state.
      if (this.current(vmId) !== latest) continue;
      let next = 0;
      const blobs = queued.map((b) => b ?? stored[next++]);
      try {
        const record = onDiskOnly ? this.readBack(state, vmId, latest, stored[next]) : latest;
        // State of an earlier model an upgrade authorized: checked as that model's; its next save is the new model's.
        const expected = earlier.some((m) => record.measurement.equals(m)) ? record.measurement : Buffer.from(measurement);
        const nvm = verifyRestore({ blobKey: state.blobKey, pssId: state.pssId, vmId, measurement: expected, record, blobs });
        // The very buffer returned: what the model resumes from and names as the state its first change follows.
        this.images.set(vmId, { image: nvm, handed: nvm, shared: true });
        if (onDiskOnly) this.latest.set(vmId, record);
        return nvm;
      } catch (e) {
        if (e instanceof PssViolation) this.log.warn({ vmId, condition: e.condition }, e.message);
        throw e;
      }
    }
  }

  /**
   * The record of a VM on disk only, as read back from the database: it must be the one committed,
   * which the open checked against the head, or the database was changed under the running PSS.
   */
  private readBack(state: Established, vmId: string, ref: StoredRef, bytes: Buffer | undefined): VmRecord {
    const key = KEY.record(vmId);
    if (!bytes || !constantTimeEqual(recordDigest(state.keys.record, key, bytes), Buffer.from(ref.digest, 'latin1'))) {
      throw new PssViolation('modified', vmId, `its record in the database was ${bytes ? 'altered or replaced' : 'removed'} after the PSS opened`);
    }
    return decodeRecord(bytes);
  }

  /** Forgets `vmId`'s state; durable when it resolves. */
  async remove(vmId: string): Promise<void> {
    this.usable(vmId);
    this.waitingImages.delete(vmId);
    const prev = this.current(vmId);
    if (!prev) return;
    this.latest.set(vmId, null);
    this.unsettled.add(vmId);
    this.images.delete(vmId);
    const dels = chainKeys(vmId, prev);
    for (const key of dels) this.pendingBlobs.delete(key);
    await this.committer.submit(vmId, { vmId, record: undefined, dels, puts: [] });
  }

  /** The version of `vmId`'s latest save (1 for its first), or undefined when it has none. */
  version(vmId: string): number | undefined {
    this.usable(vmId);
    this.sealWaiting(vmId);
    return this.current(vmId)?.version;
  }

  /** The VMs with stored state. */
  list(): string[] {
    this.usable(undefined);
    return this.vmIds().sort();
  }

  private vmIds(): string[] {
    return [...new Set([...this.stored.keys(), ...this.latest.keys(), ...this.waitingImages.keys()])].filter((vmId) => this.current(vmId) || this.waitingImages.has(vmId));
  }

  /** Resolves once every save made so far (durable or not) is committed. */
  async flush(): Promise<void> {
    await this.committer.drain();
    if (this.failure) throw this.failure;
  }

  /** Commits what is queued, then closes the database; later calls throw PssError('closed'). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.committer.drain();
    await this.sealer?.close();
    await this.db.close();
    this.state?.storageKey.fill(0);
    this.state?.keys.record.fill(0);
    this.state?.keys.head.fill(0);
    this.state?.keys.counter.fill(0);
  }

  status(): PssStatus {
    return {
      pssId: this.ids.pssId?.toString('hex'),
      counterId: this.ids.counterId,
      epoch: this.state ? this.epoch : undefined,
      vms: this.vmIds().length,
      commits: this.committer.committed,
      refusal: this.refusal?.condition,
      failure: this.failureCause,
      recoveryError: this.recoveryError,
      recoveries: this.recoveries,
      held: new Set([...this.latest.keys(), ...this.images.keys(), ...this.waitingImages.keys()]).size,
      sealingThread: this.sealer?.threadRunning ?? false,
      upgradeStagedAt: this.stagedAt,
    };
  }

  /**
   * Seals the storage key a second time, to `expected` values of the PCRs it is bound to (those
   * upgraded code will give them; the others' present values), beside the binding in use. Replaces
   * an earlier staging.
   */
  async stageBinding(expected: ReadonlyMap<number, Buffer>): Promise<StagedKey> {
    const state = this.usable(undefined);
    const meta = await this.readMeta();
    const sealedKey = await this.chip.seal(state.storageKey, meta.bindPcrs, expected);
    const staged: StagedKey = { sealedKey, stagedAt: new Date().toISOString() };
    await this.db.put(KEY.meta, encodeMeta({ ...meta, staged }), { sync: true });
    this.stagedAt = staged.stagedAt;
    this.log.info({ stagedAt: staged.stagedAt, pcrs: meta.bindPcrs }, 'storage key sealed to the PCR values of the staged upgrade');
    return staged;
  }

  /** Model code digests an upgrade authorized to continue the vTPM state of earlier code: earlier → later. */
  codeTransitions(): readonly CodeTransition[] {
    return this.transitions;
  }

  /**
   * Lets vTPM state saved by models running the earlier code of each pair load into models
   * running the later one (the model measurements are derived from the code digests), beside the
   * transitions already authorized.
   */
  async authorizeCodeTransitions(pairs: readonly CodeTransition[]): Promise<void> {
    const state = this.usable(undefined);
    const known = new Set(this.transitions.map(transitionKey));
    const added = pairs.filter((p) => !known.has(transitionKey(p)));
    if (added.length === 0) return;
    await this.writeTransitions(state, await this.readMeta(), [...this.transitions, ...added]);
    this.log.info({ transitions: added.map(transitionKey) }, 'model code transitions authorized');
  }

  /**
   * Drops a staged binding and every code transition leading to code other than `runningCode`
   * (the digests of the model code running now); true when either existed.
   */
  async cancelStaged(runningCode: readonly Buffer[]): Promise<boolean> {
    const state = this.usable(undefined);
    const { staged, ...meta } = await this.readMeta();
    const kept = this.transitions.filter(([, to]) => runningCode.some((c) => c.equals(to)));
    const dropped = this.transitions.length - kept.length;
    if (!staged && dropped === 0) return false;
    await this.writeTransitions(state, meta, kept);
    this.stagedAt = undefined;
    this.log.info({ stagedAt: staged?.stagedAt, transitionsDropped: dropped }, 'staged upgrade cancelled');
    return true;
  }

  private async writeTransitions(state: Established, meta: Meta, pairs: readonly CodeTransition[]): Promise<void> {
    const { codeTransitions: _, ...rest } = meta;
    const next = pairs.length ? { ...rest, codeTransitions: { pairs, mac: codeTransitionsMac(state.keys, pairs) } } : rest;
    await this.db.put(KEY.meta, encodeMeta(next), { sync: true });
    this.transitions = pairs;
  }

  private async readMeta(): Promise<Meta> {
    const bytes = (await this.db.get(KEY.meta)) as Buffer | undefined;
    if (!bytes) throw new PssError('bad-database', 'the PSS meta record is gone from the database');
    return decodeMeta(bytes);
  }

  private usable(vmId: string | undefined): Established {
    if (this.closed) throw new PssError('closed', 'the PSS is closed; open it again to use it');
    if (this.refusal) throw vmId === undefined ? this.refusal : this.refusal.forVm(vmId);
    if (this.failure) throw this.failure;
    return this.state!;
  }

  private async commit(changes: readonly Change[], durable: boolean): Promise<Written | undefined> {
    if (this.failure) throw this.failure;
    const state = this.state!;
    const last = new Map<string, Change>();
    for (const c of changes) {
      const sealed = this.sealedForWindow(c);
      if (sealed) last.set(c.vmId, sealed);
    }
    this.sealer!.crowded(last.size >= SEALING_CROWD);
    try {
      await Promise.all([...last.values()].map((c) => c.sealing));
    } catch (e) {
      throw this.failed(e);
    }

    const aggregate = Buffer.from(this.aggregate);
    let count = this.stored.size;
    const digests: [string, Buffer | undefined][] = [];
    // A chained batch: the array form costs several microseconds of main-thread time per
    // operation, which at hundreds of saves per window is most of the commit.
    let batch: ReturnType<PssDatabase['batch']> | undefined;
    try {
      batch = this.db.batch();
      for (const [vmId, c] of last) {
        const before = this.stored.get(vmId);
        if (before) {
          xorInto(aggregate, Buffer.from(before.digest, 'latin1'));
          count--;
        }
        for (const key of c.dels) batch.del(key);
        for (const [key, blob] of c.puts) batch.put(key, blob);
        if (c.record) {
          const bytes = c.encoded?.bytes ?? encodeRecord(c.record);
          const digest = c.encoded?.digest ?? recordDigest(state.keys.record, KEY.record(vmId), bytes);
          xorInto(aggregate, digest);
          count++;
          digests.push([vmId, digest]);
          batch.put(KEY.record(vmId), bytes);
        } else {
          digests.push([vmId, undefined]);
          batch.del(KEY.record(vmId));
        }
      }
      const epoch = durable ? this.epoch + 1n : this.epoch;
      const fields = { pssId: state.pssId, counterId: state.counterId, epoch, count, aggregate };
      batch.put(KEY.head, encodeHead({ ...fields, mac: headMac(state.keys, fields) }));
      await batch.write({ sync: durable });
      this.epoch = epoch;
    } catch (e) {
      await batch?.close().catch(() => undefined);
      throw this.failed(e);
    }

    this.aggregate = aggregate;
    for (const [vmId, digest] of digests) {
      const c = last.get(vmId)!;
      if (digest) this.stored.set(vmId, storedRef(c.record!, digest));
      else this.stored.delete(vmId);
      // Unless a later change is already queued, this one is the VM's latest and now on disk.
      if (this.latest.get(vmId) === (c.record ?? null)) {
        this.unsettled.delete(vmId);
        this.settle(vmId);
      }
    }
    for (const c of last.values()) for (const [key, blob] of c.puts) if (this.pendingBlobs.get(key) === blob) this.pendingBlobs.delete(key);
    return durable ? { confirmed: this.advanceCounter(state, this.epoch) } : undefined;
  }

  /**
   * Raises the chip counter to `epoch`, after every earlier durable commit's increment: a durable
   * commit is acknowledged only then, since a database without it would otherwise still pass the
   * rollback check. The next window is written meanwhile, so the database may run ahead of the
   * counter by up to MAX_UNCONFIRMED_COMMITS epochs, which opening the PSS catches up (establish.ts).
   */
  private advanceCounter(state: Established, epoch: bigint): Promise<void> {
    const advanced = this.counting.then(async () => {
      if (this.failure) throw this.failure;
      try {
        const counter = await this.chip.incrementCounter(state.counterId, state.counterAuth);
        if (counter !== epoch) throw new Error(`the chip counter moved to ${counter} where ${epoch} was expected`);
      } catch (e) {
        // The database and the counter may now disagree: establishing it again (recover(), or a reopen) sorts that out.
        throw this.failed(e);
      }
    });
    this.counting = advanced.catch(() => undefined);
    return advanced;
  }

  private failed(e: unknown): PssError {
    // Later windows fail with the first failure; its cause is the one worth reporting.
    if (this.failure) return this.failure;
    this.failureCause = e instanceof Error ? e.message : String(e);
    this.failure = new PssError('commit-failed', `a PSS commit failed (${this.failureCause}); the PSS takes no saves until it recovers`, { cause: e });
    this.log.error({ err: this.failure.message }, 'PSS commit failed');
    for (const listener of this.failureListeners) listener(this.failureCause);
    return this.failure;
  }

  /** Calls `listener` with the cause whenever a commit fails (recover() may then bring the PSS back). */
  onFailure(listener: (cause: string) => void): void {
    this.failureListeners.add(listener);
  }

  /**
   * After a failed commit: once every window in flight has settled, opens the database again and
   * establishes it from what is on disk and in the chip, as opening the PSS does (catching the
   * counter up to commits written before the failure), and takes saves again. What the PSS held
   * in memory of the failed windows is dropped: the database is the truth, and a vTPM whose save
   * failed must load from it again. Resolves true when the PSS works (also when it had not
   * failed); false when it is still failing (the chip or the disk still does not answer, or the
   * database can no longer be trusted), with `status().recoveryError` saying why.
   */
  recover(): Promise<boolean> {
    if (this.closed) return Promise.reject(new PssError('closed', 'the PSS is closed; open it again to use it'));
    return (this.recovering ??= this.reestablish().finally(() => (this.recovering = undefined)));
  }

  private async reestablish(): Promise<boolean> {
    if (!this.failure || !this.state) return !this.failure;
    await this.committer.drain();
    await this.counting;
    const state = this.state;
    let r: Awaited<ReturnType<typeof establish>>;
    try {
      // Opened afresh: LevelDB refuses every write after one failed to reach the disk.
      await this.db.close().catch(() => undefined);
      this.db = await openDatabase(this.dir);
      // Closed meanwhile: close() found the old database closed, so this one is closed here.
      if (this.closed) {
        await this.db.close();
        return false;
      }
      r = await establish(this.db, this.chip, this.log, undefined);
    } catch (e) {
      this.recoveryError = e instanceof Error ? e.message : String(e);
      return false;
    }
    if ('refusal' in r) {
      this.recoveryError = `the database cannot be trusted after the failed commit (${r.refusal.condition}): ${r.refusal.message}`;
      this.log.error({ condition: r.refusal.condition }, this.recoveryError);
      return false;
    }
    // The same database, so the same keys: the ones in use stay, the copies are wiped.
    const same = r.pssId.equals(state.pssId) && r.counterId === state.counterId;
    r.storageKey.fill(0);
    for (const key of Object.values(r.keys)) key.fill(0);
    if (!same) {
      this.recoveryError = 'the database changed its identity while the PSS had it open';
      return false;
    }
    this.latest.clear();
    this.unsettled.clear();
    this.pendingBlobs.clear();
    this.images.clear();
    this.waitingImages.clear();
    this.stored.clear();
    for (const [vmId, { record, digest }] of r.records) this.stored.set(vmId, storedRef(record, digest));
    this.aggregate = Buffer.from(r.aggregate);
    this.epoch = r.epoch;
    this.transitions = r.codeTransitions;
    this.failure = undefined;
    this.failureCause = undefined;
    this.recoveryError = undefined;
    this.recoveries++;
    this.log.info({ epoch: r.epoch.toString(), vms: r.records.size }, 'PSS recovered from the failed commit');
    return true;
  }
}

function transitionKey([from, to]: CodeTransition): string {
  return `${from.toString('hex')}>${to.toString('hex')}`;
}

function storedRef(r: VmRecord, digest: Buffer): StoredRef {
  return { version: r.version, base: r.base, digest: digest.toString('latin1') };
}

function checkRequest(vmId: string, measurement: Uint8Array): void {
  const n = Buffer.byteLength(vmId, 'utf8');
  if (typeof vmId !== 'string' || n === 0 || n > MAX_VM_ID_BYTES) {
    throw new PssError('bad-request', `a VM id is 1–${MAX_VM_ID_BYTES} bytes of UTF-8; got ${n} bytes`);
  }
  if (measurement.length > MAX_MEASUREMENT_BYTES) {
    throw new PssError('bad-request', `a model measurement is at most ${MAX_MEASUREMENT_BYTES} bytes; got ${measurement.length}`);
  }
}

/** The whole image a save carries: its bytes, or the model's image for a change. */
function wholeImage(nvm: Uint8Array | StateChange): Buffer {
  return nvm instanceof Uint8Array ? asBuffer(nvm) : nvm.image();
}
