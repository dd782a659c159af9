/**
 * The GVTPM manager's list of VMs and their device models, in `level`: one versioned JSON record
 * per VM, written with sync so that a VM the manager reported as created survives a crash.
 */
import { Level } from 'level';
import type { ModelConfig } from './model-measurement.ts';

export const RECORD_VERSION = 1;

export interface VmRecord {
  readonly name: string;
  readonly config: ModelConfig;
  /** The model measurement when the VM was made, hex; the PSS binds its state to the measurement of the model that saves it. */
  readonly measurement: string;
  readonly createdAt: string;
}

export class RegistryError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RegistryError';
  }
}

const KEY_PREFIX = 'vm/';
const META_PREFIX = 'meta/';

export class VmRegistry {
  private constructor(private readonly db: Level<string, string>) {}

  static async open(dir: string): Promise<VmRegistry> {
    const db = new Level<string, string>(dir, { valueEncoding: 'utf8' });
    await db.open();
    return new VmRegistry(db);
  }

  async get(name: string): Promise<VmRecord | undefined> {
    const raw = await this.db.get(KEY_PREFIX + name);
    return raw === undefined ? undefined : parseRecord(name, raw);
  }

  async put(record: VmRecord): Promise<void> {
    await this.db.put(KEY_PREFIX + record.name, JSON.stringify({ version: RECORD_VERSION, ...record }), { sync: true });
  }

  async delete(name: string): Promise<void> {
    await this.db.del(KEY_PREFIX + name, { sync: true });
  }

  /** A value the manager keeps beside the VM records (the sealed key-binding key). */
  async getMeta(key: string): Promise<Buffer | undefined> {
    const raw = await this.db.get(META_PREFIX + key);
    return raw === undefined ? undefined : Buffer.from(raw, 'base64');
  }

  async putMeta(key: string, value: Buffer): Promise<void> {
    await this.db.put(META_PREFIX + key, value.toString('base64'), { sync: true });
  }

  async deleteMeta(key: string): Promise<void> {
    await this.db.del(META_PREFIX + key, { sync: true });
  }

  async list(): Promise<VmRecord[]> {
    const out: VmRecord[] = [];
    for await (const [key, raw] of this.db.iterator({ gte: KEY_PREFIX, lt: KEY_PREFIX + '\xff' })) out.push(parseRecord(key.slice(KEY_PREFIX.length), raw));
    return out;
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

function parseRecord(name: string, raw: string): VmRecord {
  let j: any;
  try {
    j = JSON.parse(raw);
  } catch {
    throw new RegistryError(`the record of VM '${name}' is not JSON; the VM registry is damaged`);
  }
  if (j?.version !== RECORD_VERSION) throw new RegistryError(`the record of VM '${name}' has version ${j?.version}; this vtpmd reads version ${RECORD_VERSION}`);
  const c = j.config;
  if (
    j.name !== name ||
    typeof j.measurement !== 'string' ||
    typeof j.createdAt !== 'string' ||
    !c ||
    !['software', 'hardware'].includes(c.design) ||
    !['2.0', '1.2'].includes(c.tpm) ||
    !Number.isInteger(c.pcrCount) ||
    !['per-command', 'batched'].includes(c.durability) ||
    typeof c.migratable !== 'boolean'
  ) {
    throw new RegistryError(`the record of VM '${name}' is malformed; the VM registry is damaged`);
  }
  return { name, config: { design: c.design, tpm: c.tpm, pcrCount: c.pcrCount, durability: c.durability, migratable: c.migratable }, measurement: j.measurement, createdAt: j.createdAt };
}
