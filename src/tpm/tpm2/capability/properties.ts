import { ALG, PT, PT_PCR } from '../constants.ts';
import type { Tpm2Engine } from '../engine.ts';
import { CLOCK_UPDATE_INTERVAL, MAX_COMMAND_SIZE, MAX_RESPONSE_SIZE } from '../limits.ts';
import { MAX_BUFFER } from '../types/basic.ts';
import { PCR_SELECT_MIN, selectBitmap } from '../types/pcr.ts';
import { pcrAttributes } from '../state/pcr-attributes.ts';
import { MAX_NV_INDICES } from '../state/nv-indices.ts';
import { auditCounterProperties } from '../audit.ts';
import { MAX_PERSISTENT } from '../limits.ts';
import { CURVES } from './algorithms.ts';
import { activeSessions, MAX_ACTIVE_SESSIONS } from '../auth/sessions.ts';

/** Four ASCII characters as a big-endian u32, the way vendor strings are reported. */
function chars(s: string): number {
  const b = Buffer.alloc(4);
  b.write(s.slice(0, 4), 'latin1');
  return b.readUInt32BE(0);
}

/** Identity the engine reports; a chip model or vTPM overrides the manufacturer. */
export interface TpmIdentity {
  manufacturer: string;
  vendorStrings: [string, string, string, string];
  firmwareVersion: [number, number];
}

export const DEFAULT_IDENTITY: TpmIdentity = {
  manufacturer: 'VTPD',
  vendorStrings: ['vtpm', 'd', '', ''],
  firmwareVersion: [0x00000001, 0x00000000],
};

/** Library revision 1.59, published 8 November 2019 (day 312). */
const SPEC = { revision: 159, year: 2019, day: 312 };
/** PC-Client Platform TPM Profile 1.05. */
const PLATFORM_SPEC = { family: 1, level: 0, revision: 105, year: 2020, day: 136 };



