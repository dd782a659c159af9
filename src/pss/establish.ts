/**
 * Opening a PSS database: creating it on first use, otherwise recovering the storage key from the
 * chip and proving the database is the latest one before anything in it is trusted.
 *
 * Commit order is: write the batch (records, blobs, head with epoch E+1) synced, then increment
 * the chip counter to E+1, and only then acknowledge the commit's saves. The next commits may be
 * written while that increment runs (group-commit.ts), at most MAX_UNCONFIRMED_COMMITS of them
 * ahead of the counter. A crash leaves the database up to that many epochs ahead of the counter;
 * those commits' saves were never acknowledged, but they are intact, so opening catches the
 * counter up. The other order (counter first) would have to accept a database *behind* the
 * counter, which is exactly what a copy taken a commit earlier looks like; this order refuses
 * every copy older than the last acknowledged durable commit. A database further ahead than
 * that cannot come from this PSS and is refused too.
 */
import type { Logger } from 'pino';
import { ChipRefusal, unsealCurrentOrStaged, type ChipClient } from '../hwtpm/chip-client.ts';
import type { EntropySource } from '../tpm/crypto/random.ts';
import { PssError, PssViolation } from './errors.ts';
import { codeTransitionsMac, DIGEST_BYTES, headMac, headMacValid, integrityKeys, recordDigest, xorInto, type CodeTransition, type IntegrityKeys } from './integrity.ts';
import { constantTimeEqual } from '../tpm/crypto/hash.ts';
import { BlobKey, PSS_ID_BYTES } from './blob.ts';
import { decodeHead, decodeMeta, decodeRecord, encodeHead, encodeMeta, KEY, RECORD_RANGE, type Meta, type VmRecord } from './records.ts';
import type { PssDatabase } from './database.ts';

export const STORAGE_KEY_BYTES = 32;

/** Durable commits the database may hold beyond the chip counter: written, their increments pending. */
export const MAX_UNCONFIRMED_COMMITS = 2;

/** Everything a working PSS holds in memory, established and checked at open. */
export interface Established {
  readonly pssId: Buffer;
  readonly counterId: number;
  /** What incrementCounter takes (undefined: a counter made before counters had one). */
  readonly counterAuth: Buffer | undefined;
  readonly storageKey: Buffer;
  /** The storage key as blobs are sealed and opened with it. */
  readonly blobKey: BlobKey;
  readonly keys: IntegrityKeys;
  readonly epoch: bigint;
  /** Per VM: its record and that record's digest in the head's aggregate. */
  readonly records: Map<string, { record: VmRecord; digest: Buffer }>;
  readonly aggregate: Buffer;
  /** When an upgrade staged a binding still waiting for its code (ISO 8601). */
  readonly stagedAt: string | undefined;
  /** Model code whose vTPM state later code may continue, as upgrades authorized it (checked). */
  readonly codeTransitions: readonly CodeTransition[];
}

/** The database could not be trusted: the PSS stays open but refuses every vTPM. */
export interface Refused {
  readonly refusal: PssViolation;
  readonly pssId: Buffer | undefined;
  readonly counterId: number | undefined;
}

/** How to make a PSS in an empty database; without it (a PSS established again while open) an empty one is refused. */
export interface Creation {
  readonly bindPcrs: readonly number[];
  readonly entropy: EntropySource;
}

