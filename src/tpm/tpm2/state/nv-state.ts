import { HASH_ALGS } from '../../crypto/hash.ts';
import { ALG } from '../constants.ts';
import { fullAllocation, type PcrAllocation } from './pcr-banks.ts';
import { NvStateError, boolField, bytesField, countField, damaged, hex, objectField } from './json.ts';
import { NvIndexTable } from './nv-indices.ts';
import { DA_DEFAULTS } from './lockout.ts';
import { CommandAuditLog } from '../audit.ts';

export { NvStateError };

export const NV_FORMAT = 'vtpmd-tpm2-nv';
export const NV_VERSION = 1;

/** What Shutdown(STATE) preserves for the next Startup(STATE). */
export interface SavedState {
  pcrs: Record<number, string[]>;
  pcrUpdateCounter: number;
  /** TPMA_STARTUP_CLEAR enables, restored by TPM Resume and set again by every Startup(CLEAR). */
  enables?: HierarchyEnables;
  /** The command audit digest, which survives TPM Restart and Resume. */
  auditDigest?: { digest: string; resetCount: number };
  /** Saved session contexts, which survive TPM Restart and Resume. */
  sessions?: SavedSessions;
}

/** Which session contexts may come back: handle → sequence (decimal), and the last handle number made. */
export interface SavedSessions {
  lastNumber: number;
  saved: [number, string][];
}

export interface HierarchyEnables {
  ph: boolean;
  sh: boolean;
  eh: boolean;
  phNV: boolean;
}

/** An authorization policy: a digest and the hash that made it (TPM_ALG_NULL: none). */
export interface AuthPolicy {
  alg: number;
  digest: Buffer;
}

export const NO_POLICY: AuthPolicy = { alg: ALG.NULL, digest: Buffer.alloc(0) };

/** The persistent part of the owner, endorsement and lockout hierarchies (platform's is volatile). */
export interface Hierarchies {
  /** Primary seeds: every primary key derives from its hierarchy's seed and the template. */
  seeds: { owner: Buffer; endorsement: Buffer; platform: Buffer };
  /** Proofs: secret HMAC keys for tickets and context integrity, changed with the seed. */
  proofs: { owner: Buffer; endorsement: Buffer; platform: Buffer };
  auth: { owner: Buffer; endorsement: Buffer; lockout: Buffer };
  policies: { owner: AuthPolicy; endorsement: AuthPolicy; lockout: AuthPolicy };
  /** TPM2_ClearControl: TPM2_Clear refused until lockoutAuth or the platform clears this. */
  disableClear: boolean;
}

/** Dictionary-attack parameters and counter (TPM2_DictionaryAttackParameters). */
export interface DaState {
  failedTries: number;
  maxTries: number;
  /** Seconds for one failure to be forgiven; 0 disables DA protection. */
  recoveryTime: number;
  /** Seconds lockoutAuth stays blocked after a failure; 0 means until the next TPM Reset. */
  lockoutRecovery: number;
  /** Cleared while a failed lockoutAuth is blocked (absent: enabled). */
  lockoutAuthEnabled?: boolean;
}

/**
 * Everything the engine keeps across power cycles, as a chip keeps it in NV. Serialized as
 * versioned JSON: readable in a support case, and validated field by field when loaded.
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
  hierarchy: Hierarchies;
  da: DaState;
  /** Persistent objects (EvictControl): handle → the object's serialized form. */
  persistent: Map<number, Buffer>;
  nvIndices: NvIndexTable;
  /** Command audit: algorithm, counter and audited commands (the running digest is volatile). */
  audit: CommandAuditLog;
  saved: SavedState | null;
}

const SEED_BYTES = 64;

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
    hierarchy: {
      seeds: { owner: random(SEED_BYTES), endorsement: random(SEED_BYTES), platform: random(SEED_BYTES) },
      proofs: { owner: random(SEED_BYTES), endorsement: random(SEED_BYTES), platform: random(SEED_BYTES) },
      auth: { owner: Buffer.alloc(0), endorsement: Buffer.alloc(0), lockout: Buffer.alloc(0) },
      policies: { owner: NO_POLICY, endorsement: NO_POLICY, lockout: NO_POLICY },
      disableClear: false,
    },
    da: { ...DA_DEFAULTS },
    persistent: new Map(),
    nvIndices: new NvIndexTable(),
    audit: new CommandAuditLog(),
    saved: null,
  };
}

function allocationToJson(a: PcrAllocation): Record<string, string> {
  return Object.fromEntries([...a].map(([alg, sel]) => [String(alg), sel.toString('hex')]));
}

function allocationFromJson(v: unknown, what: string): PcrAllocation {
  const j = objectField(v, what);
  const known = new Set(HASH_ALGS.map((h) => h.alg));
  const m: PcrAllocation = new Map();
  for (const [k, sel] of Object.entries(j)) {
    const b = bytesField(sel, what);
    if (known.has(Number(k))) m.set(Number(k), b);
  }
  return m;
}

