/** The PSS's level database (its schema: records.ts). */
import { Level } from 'level';
import { PssError } from './errors.ts';

export type PssDatabase = Level<string, Buffer>;

export async function openDatabase(dir: string): Promise<PssDatabase> {
  const db = new Level<string, Buffer>(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  try {
    await db.open();
  } catch (e) {
    throw new PssError('bad-database', `cannot open the PSS database in ${dir} (${(e as Error).message}); check that no other vtpmd holds it and that the directory is writable`, { cause: e });
  }
  return db;
}