export async function establish(db: PssDatabase, chip: ChipClient, log: Logger, creation: Creation | undefined): Promise<Established | Refused> {
  const metaBytes = (await db.get(KEY.meta)) as Buffer | undefined;
  if (metaBytes === undefined) {
    for await (const key of db.keys({ limit: 1 })) {
      throw new PssError('bad-database', `the PSS database has entries (${JSON.stringify(key)}…) but no meta record; it is damaged or not a PSS database — restore it from a copy or move it away`);
    }
    if (!creation) return refused(new PssViolation('modified', undefined, 'the database was emptied while the PSS had it open'), undefined, undefined);
    return create(db, chip, creation.bindPcrs, creation.entropy, log);
  }
  let meta: Meta;
  try {
    meta = decodeMeta(metaBytes);
  } catch (e) {
    if (e instanceof PssViolation) return refused(e, undefined, undefined);
    throw e;
  }
  const refuse = (condition: PssViolation['condition'], detail: string): Refused => refused(new PssViolation(condition, undefined, detail), meta.pssId, meta.counterId);

  let storageKey: Buffer;
  let fromStaged = false;
  try {
    const released = await unsealCurrentOrStaged(chip, meta.sealedKey, meta.staged?.sealedKey);
    storageKey = released.secret;
    fromStaged = released.staged;
  } catch (e) {
    if (e instanceof ChipRefusal && e.reason === 'pcr-mismatch') {
      const staged = meta.staged ? `, nor the values an upgrade staged on ${meta.staged.stagedAt} expected` : '';
      return refuse('tcb-changed', `the chip will not release the storage key: PCRs ${meta.bindPcrs.join(',')} no longer hold the values it was sealed to${staged}`);
    }
    if (e instanceof ChipRefusal && e.reason === 'bad-blob') return refuse('foreign', 'the storage key was sealed by another chip (the database comes from another host)');
    if (e instanceof ChipRefusal && e.reason === 'untrusted-srk') return refuse('untrusted-chip', e.message);
    throw e;
  }
  if (storageKey.length !== STORAGE_KEY_BYTES) return refuse('modified', 'the sealed storage key has the wrong size');
  const keys = integrityKeys(storageKey, meta.pssId);
  const counterAuth = meta.counterAuth ? keys.counter : undefined;

  const headBytes = (await db.get(KEY.head)) as Buffer | undefined;
  if (headBytes === undefined) return refuse('modified', 'the database head is missing');
  let head;
  try {
    head = decodeHead(headBytes);
  } catch (e) {
    if (e instanceof PssViolation) return refused(e, meta.pssId, meta.counterId);
    throw e;
  }
  const fields = { pssId: meta.pssId, counterId: meta.counterId, epoch: head.epoch, count: head.count, aggregate: head.aggregate };
  if (head.aggregate.length !== DIGEST_BYTES || !headMacValid(keys, fields, head.mac)) {
    return refuse('modified', 'the database head fails its integrity check (edited, or taken from another PSS)');
  }
  const transitions = meta.codeTransitions;
  if (transitions && !constantTimeEqual(codeTransitionsMac(keys, transitions.pairs), transitions.mac)) {
    return refuse('modified', 'the model code transitions upgrades authorized fail their integrity check (edited)');
  }

  const records = new Map<string, { record: VmRecord; digest: Buffer }>();
  const aggregate = Buffer.alloc(DIGEST_BYTES);
  const raw: [string, Buffer][] = [];
  for await (const [key, value] of db.iterator(RECORD_RANGE)) {
    xorInto(aggregate, recordDigest(keys.record, key, value));
    raw.push([key, value]);
  }
  if (raw.length !== head.count || !aggregate.equals(head.aggregate)) {
    return refuse(
      'rollback',
      `the VM records do not match the database head (${raw.length} records where the head names ${head.count}, or their contents differ): records were rolled back, removed, added or altered one by one`,
    );
  }
  for (const [key, value] of raw) {
    const record = decodeRecord(value);
    if (KEY.record(record.vmId) !== key) return refuse('modified', `the record under ${JSON.stringify(key)} names another VM`);
    records.set(record.vmId, { record, digest: recordDigest(keys.record, key, value) });
  }

  let counter: bigint;
  try {
    counter = await chip.readCounter(meta.counterId, counterAuth);
  } catch {
    return refuse('rollback', `the PSS's chip counter 0x${meta.counterId.toString(16)} cannot be read (the chip was cleared or replaced), so the database's freshness cannot be proven`);
  }
  const behind = head.epoch - counter;
  if (behind > 0n && behind <= BigInt(MAX_UNCONFIRMED_COMMITS)) {
    while (counter < head.epoch) counter = await chip.incrementCounter(meta.counterId, counterAuth);
    log.info({ epoch: head.epoch.toString(), increments: Number(behind) }, 'the last commits landed but not all their counter increments did; counter caught up');
  }
  if (head.epoch !== counter) {
    return refuse('rollback', `the database is at epoch ${head.epoch} but the chip's monotonic counter is at ${counter}`);
  }
  if (fromStaged) {
    // Only now, with the database proven by the released key, does the staged binding replace
    // the one the chip no longer honours.
    const { staged: _, ...current } = meta;
    await db.put(KEY.meta, encodeMeta({ ...current, sealedKey: meta.staged!.sealedKey }), { sync: true });
    log.info({ stagedAt: meta.staged!.stagedAt }, 'the chip released the storage key to the upgraded code staged for it; that binding is now the only one');
  }
  return {
    pssId: meta.pssId,
    counterId: meta.counterId,
    counterAuth,
    storageKey,
    blobKey: new BlobKey(storageKey),
    keys,
    epoch: head.epoch,
    records,
    aggregate,
    stagedAt: fromStaged ? undefined : meta.staged?.stagedAt,
    codeTransitions: transitions?.pairs ?? [],
  };
}

async function create(db: PssDatabase, chip: ChipClient, bindPcrs: readonly number[], entropy: EntropySource, log: Logger): Promise<Established> {
  const storageKey = entropy(STORAGE_KEY_BYTES);
  const pssId = entropy(PSS_ID_BYTES);
  const sealedKey = await chip.seal(storageKey, bindPcrs);
  const keys = integrityKeys(storageKey, pssId);
  const counter = await chip.createCounter(keys.counter);
  const aggregate = Buffer.alloc(DIGEST_BYTES);
  const fields = { pssId, counterId: counter.id, epoch: counter.value, count: 0, aggregate };
  await db.batch(
    [
      { type: 'put', key: KEY.meta, value: encodeMeta({ pssId, counterId: counter.id, sealedKey, bindPcrs, counterAuth: true }) },
      { type: 'put', key: KEY.head, value: encodeHead({ ...fields, mac: headMac(keys, fields) }) },
    ],
    { sync: true },
  );
  log.info({ pssId: pssId.toString('hex'), counterId: counter.id, bindPcrs }, 'created a new PSS');
  return {
    pssId,
    counterId: counter.id,
    counterAuth: keys.counter,
    storageKey,
    blobKey: new BlobKey(storageKey),
    keys,
    epoch: counter.value,
    records: new Map(),
    aggregate,
    stagedAt: undefined,
    codeTransitions: [],
  };
}

function refused(refusal: PssViolation, pssId: Buffer | undefined, counterId: number | undefined): Refused {
  return { refusal, pssId, counterId };
}
