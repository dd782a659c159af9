import { HASH_ALGS } from '../../crypto/hash.ts';
import { fullAllocation, type PcrAllocation } from './pcr-banks.ts';

export const NV_FORMAT = 'vtpmd-tpm2-nv';
export const NV_VERSION = 1;

/** What Shutdown(STATE) preserves for the next Startup(STATE). */
export interface SavedState {
  pcrs: Record<number, string[]>;
  pcrUpdateCounter: number;
}

/**
 * Everything the engine keeps across power cycles, as a chip keeps it in NV. Serialized as
 * versioned JSON: readable in a support case, and new fields default when an older file loads.
 */
export interface NvState {
  clock: bigint;
  clockSafe: boolean;
  resetCount: number;
  restartCount: number;
  /** How the TPM last shut down: 'clear', 'state', or 'none' for a power loss. */
  shutdown: 'none' | 'clear' | 'state';
  allocation: PcrAllocation;
  /** A PCR_Allocate result waiting for the next TPM Reset. */
  pendingAllocation: PcrAllocation | null;
  /** Hierarchy proofs: secret HMAC keys for tickets, fixed at manufacture. */
  proofs: { owner: Buffer; endorsement: Buffer; platform: Buffer };
  /** Persistent hierarchy authorization values. */
  auth: { owner: Buffer; endorsement: Buffer; lockout: Buffer };
  saved: SavedState | null;
}

/** A freshly manufactured TPM. */
export function manufacture(pcrCount: number, random: (n: number) => Buffer): NvState {
  return {
    clock: 0n,
    clockSafe: true,
    resetCount: 0,
    restartCount: 0,
    shutdown: 'none',
    allocation: fullAllocation(pcrCount),
    pendingAllocation: null,
    proofs: { owner: random(64), endorsement: random(64), platform: random(64) },
    auth: { owner: Buffer.alloc(0), endorsement: Buffer.alloc(0), lockout: Buffer.alloc(0) },
    saved: null,
  };
}

function allocationToJson(a: PcrAllocation): Record<string, string> {
  return Object.fromEntries([...a].map(([alg, sel]) => [String(alg), sel.toString('hex')]));
}

function allocationFromJson(j: Record<string, string>): PcrAllocation {
  const known = new Set(HASH_ALGS.map((h) => h.alg));
  const m: PcrAllocation = new Map();
  for (const [k, v] of Object.entries(j)) if (known.has(Number(k))) m.set(Number(k), Buffer.from(v, 'hex'));
  return m;
}

const hex = (b: Buffer) => b.toString('hex');

export function serializeNv(s: NvState): Buffer {
  const json = {
    format: NV_FORMAT,
    version: NV_VERSION,
    clock: s.clock.toString(),
    clockSafe: s.clockSafe,
    resetCount: s.resetCount,
    restartCount: s.restartCount,
    shutdown: s.shutdown,
    allocation: allocationToJson(s.allocation),
    pendingAllocation: s.pendingAllocation ? allocationToJson(s.pendingAllocation) : null,
    proofs: { owner: hex(s.proofs.owner), endorsement: hex(s.proofs.endorsement), platform: hex(s.proofs.platform) },
    auth: { owner: hex(s.auth.owner), endorsement: hex(s.auth.endorsement), lockout: hex(s.auth.lockout) },
    saved: s.saved,
  };
  return Buffer.from(JSON.stringify(json));
}

/** A state file that cannot be read as ours: reported, never replaced by a fresh TPM. */
export class NvStateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NvStateError';
  }
}

export function deserializeNv(data: Buffer): NvState {
  let j: any;
  try {
    j = JSON.parse(data.toString('utf8'));
  } catch {
    throw new NvStateError('the TPM state file is not valid JSON (torn or corrupted); restore it from a backup or move it away to start a fresh TPM');
  }
  if (j?.format !== NV_FORMAT) throw new NvStateError(`the TPM state file is not a ${NV_FORMAT} file`);
  if (j.version !== NV_VERSION) throw new NvStateError(`the TPM state file has version ${j.version}; this vtpmd reads version ${NV_VERSION}`);
  const damaged = (what: string) => new NvStateError(`the TPM state file is damaged (${what}); restore it from a backup or move it away to start a fresh TPM`);
  const count = (v: unknown, what: string) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) throw damaged(what);
    return v;
  };
  const bytes = (v: unknown, what: string) => {
    if (typeof v !== 'string' || !/^([0-9a-f]{2})*$/.test(v)) throw damaged(what);
    return Buffer.from(v, 'hex');
  };
  const allocation = (v: unknown, what: string) => {
    if (typeof v !== 'object' || v === null) throw damaged(what);
    for (const x of Object.values(v)) bytes(x, what);
    return allocationFromJson(v as Record<string, string>);
  };
  if (typeof j.clock !== 'string' || !/^\d+$/.test(j.clock)) throw damaged('clock');
  if (!['none', 'clear', 'state'].includes(j.shutdown)) throw damaged('shutdown');
  if (typeof j.proofs !== 'object' || j.proofs === null || typeof j.auth !== 'object' || j.auth === null) throw damaged('hierarchies');
  if (j.saved !== null && (typeof j.saved !== 'object' || typeof j.saved.pcrs !== 'object')) throw damaged('saved state');
  return {
    clock: BigInt(j.clock),
    clockSafe: Boolean(j.clockSafe),
    resetCount: count(j.resetCount, 'resetCount'),
    restartCount: count(j.restartCount, 'restartCount'),
    shutdown: j.shutdown,
    allocation: allocation(j.allocation, 'allocation'),
    pendingAllocation: j.pendingAllocation === null ? null : allocation(j.pendingAllocation, 'pendingAllocation'),
    proofs: { owner: bytes(j.proofs.owner, 'proofs'), endorsement: bytes(j.proofs.endorsement, 'proofs'), platform: bytes(j.proofs.platform, 'proofs') },
    auth: { owner: bytes(j.auth.owner, 'auth'), endorsement: bytes(j.auth.endorsement, 'auth'), lockout: bytes(j.auth.lockout, 'auth') },
    saved: j.saved,
  };
}
