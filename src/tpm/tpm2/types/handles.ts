import { checked, oneOf, u32, type Codec } from '../../wire/codec.ts';
import { HT, RH } from '../constants.ts';
import { RC } from '../rc.ts';

/** TPMI_DH_PCR (and TPMI_DH_PCR+ with TPM_RH_NULL); the engine checks the PCR count. */
export const dhPcr: Codec<number> = checked(u32, (h) => h >>> 24 === HT.PCR, RC.VALUE);
export const dhPcrOrNull: Codec<number> = checked(u32, (h) => h >>> 24 === HT.PCR || h === RH.NULL, RC.VALUE);
/** TPMI_DH_OBJECT: a transient or persistent object. */
export const dhObject: Codec<number> = checked(u32, (h) => h >>> 24 === HT.TRANSIENT || h >>> 24 === HT.PERSISTENT, RC.VALUE);
/** TPMI_RH_PLATFORM. */
export const rhPlatform: Codec<number> = oneOf(u32, [RH.PLATFORM], RC.VALUE);
/** TPMI_RH_PROVISION: owner or platform. */
export const rhProvision: Codec<number> = oneOf(u32, [RH.OWNER, RH.PLATFORM], RC.VALUE);
