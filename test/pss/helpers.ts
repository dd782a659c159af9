/** Chips, directories and direct database access for the PSS tests. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Level } from 'level';
import { Chip } from '../../src/hwtpm/chip.ts';
import type { ChipClient } from '../../src/hwtpm/chip-client.ts';
import { openChipClient } from '../../src/hwtpm/open-chip-client.ts';
import { MemoryStateStore } from '../../src/tpm/tpm2/state/store.ts';

export interface TestChip {
  readonly chip: Chip;
  readonly client: ChipClient;
}

export async function memoryChip(): Promise<TestChip> {
  const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
  const client = await openChipClient(chip);
  await client.takeOwnership();
  return { chip, client };
}

export async function fileChip(stateDir: string): Promise<TestChip> {
  const chip = Chip.open({ personality: 'tpm2', stateDir });
  const client = await openChipClient(chip);
  await client.takeOwnership();
  return { chip, client };
}

/** A fresh directory, removed by the returned cleanup. */
export function scratchDir(prefix = 'vtpmd-pss-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Opens a (closed) PSS database the way an attacker with disk access would, and closes it after. */
export async function withDatabase<T>(dir: string, job: (db: Level<string, Buffer>) => Promise<T>): Promise<T> {
  const db = new Level<string, Buffer>(dir, { keyEncoding: 'utf8', valueEncoding: 'buffer' });
  await db.open();
  try {
    return await job(db);
  } finally {
    await db.close();
  }
}

export function measurementOf(model: string): Buffer {
  return Buffer.from(model.padEnd(32, '.').slice(0, 32), 'latin1');
}
