/**
 * The chip's non-volatile memory as one file. A real chip's NV survives power loss mid-write
 * with either the old or the new contents, and a chip whose NV is damaged enters failure mode
 * rather than quietly forgetting its seeds. The file therefore carries a header with a format
 * version, the payload length and its SHA-256, is replaced atomically (temp + fsync + rename +
 * directory fsync), and is checked on every load: a torn or altered file is an error that names
 * the file, never a reason to manufacture a fresh chip.
 */
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
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

export class ChipNvFile implements StateStore {
  readonly path: string;

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
    const header = `${MAGIC} ${VERSION} length=${data.length} sha256=${createHash('sha256').update(data).digest('hex')}\n`;
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, Buffer.concat([Buffer.from(header, 'latin1'), data]));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, this.path);
    const dirFd = openSync(this.dir, 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }
}