const triple = <T>(o: { owner: T; endorsement: T; platform: T }, f: (x: T) => unknown) => ({
  owner: f(o.owner),
  endorsement: f(o.endorsement),
  platform: f(o.platform),
});
const policyToJson = (p: AuthPolicy) => ({ alg: p.alg, digest: hex(p.digest) });
function policyFromJson(v: unknown, what: string): AuthPolicy {
  const j = objectField(v, what);
  return { alg: countField(j.alg, what), digest: bytesField(j.digest, what) };
}

export function serializeNv(s: NvState): Buffer {
  const h = s.hierarchy;
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
    hierarchy: {
      seeds: triple(h.seeds, hex),
      proofs: triple(h.proofs, hex),
      auth: { owner: hex(h.auth.owner), endorsement: hex(h.auth.endorsement), lockout: hex(h.auth.lockout) },
      policies: { owner: policyToJson(h.policies.owner), endorsement: policyToJson(h.policies.endorsement), lockout: policyToJson(h.policies.lockout) },
      disableClear: h.disableClear,
    },
    da: s.da,
    persistent: Object.fromEntries([...s.persistent].map(([handle, blob]) => [handle.toString(16), hex(blob)])),
    nvIndices: s.nvIndices.toJSON(),
    audit: s.audit.toJSON(),
    saved: s.saved,
  };
  return Buffer.from(JSON.stringify(json));
}

function isSavedSessions(v: any): v is SavedSessions {
  const u32 = (n: unknown) => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= 0xffffffff;
  return typeof v === 'object' && v !== null && u32(v.lastNumber) && Array.isArray(v.saved) &&
    v.saved.every((e: unknown) => Array.isArray(e) && e.length === 2 && u32(e[0]) && typeof e[1] === 'string' && /^\d{1,20}$/.test(e[1]));
}

function auditFromJson(v: unknown): CommandAuditLog {
  if (v === undefined) return new CommandAuditLog();
  try {
    return CommandAuditLog.fromJSON(v);
  } catch {
    throw damaged('command audit');
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
  if (typeof j.clock !== 'string' || !/^\d+$/.test(j.clock)) throw damaged('clock');
  if (!['none', 'clear', 'state'].includes(j.shutdown)) throw damaged('shutdown');
  if (j.saved !== null && (typeof j.saved !== 'object' || typeof j.saved.pcrs !== 'object')) throw damaged('saved state');
  if (j.saved?.sessions !== undefined && !isSavedSessions(j.saved.sessions)) throw damaged('saved sessions');
  const h = objectField(j.hierarchy, 'hierarchy');
  const seeds = objectField(h.seeds, 'seeds');
  const proofs = objectField(h.proofs, 'proofs');
  const auth = objectField(h.auth, 'auth');
  const policies = objectField(h.policies, 'policies');
  const da = objectField(j.da, 'da');
  const persistent = new Map<number, Buffer>();
  for (const [k, v] of Object.entries(objectField(j.persistent, 'persistent'))) {
    if (!/^81[0-9a-f]{6}$/.test(k)) throw damaged('persistent handle');
    persistent.set(parseInt(k, 16), bytesField(v, 'persistent object'));
  }
  return {
    clock: BigInt(j.clock),
    clockSafe: boolField(j.clockSafe, 'clockSafe'),
    resetCount: countField(j.resetCount, 'resetCount'),
    restartCount: countField(j.restartCount, 'restartCount'),
    shutdown: j.shutdown,
    allocation: allocationFromJson(j.allocation, 'allocation'),
    pendingAllocation: j.pendingAllocation === null ? null : allocationFromJson(j.pendingAllocation, 'pendingAllocation'),
    hierarchy: {
      seeds: { owner: bytesField(seeds.owner, 'seeds'), endorsement: bytesField(seeds.endorsement, 'seeds'), platform: bytesField(seeds.platform, 'seeds') },
      proofs: { owner: bytesField(proofs.owner, 'proofs'), endorsement: bytesField(proofs.endorsement, 'proofs'), platform: bytesField(proofs.platform, 'proofs') },
      auth: { owner: bytesField(auth.owner, 'auth'), endorsement: bytesField(auth.endorsement, 'auth'), lockout: bytesField(auth.lockout, 'auth') },
      policies: {
        owner: policyFromJson(policies.owner, 'policies'),
        endorsement: policyFromJson(policies.endorsement, 'policies'),
        lockout: policyFromJson(policies.lockout, 'policies'),
      },
      disableClear: boolField(h.disableClear, 'disableClear'),
    },
    da: {
      failedTries: countField(da.failedTries, 'da'),
      maxTries: countField(da.maxTries, 'da'),
      recoveryTime: countField(da.recoveryTime, 'da'),
      lockoutRecovery: countField(da.lockoutRecovery, 'da'),
      lockoutAuthEnabled: da.lockoutAuthEnabled === undefined ? true : boolField(da.lockoutAuthEnabled, 'da'),
    },
    persistent,
    nvIndices: NvIndexTable.fromJSON(j.nvIndices),
    audit: auditFromJson(j.audit),
    saved: j.saved,
  };
}
