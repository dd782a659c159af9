/**
 * What a TPM 1.2 holds only while it has power — the PCR values, TPM_STCLEAR_FLAGS (deactivated,
 * disableForceClear, physicalPresence, physicalPresenceLock, bGlobalLock), whether TPM_Startup
 * has run, and the monotonic counter this boot has claimed — as a versioned record followed by
 * the NV. A vTPM whose host process restarts while its guest keeps running must come back with
 * exactly this, or the guest would see a TPM_Init it never caused.
 *
 * Loaded keys and authorization sessions are not part of it: every TPM_Startup drops them, so a
 * guest already re-loads its keys (from their wrapped blobs) and re-opens sessions after any
 * reset, and the SRK, the only key a guest uses without loading it, lives in NV.
 *
 * The hardware physical-presence pin is not part of it either: it belongs to the platform, which
 * asserts it again on its own.
 */
import { createHash } from 'node:crypto';
import { Tpm12StateError } from '../rc.ts';
import { STCLEAR_FLAG_NAMES, type StclearFlags } from '../structures/flags.ts';
import { PCR_COUNT } from '../structures/pcr.ts';
import { check, fromJson, toJson, type Shape } from './json.ts';
import { deserializeNv, serializeNv, type Tpm12Nv } from './nv-state.ts';

export const RUNNING_FORMAT_12 = 'vtpmd-tpm12-running';
export const RUNNING_VERSION_12 = 1;

export interface Tpm12RunningState {
  started: boolean;
  /** PCR 0 … PCR_COUNT-1, 20 bytes each. */
  pcrs: Buffer[];
  stclear: StclearFlags;
  /** The counter TPM_IncrementCounter has claimed since the last TPM_Startup(ST_CLEAR), if any. */
  activeCounter: number | null;
}

/** A running-state record that cannot be used; the message names what is wrong, never a secret. */
export class Tpm12RunningStateError extends Tpm12StateError {
  constructor(problem: string) {
    super(`the TPM 1.2 vTPM's running state is unusable: ${problem}`);
    this.name = 'Tpm12RunningStateError';
  }
}

const STATE_SHAPE: Shape = {
  started: 'bool',
  pcrs: { array: { buffer: 20 } },
  stclear: Object.fromEntries(STCLEAR_FLAG_NAMES.map((k) => [k, 'bool' as Shape])),
  activeCounter: { nullable: 'int' },
};

/**
 * The record: one JSON line `{"format","version","sha256","state"}` whose checksum covers the
 * state, then the NV exactly as serializeNv writes it (which carries its own checksum).
 */
export function encodeRunningState12(s: Tpm12RunningState, nv: Tpm12Nv): Buffer {
  const body = toJson({ started: s.started, pcrs: s.pcrs, stclear: s.stclear, activeCounter: s.activeCounter });
  const sha256 = createHash('sha256').update(body).digest('hex');
  const header = `{"format":"${RUNNING_FORMAT_12}","version":${RUNNING_VERSION_12},"sha256":"${sha256}","state":${body}}\n`;
  return Buffer.concat([Buffer.from(header, 'utf8'), serializeNv(nv)]);
}

/** Parses and checks every field of a record; nothing is returned unless all of it is usable. */
export function decodeRunningState12(record: Buffer): { state: Tpm12RunningState; nv: Tpm12Nv } {
  const eol = record.indexOf(0x0a);
  if (eol < 0) throw new Tpm12RunningStateError('it has no running-state header line');
  let doc: { format?: unknown; version?: unknown; sha256?: unknown; state?: unknown };
  try {
    doc = fromJson(record.subarray(0, eol).toString('utf8')) as typeof doc;
  } catch (e) {
    throw new Tpm12RunningStateError(e instanceof Tpm12StateError ? 'the running-state header holds a malformed byte string' : 'the running-state header is not valid JSON');
  }
  if (!doc || typeof doc !== 'object' || doc.format !== RUNNING_FORMAT_12) throw new Tpm12RunningStateError(`it is not a ${RUNNING_FORMAT_12} record`);
  if (doc.version !== RUNNING_VERSION_12) {
    throw new Tpm12RunningStateError(`it has version ${String(doc.version)}; this vtpmd reads version ${RUNNING_VERSION_12}`);
  }
  if (typeof doc.state !== 'object' || doc.state === null) throw new Tpm12RunningStateError('it holds no state');
  if (createHash('sha256').update(toJson(doc.state)).digest('hex') !== doc.sha256) throw new Tpm12RunningStateError('its checksum does not match');
  try {
    check(doc.state, STATE_SHAPE, 'state');
  } catch (e) {
    if (e instanceof Tpm12StateError) throw new Tpm12RunningStateError(e.message.replace(/^TPM 1\.2 state is corrupted: /, ''));
    throw e;
  }
  const s = doc.state as Tpm12RunningState;
  if (s.pcrs.length !== PCR_COUNT) throw new Tpm12RunningStateError(`it holds ${s.pcrs.length} PCRs; a TPM 1.2 has ${PCR_COUNT}`);
  let nv: Tpm12Nv;
  try {
    nv = deserializeNv(record.subarray(eol + 1));
  } catch (e) {
    if (e instanceof Tpm12StateError) throw new Tpm12RunningStateError(`its NV: ${e.message}`);
    throw e;
  }
  if (s.activeCounter !== null && !nv.counters.some((c) => c.id === s.activeCounter)) {
    throw new Tpm12RunningStateError(`its active counter ${s.activeCounter} does not exist in its NV`);
  }
  return {
    state: {
      started: s.started,
      pcrs: s.pcrs.map((p) => Buffer.from(p)),
      stclear: Object.fromEntries(STCLEAR_FLAG_NAMES.map((k) => [k, s.stclear[k]])) as StclearFlags,
      activeCounter: s.activeCounter,
    },
    nv,
  };
}
