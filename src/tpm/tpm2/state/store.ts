import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';

/** Where an engine keeps what a chip keeps in NV: one opaque, versioned blob. */
export interface StateStore {
  load(): Buffer | undefined;
  save(data: Buffer): void;
}

/** Keeps the blob in memory (tests, benchmarks, vTPMs whose NVM the PSS persists). */
export class MemoryStateStore implements StateStore {
  private data: Buffer | undefined;

  constructor(initial?: Buffer) {
    this.data = initial;
  }

  load(): Buffer | undefined {
    return this.data;
  }

  save(data: Buffer): void {
    this.data = Buffer.from(data);
  }
}

/**
 * Keeps the blob in a file of the state directory, replaced atomically (temp file, fsync,
 * rename, fsync of the directory), so a crash leaves either the old state or the new one.
 */
export class FileStateStore implements StateStore {
  readonly path: string;

  constructor(readonly dir: string, name = 'tpm2-nv.json') {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.path = join(dir, name);
  }

  load(): Buffer | undefined {
    try {
      return readFileSync(this.path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  save(data: Buffer): void {
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, data);
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
