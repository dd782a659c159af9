/**
 * TPM 1.2 engines for tests: pinned entropy, RSA keys drawn from a small pool generated once per
 * process (key generation dominates otherwise), and a client wired to the engine.
 */
import { createHash } from 'node:crypto';
import { generateRsa, type RsaKey } from '../../src/tpm/crypto/rsa.ts';
import { Tpm12Engine, type Tpm12Options } from '../../src/tpm/tpm12/engine.ts';
import { Tpm12Device } from '../../src/tpm/tpm12/device.ts';
import { Tpm12Client } from '../../src/tpm/tpm12/client/index.ts';
import { authFromPassword } from '../../src/tpm/tpm12/client/helpers.ts';
import { ST } from '../../src/tpm/tpm12/constants.ts';
import type { EntropySource } from '../../src/tpm/crypto/random.ts';

const POOL_SIZE = 6;
const pools = new Map<number, RsaKey[]>();

/** Distinct keys in turn from a pool of POOL_SIZE per size, each engine starting at its own offset. */
export function pooledKeys(offset = 0): (bits: number) => RsaKey {
  let next = offset;
  return (bits) => {
    let pool = pools.get(bits);
    if (!pool) {
      pool = Array.from({ length: POOL_SIZE }, () => generateRsa(bits, 65537));
      pools.set(bits, pool);
    }
    return pool[next++ % POOL_SIZE]!;
  };
}

export function pinnedEntropy(seed = 'vtpmd-tpm12'): EntropySource {
  let counter = 0;
  let pool = Buffer.alloc(0);
  return (n: number) => {
    while (pool.length < n) {
      const c = Buffer.alloc(4);
      c.writeUInt32BE(counter++);
      pool = Buffer.concat([pool, createHash('sha256').update(seed).update(c).digest()]);
    }
    const out = Buffer.from(pool.subarray(0, n));
    pool = pool.subarray(n);
    return out;
  };
}

export interface TestTpm {
  engine: Tpm12Engine;
  device: Tpm12Device;
  client: Tpm12Client;
  /** Runs raw bytes at locality 0 (or the given one). */
  raw(cmd: Buffer | string, locality?: number): Buffer;
}

export function makeTpm(opts: Tpm12Options & { started?: boolean; locality?: () => number } = {}): TestTpm {
  const { started = true, locality, ...engineOpts } = opts;
  const engine = new Tpm12Engine({ entropy: pinnedEntropy(), rsaKeyGen: pooledKeys(), ...engineOpts });
  const device = new Tpm12Device(engine);
  const client = new Tpm12Client(async (c) => device.executeSync(c, locality?.() ?? 0), { random: pinnedEntropy('client') });
  const raw = (cmd: Buffer | string, loc = 0) => device.executeSync(typeof cmd === 'string' ? Buffer.from(cmd.replace(/\s/g, ''), 'hex') : cmd, loc);
  if (started) engine.execute(Buffer.from('00c10000000c000000990001', 'hex'));
  return { engine, device, client, raw };
}

export const OWNER_AUTH = authFromPassword('owner');
export const SRK_AUTH = authFromPassword('srk');

export async function ownedTpm(opts: Tpm12Options = {}): Promise<TestTpm> {
  const t = makeTpm(opts);
  await t.client.takeOwnership(OWNER_AUTH, SRK_AUTH);
  return t;
}

/** A command frame: tag, size, ordinal, body. */
export function frame(tag: number, ordinal: number, body: Buffer | string = ''): Buffer {
  const b = typeof body === 'string' ? Buffer.from(body.replace(/\s/g, ''), 'hex') : body;
  const h = Buffer.alloc(10);
  h.writeUInt16BE(tag, 0);
  h.writeUInt32BE(10 + b.length, 2);
  h.writeUInt32BE(ordinal >>> 0, 6);
  return Buffer.concat([h, b]);
}

export function rcOf(rsp: Uint8Array): number {
  return Buffer.from(rsp).readUInt32BE(6);
}

export { ST };
