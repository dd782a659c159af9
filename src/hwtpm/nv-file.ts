/**
 * The chip's non-volatile memory as one file. A real chip's NV survives power loss mid-write
 * with either the old or the new contents, and a chip whose NV is damaged enters failure mode
 * rather than quietly forgetting its seeds. The file therefore carries a header with a format
 * version, the payload length and its SHA-256, is replaced atomically (temp + fsync + rename +
 * directory fsync), and is checked on every load: a torn or altered file is an error that names
 * the file, never a reason to manufacture a fresh chip.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { StateStore } from '../tpm/tpm2/state/store.ts';

const MAGIC = 'vtpmd-chip-nv';
const VERSION = 1;

/** The chip's NV file is unreadable: torn, altered or of another format. */
export class ChipNvError extends Error {
  constructor(readonly path: string, problem: string) {
    super(`the chip's NV file ${path} ${problem}; restore it from a backup, or move it away to manufacture a new chip (which loses its keys)`);
    this.name = 'ChipNvError';
  }
}

/**
 * The engine hands NV over synchronously (`save`); the chip then awaits `durable()` before its
 * response leaves, so a command is acknowledged only once its NV write is on disk — without
 * blocking the process while the disk syncs.
 */
export class ChipNvFile implements StateStore {
  readonly path: string;
  private pending: Buffer | undefined;
  private writing: Promise<void> = Promise.resolve();

  constructor(readonly dir: string, name: string) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.path = join(dir, name);
  }

  load(): Buffer | undefined {
    let raw: Buffer;
    try {
      raw = readFileSync(this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
    const eol = raw.indexOf(0x0a);
    if (eol < 0 || eol > 200) throw new ChipNvError(this.path, 'has no valid header (torn or not a chip NV file)');
    const m = /^(\S+) (\d+) length=(\d+) sha256=([0-9a-f]{64})$/.exec(raw.subarray(0, eol).toString('latin1'));
    if (!m || m[1] !== MAGIC) throw new ChipNvError(this.path, 'has no valid header (torn or not a chip NV file)');
    if (Number(m[2]) !== VERSION) throw new ChipNvError(this.path, `has format version ${m[2]}; this vtpmd reads version ${VERSION}`);
    const payload = raw.subarray(eol + 1);
    if (payload.length !== Number(m[3])) throw new ChipNvError(this.path, `is truncated or extended (${payload.length} bytes where the header says ${m[3]})`);
    if (createHash('sha256').update(payload).digest('hex') !== m[4]) throw new ChipNvError(this.path, 'fails its integrity check (altered or corrupted)');
    return Buffer.from(payload);
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
    const header = `${MAGIC} ${VERSION} length=${data.length} sha256=${createHash('sha256').update(data).digest('hex')}\n`;
    const tmp = `${this.path}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.writeFile(Buffer.concat([Buffer.from(header, 'latin1'), data]));
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.path);
    const dir = await open(this.dir, 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
