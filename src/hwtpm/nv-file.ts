/**
 * The chip's non-volatile memory in two files written in turn. A real chip's NV survives power
 * loss mid-write with either the old or the new contents, and a chip whose NV is damaged enters
 * failure mode rather than quietly forgetting its seeds. Each file carries a header with a format
 * version, a write sequence number, the payload length and its SHA-256; a write overwrites the
 * file not holding the latest contents, in place, its data synced as it is written (O_DSYNC) —
 * one system call on a file kept open, where a replace-by-rename takes eight and two full syncs,
 * and the chip writes its NV on every counter increment the PSS commits. Power-on takes the valid
 * file with the higher sequence number: a write cut short damages only the file being written,
 * whose predecessor is the other. Both files damaged (or the only one) is an error that names
 * them, never a reason to manufacture a fresh chip. A single file of format 1 (one file, replaced
 * by rename) reads as sequence 0.
 */
import { createHash } from 'node:crypto';
import { constants, fdatasync, ftruncate, mkdirSync, open as openCallback, readFileSync, write } from 'node:fs';
import { open } from 'node:fs/promises';
import { promisify } from 'node:util';
import { join } from 'node:path';
import type { StateStore } from '../tpm/tpm2/state/store.ts';

const openFd = promisify(openCallback);
const writeAt = promisify(write);
const truncateFd = promisify(ftruncate);
const datasyncFd = promisify(fdatasync);

const MAGIC = 'vtpmd-chip-nv';
const VERSION = 2;

/** The chip's NV file is unreadable: torn, altered or of another format. */
export class ChipNvError extends Error {
  constructor(readonly path: string, problem: string) {
    super(`the chip's NV file ${path} ${problem}; restore it from a backup, or move it away to manufacture a new chip (which loses its keys)`);
    this.name = 'ChipNvError';
  }
}

interface Slot {
  readonly path: string;
  /** The sequence number of its valid contents; undefined when missing or damaged. */
  seq: number | undefined;
  /** Its length in bytes (0 when missing). */
  size: number;
  /**
   * Kept open from its first write for as long as the chip: every counter increment writes the
   * NV, and opening and closing the file each time cost a third of that write. A descriptor, not
   * a FileHandle, which would be closed (with a warning) when a chip object is collected.
   */
  fd?: number;
}

/**
 * The engine hands NV over synchronously (`save`); the chip then awaits `durable()` before its
 * response leaves, so a command is acknowledged only once its NV write is on disk — without
 * blocking the process while the disk syncs.
 */
export class ChipNvFile implements StateStore {
  /** The first of the two files (the only one a format 1 chip has). */
  readonly path: string;
  private readonly slots: readonly [Slot, Slot];
  private scanned = false;
  private pending: Buffer | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(readonly dir: string, name: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.path = join(dir, name);
    this.slots = [
      { path: this.path, seq: undefined, size: 0 },
      { path: `${this.path}.alt`, seq: undefined, size: 0 },
    ];
  }

  load(): Buffer | undefined {
    const read = this.slots.map((slot) => readSlot(slot.path));
    this.slots.forEach((slot, i) => {
      const r = read[i]!;
      slot.seq = r.kind === 'valid' ? r.seq : undefined;
      slot.size = r.kind === 'missing' ? 0 : r.size;
    });
    this.scanned = true;
    const newer = read.find((r): r is NewerFormat => r.kind === 'newer');
    if (newer) throw new ChipNvError(newer.path, `has format version ${newer.version}; this vtpmd reads versions up to ${VERSION}`);
    const valid = read.filter((r): r is Valid => r.kind === 'valid').sort((a, b) => b.seq - a.seq);
    if (valid[0]) return valid[0].payload;
    const [first, second] = read.filter((r): r is Damaged => r.kind === 'damaged');
    if (!first) return undefined;
    if (!second) throw new ChipNvError(first.path, first.problem);
    throw new ChipNvError(`${first.path} and its alternate ${second.path}`, `are both damaged (the first ${first.problem}; the second ${second.problem})`);
  }

