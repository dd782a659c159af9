/**
 * What a TPM holds only while it has power — PCR values, the null hierarchy's seed and proof, the
 * platform authorization, hierarchy enables, the audit digest — as a versioned JSON record. A
 * vTPM whose host process restarts while its guest keeps running must come back with exactly
 * this, or the guest would see a TPM Reset it never caused.
 *
 * Loaded objects, sessions and sequences are not part of it: a guest (or its resource manager)
 * that needs them across a host restart holds their contexts (ContextSave), as it must across
 * any TPM Reset.
 */
import type { AuthPolicy, HierarchyEnables } from './nv-state.ts';

export const RUNNING_FORMAT = 'vtpmd-tpm2-running';
export const RUNNING_VERSION = 1;

export interface RunningState {
  started: boolean;
  orderlyStart: boolean;
  /** bank algorithm → every PCR's value, hex. */
  pcrs: Record<number, string[]>;
  pcrUpdateCounter: number;
  enables: HierarchyEnables;
  platformAuth: Buffer;
  platformPolicy: AuthPolicy;
  nullSeed: Buffer;
  nullProof: Buffer;
  auditDigest: { digest: string; resetCount: number };
  contextSequence: bigint;
}

export class RunningStateError extends Error {
  constructor(problem: string) {
    super(`the vTPM's running state is unusable: ${problem}`);
    this.name = 'RunningStateError';
  }
}

/** The record: a JSON header line (running state), then the NV blob unchanged. */
export function encodeRunningState(s: RunningState, nv: Buffer): Buffer {
  const json = JSON.stringify({
    format: RUNNING_FORMAT,
    version: RUNNING_VERSION,
    started: s.started,
    orderlyStart: s.orderlyStart,
    pcrs: s.pcrs,
    pcrUpdateCounter: s.pcrUpdateCounter,
    enables: s.enables,
    platformAuth: s.platformAuth.toString('hex'),
    platformPolicy: { alg: s.platformPolicy.alg, digest: s.platformPolicy.digest.toString('hex') },
    nullSeed: s.nullSeed.toString('hex'),
    nullProof: s.nullProof.toString('hex'),
    auditDigest: s.auditDigest,
    contextSequence: s.contextSequence.toString(),
  });
  return Buffer.concat([Buffer.from(json, 'utf8'), Buffer.from('\n'), nv]);
}

const isHex = (v: unknown): v is string => typeof v === 'string' && /^([0-9a-f]{2})*$/.test(v);

export function decodeRunningState(record: Buffer): { state: RunningState; nv: Buffer } {
  const eol = record.indexOf(0x0a);
  if (eol < 0) throw new RunningStateError('no running-state header');
  let j: any;
  try {
    j = JSON.parse(record.subarray(0, eol).toString('utf8'));
  } catch {
    throw new RunningStateError('the running-state header is not JSON');
  }
  if (j?.format !== RUNNING_FORMAT) throw new RunningStateError(`not a ${RUNNING_FORMAT} record`);
  if (j.version !== RUNNING_VERSION) throw new RunningStateError(`version ${j.version}; this vtpmd reads version ${RUNNING_VERSION}`);
  const pcrsOk =
    j.pcrs && typeof j.pcrs === 'object' && Object.entries(j.pcrs).every(([alg, v]) => /^\d+$/.test(alg) && Array.isArray(v) && v.every(isHex));
  const e = j.enables;
  const enablesOk = e && ['ph', 'sh', 'eh', 'phNV'].every((k) => typeof e[k] === 'boolean');
  if (
    typeof j.started !== 'boolean' ||
    typeof j.orderlyStart !== 'boolean' ||
    !pcrsOk ||
    !Number.isInteger(j.pcrUpdateCounter) ||
    !enablesOk ||
    !isHex(j.platformAuth) ||
    !Number.isInteger(j.platformPolicy?.alg) ||
    !isHex(j.platformPolicy?.digest) ||
    !isHex(j.nullSeed) ||
    !isHex(j.nullProof) ||
    !isHex(j.auditDigest?.digest) ||
    !Number.isInteger(j.auditDigest?.resetCount) ||
    typeof j.contextSequence !== 'string' ||
    !/^\d+$/.test(j.contextSequence)
  ) {
    throw new RunningStateError('a field is missing or malformed');
  }
  return {
    state: {
      started: j.started,
      orderlyStart: j.orderlyStart,
      pcrs: j.pcrs,
      pcrUpdateCounter: j.pcrUpdateCounter,
      enables: { ph: e.ph, sh: e.sh, eh: e.eh, phNV: e.phNV },
      platformAuth: Buffer.from(j.platformAuth, 'hex'),
      platformPolicy: { alg: j.platformPolicy.alg, digest: Buffer.from(j.platformPolicy.digest, 'hex') },
      nullSeed: Buffer.from(j.nullSeed, 'hex'),
      nullProof: Buffer.from(j.nullProof, 'hex'),
      auditDigest: { digest: j.auditDigest.digest, resetCount: j.auditDigest.resetCount },
      contextSequence: BigInt(j.contextSequence),
    },
    nv: record.subarray(eol + 1),
  };
}
