import { codec, struct, u32 } from '../../wire/codec.ts';
import { STAG } from '../constants.ts';
import { bool, fixed, structTag } from './basic.ts';

/** TPM_PERMANENT_FLAGS field order on the wire. */
export const PERMANENT_FLAG_NAMES = [
  'disable',
  'ownership',
  'deactivated',
  'readPubek',
  'disableOwnerClear',
  'allowMaintenance',
  'physicalPresenceLifetimeLock',
  'physicalPresenceHWEnable',
  'physicalPresenceCMDEnable',
  'CEKPUsed',
  'TPMpost',
  'TPMpostLock',
  'FIPS',
  'operator',
  'enableRevokeEK',
  'nvLocked',
  'readSRKPub',
  'tpmEstablished',
  'maintenanceDone',
  'disableFullDALogicInfo',
] as const;
export type PermanentFlags = Record<(typeof PERMANENT_FLAG_NAMES)[number], boolean>;

export const permanentFlags = codec<PermanentFlags>(
  (w, v) => {
    w.u16(STAG.PERMANENT_FLAGS);
    for (const k of PERMANENT_FLAG_NAMES) w.u8(v[k] ? 1 : 0);
  },
  (r) => {
    structTag(STAG.PERMANENT_FLAGS).decode(r);
    const out = {} as PermanentFlags;
    for (const k of PERMANENT_FLAG_NAMES) out[k] = bool.decode(r);
    return out;
  },
);

/** TPM_STCLEAR_FLAGS field order on the wire. */
export const STCLEAR_FLAG_NAMES = ['deactivated', 'disableForceClear', 'physicalPresence', 'physicalPresenceLock', 'bGlobalLock'] as const;
export type StclearFlags = Record<(typeof STCLEAR_FLAG_NAMES)[number], boolean>;

export const stclearFlags = codec<StclearFlags>(
  (w, v) => {
    w.u16(STAG.STCLEAR_FLAGS);
    for (const k of STCLEAR_FLAG_NAMES) w.u8(v[k] ? 1 : 0);
  },
  (r) => {
    structTag(STAG.STCLEAR_FLAGS).decode(r);
    const out = {} as StclearFlags;
    for (const k of STCLEAR_FLAG_NAMES) out[k] = bool.decode(r);
    return out;
  },
);

/** TPM_COUNTER_VALUE. */
export const counterValue = struct({ tag: structTag(STAG.COUNTER_VALUE), label: fixed(4), counter: u32 });
export type CounterValue = ReturnType<typeof counterValue.decode>;
