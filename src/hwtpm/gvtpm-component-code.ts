/**
 * The code of a GVTPM component as the host measures it: every file under the component's folder,
 * sorted by path, serialized with its path so that renaming, adding or removing a file changes the
 * measurement just as editing one does.
 */
import { readdir, readFile } from 'node:fs/promises';
import { join, posix, relative, resolve, sep } from 'node:path';

/** The root of the vtpmd whose code is running: where its measured folders are read from by default. */
export const PROJECT_ROOT = resolve(import.meta.dirname, '..', '..');

export interface SourceFile {
  /** Path relative to the project root, with "/" separators whatever the host. */
  readonly path: string;
  readonly content: Buffer;
}

export interface ComponentCode {
  readonly name: string;
  readonly files: readonly SourceFile[];
}

const IMAGE_MAGIC = 'vtpmd component code v1\0';

async function listFiles(dir: string): Promise<string[]> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (e) {
    // A component not written yet is measured as empty, still distinguished by its name.
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: string[] = [];
  for (const entry of entries) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(full)));
    else if (entry.isFile()) out.push(full);
  }
  return out;
}

export async function readComponentCode(rootDir: string, name: string, folder: string): Promise<ComponentCode> {
  const paths = await listFiles(join(rootDir, folder));
  const files = await Promise.all(
    paths.map(async (full) => ({ path: relative(rootDir, full).split(sep).join(posix.sep), content: await readFile(full) })),
  );
  files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return { name, files };
}

function lengthPrefixed(b: Buffer): Buffer[] {
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(b.length));
  return [len, b];
}

/** The byte string whose digest is the component's measurement. */
export function componentImage(code: ComponentCode): Buffer {
  const parts: Buffer[] = [Buffer.from(IMAGE_MAGIC, 'latin1'), ...lengthPrefixed(Buffer.from(code.name, 'utf8'))];
  for (const f of code.files) parts.push(...lengthPrefixed(Buffer.from(f.path, 'utf8')), ...lengthPrefixed(f.content));
  return Buffer.concat(parts);
}