/** Every TPM property (fixed and variable) with its current value, in tag order. */
export function tpmProperties(tpm: Tpm2Engine): [number, number][] {
  const id = tpm.identity;
  const nv = tpm.nv;
  const auth = nv.hierarchy.auth;
  const permanent =
    (auth.owner.length ? 1 : 0) |
    (auth.endorsement.length ? 2 : 0) |
    (auth.lockout.length ? 4 : 0) |
    (nv.hierarchy.disableClear ? 1 << 8 : 0) |
    (tpm.lockout.inLockout ? 1 << 9 : 0) |
    (1 << 10); // tpmGeneratedEPS: the endorsement seed was made by this TPM
  const en = tpm.enables;
  const audit = auditCounterProperties(tpm);
  const startupClear = (en.ph ? 1 : 0) | (en.sh ? 2 : 0) | (en.eh ? 4 : 0) | (en.phNV ? 8 : 0) | (tpm.orderlyStart ? 0x80000000 : 0);
  const props: [number, number][] = [
    [PT.FAMILY_INDICATOR, chars('2.0')],
    [PT.LEVEL, 0],
    [PT.REVISION, SPEC.revision],
    [PT.DAY_OF_YEAR, SPEC.day],
    [PT.YEAR, SPEC.year],
    [PT.MANUFACTURER, chars(id.manufacturer)],
    [PT.VENDOR_STRING_1, chars(id.vendorStrings[0])],
    [PT.VENDOR_STRING_2, chars(id.vendorStrings[1])],
    [PT.VENDOR_STRING_3, chars(id.vendorStrings[2])],
    [PT.VENDOR_STRING_4, chars(id.vendorStrings[3])],
    [PT.VENDOR_TPM_TYPE, 1],
    [PT.FIRMWARE_VERSION_1, id.firmwareVersion[0]],
    [PT.FIRMWARE_VERSION_2, id.firmwareVersion[1]],
    [PT.INPUT_BUFFER, MAX_BUFFER],
    [PT.HR_TRANSIENT_MIN, tpm.objects.capacity],
    [PT.HR_PERSISTENT_MIN, MAX_PERSISTENT],
    [PT.HR_LOADED_MIN, tpm.sessions.capacity],
    [PT.ACTIVE_SESSIONS_MAX, MAX_ACTIVE_SESSIONS],
    [PT.PCR_COUNT, tpm.pcrCount],
    [PT.PCR_SELECT_MIN, PCR_SELECT_MIN],
    [PT.CONTEXT_GAP_MAX, 0xffff],
    [PT.NV_COUNTERS_MAX, 0],
    [PT.NV_INDEX_MAX, 2048],
    [PT.MEMORY, 0x00000006],
    [PT.CLOCK_UPDATE, CLOCK_UPDATE_INTERVAL],
    [PT.CONTEXT_HASH, ALG.SHA256],
    [PT.CONTEXT_SYM, ALG.AES],
    [PT.CONTEXT_SYM_SIZE, 256],
    [PT.ORDERLY_COUNT, 255],
    [PT.MAX_COMMAND_SIZE, MAX_COMMAND_SIZE],
    [PT.MAX_RESPONSE_SIZE, MAX_RESPONSE_SIZE],
    [PT.MAX_DIGEST, 64],
    [PT.MAX_OBJECT_CONTEXT, 2048],
    [PT.MAX_SESSION_CONTEXT, 512],
    [PT.PS_FAMILY_INDICATOR, PLATFORM_SPEC.family],
    [PT.PS_LEVEL, PLATFORM_SPEC.level],
    [PT.PS_REVISION, PLATFORM_SPEC.revision],
    [PT.PS_DAY_OF_YEAR, PLATFORM_SPEC.day],
    [PT.PS_YEAR, PLATFORM_SPEC.year],
    [PT.SPLIT_MAX, 128],
    [PT.TOTAL_COMMANDS, tpm.commands.size],
    [PT.LIBRARY_COMMANDS, tpm.commands.size],
    [PT.VENDOR_COMMANDS, 0],
    [PT.NV_BUFFER_MAX, MAX_BUFFER],
    [PT.MODES, 0],
    [PT.MAX_CAP_BUFFER, 1024],
    [PT.PERMANENT, permanent],
    [PT.STARTUP_CLEAR, startupClear >>> 0],
    [PT.HR_NV_INDEX, nv.nvIndices.size],
    [PT.HR_LOADED, tpm.sessions.used],
    [PT.HR_LOADED_AVAIL, tpm.sessions.capacity - tpm.sessions.used],
    [PT.HR_ACTIVE, activeSessions(tpm)],
    [PT.HR_ACTIVE_AVAIL, MAX_ACTIVE_SESSIONS - activeSessions(tpm)],
    [PT.HR_TRANSIENT_AVAIL, tpm.objects.capacity - tpm.objects.used],
    [PT.HR_PERSISTENT, nv.persistent.size],
    [PT.HR_PERSISTENT_AVAIL, MAX_PERSISTENT - nv.persistent.size],
    [PT.NV_COUNTERS, nv.nvIndices.counters],
    [PT.NV_COUNTERS_AVAIL, MAX_NV_INDICES - nv.nvIndices.size],
    [PT.ALGORITHM_SET, 0],
    [PT.LOADED_CURVES, CURVES.length],
    [PT.LOCKOUT_COUNTER, tpm.lockout.failedTries],
    [PT.MAX_AUTH_FAIL, nv.da.maxTries],
    [PT.LOCKOUT_INTERVAL, nv.da.recoveryTime],
    [PT.LOCKOUT_RECOVERY, nv.da.lockoutRecovery],
    [PT.NV_WRITE_RECOVERY, 0],
    [PT.AUDIT_COUNTER_0, audit[0]],
    [PT.AUDIT_COUNTER_1, audit[1]],
  ];
  return props;
}

/** TPM_PT_PCR tags with the PCRs that have each property. */
export function pcrProperties(tpm: Tpm2Engine): { tag: number; select: Buffer }[] {
  const bytes = Math.ceil(tpm.pcrCount / 8);
  const pcrs = Array.from({ length: tpm.pcrCount }, (_, i) => i);
  const where = (f: (pcr: number) => boolean) => selectBitmap(pcrs.filter(f), bytes);
  const out: { tag: number; select: Buffer }[] = [{ tag: PT_PCR.SAVE, select: where((p) => pcrAttributes(p).stateSave) }];
  for (let loc = 0; loc <= 4; loc++) {
    out.push({ tag: PT_PCR.EXTEND_L0 + 2 * loc, select: where((p) => (pcrAttributes(p).extendLocalities & (1 << loc)) !== 0) });
    out.push({ tag: PT_PCR.RESET_L0 + 2 * loc, select: where((p) => (pcrAttributes(p).resetLocalities & (1 << loc)) !== 0) });
  }
  out.push({ tag: PT_PCR.NO_INCREMENT, select: where((p) => pcrAttributes(p).noIncrement) });
  out.push({ tag: PT_PCR.DRTM_RESET, select: where((p) => pcrAttributes(p).initOnes) });
  out.push({ tag: PT_PCR.POLICY, select: where(() => false) });
  out.push({ tag: PT_PCR.AUTH, select: where(() => false) });
  return out;
}