  save(data: Buffer): void {
    this.pending = data;
  }

  /** Resolves once everything saved so far is on disk; later saves coalesce into one write. */
  durable(): Promise<void> {
    if (this.pending === undefined) return this.writing;
    this.writing = this.writing.then(async () => {
      const data = this.pending;
      this.pending = undefined;
      if (data !== undefined) await this.write(data);
    });
    return this.writing;
  }

  private async write(data: Buffer): Promise<void> {
    if (!this.scanned) this.load();
    const [a, b] = this.slots;
    const latest = a.seq === undefined ? (b.seq === undefined ? undefined : b) : b.seq === undefined || a.seq > b.seq ? a : b;
    // Overwrite the file that does not hold the latest contents (a fresh chip's first write: the first file).
    const target = latest === a ? b : a;
    const seq = (latest?.seq ?? 0) + 1;
    const header = Buffer.from(`${MAGIC} ${VERSION} seq=${seq} length=${data.length} sha256=${createHash('sha256').update(data).digest('hex')}\n`, 'latin1');
    const created = target.seq === undefined;
    // Until this write is synced the file holds neither its old contents nor the new.
    target.seq = undefined;
    // O_DSYNC: the write returns once its data is on disk, one call where write and fdatasync were
    // two, each a turn of the busy event loop on the way to acknowledging a PSS commit.
    const fd = (target.fd ??= await openFd(target.path, (created ? constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC : constants.O_RDWR) | constants.O_DSYNC, 0o600));
    const contents = Buffer.concat([header, data]);
    await writeAt(fd, contents, 0, contents.length, 0);
    if (target.size > contents.length) {
      // A shorter file's new length is metadata the synced write does not carry.
      await truncateFd(fd, contents.length);
      await datasyncFd(fd);
    }
    target.size = contents.length;
    // A new file's directory entry must survive power loss too (once per file).
    if (created) await syncDirectory(this.dir);
    target.seq = seq;
  }
}

interface Valid {
  readonly kind: 'valid';
  readonly size: number;
  readonly seq: number;
  readonly payload: Buffer;
}
interface Damaged {
  readonly kind: 'damaged';
  readonly size: number;
  readonly path: string;
  readonly problem: string;
}
interface NewerFormat {
  readonly kind: 'newer';
  readonly size: number;
  readonly path: string;
  readonly version: number;
}

function readSlot(path: string): Valid | Damaged | NewerFormat | { kind: 'missing' } {
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { kind: 'missing' };
    throw e;
  }
  const damaged = (problem: string): Damaged => ({ kind: 'damaged', size: raw.length, path, problem });
  const eol = raw.indexOf(0x0a);
  const m = eol >= 0 && eol <= 200 ? /^(\S+) (\d+) (?:seq=(\d+) )?length=(\d+) sha256=([0-9a-f]{64})$/.exec(raw.subarray(0, eol).toString('latin1')) : null;
  if (!m || m[1] !== MAGIC) return damaged('has no valid header (torn or not a chip NV file)');
  const version = Number(m[2]);
  if (version > VERSION) return { kind: 'newer', size: raw.length, path, version };
  if ((version === 1) !== (m[3] === undefined) || version < 1) return damaged('has no valid header (torn or not a chip NV file)');
  const payload = raw.subarray(eol + 1);
  if (payload.length !== Number(m[4])) return damaged(`is truncated or extended (${payload.length} bytes where the header says ${m[4]})`);
  if (createHash('sha256').update(payload).digest('hex') !== m[5]) return damaged('fails its integrity check (altered or corrupted)');
  return { kind: 'valid', size: raw.length, seq: version === 1 ? 0 : Number(m[3]), payload: Buffer.from(payload) };
}

async function syncDirectory(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}
