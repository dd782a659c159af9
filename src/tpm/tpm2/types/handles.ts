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
/** TPMI_RH_HIERARCHY: owner, endorsement or platform (without TPM_RH_NULL). */
export const rhHierarchy: Codec<number> = oneOf(u32, [RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM], RC.VALUE);
/** TPMI_RH_HIERARCHY_AUTH: a hierarchy whose authValue HierarchyChangeAuth may change. */
export const rhHierarchyAuth: Codec<number> = oneOf(u32, [RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.LOCKOUT], RC.VALUE);
/** TPMI_RH_HIERARCHY_POLICY: as TPMI_RH_HIERARCHY_AUTH; the TPM_RH_ACT_x handles are absent (no ACTs). */
export const rhHierarchyPolicy: Codec<number> = oneOf(u32, [RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.LOCKOUT], RC.VALUE);
/** TPMI_RH_ENABLES: the TPMA_STARTUP_CLEAR enable HierarchyControl changes (without TPM_RH_NULL). */
export const rhEnables: Codec<number> = oneOf(u32, [RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.PLATFORM_NV], RC.VALUE);
/** TPMI_RH_CLEAR: lockout or platform, the authorizations of Clear and ClearControl. */
export const rhClear: Codec<number> = oneOf(u32, [RH.LOCKOUT, RH.PLATFORM], RC.VALUE);
/** TPMI_RH_LOCKOUT. */
export const rhLockout: Codec<number> = oneOf(u32, [RH.LOCKOUT], RC.VALUE);
