/** The PSS's level database (its schema: records.ts). */
import { Level } from 'level';
import { PssError } from './errors.ts';

export type PssDatabase = Level<string, Buffer>;

export async function openDatabase(dir: string): Promise<PssDatabase> {
  const db = new Level<string, Buffer>(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  try {
    await db.open();
  } catch (e) {
    // level's own message ("Database failed to open") hides LevelDB's, which says why.
    const why = [e, (e as { cause?: unknown }).cause].filter((x): x is Error => x instanceof Error).map((x) => x.message).join(': ');
    throw new PssError('bad-database', `cannot open the PSS database in ${dir} (${why}); check that no other vtpmd holds it, that the directory is writable and that its disk has room`, { cause: e });
  }
  return db;
}
