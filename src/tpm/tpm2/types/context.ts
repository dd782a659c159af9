import { sized, struct, u32, u64 } from '../../wire/codec.ts';
import { hierarchyOrNull } from './basic.ts';

/** TPM2B_CONTEXT_DATA (TPM2_MAX_CONTEXT_SIZE). */
export const contextData = sized(5120);

/** TPMS_CONTEXT. */
export const context = struct({ sequence: u64, savedHandle: u32, hierarchy: hierarchyOrNull, contextBlob: contextData });
export type Context = { sequence: bigint; savedHandle: number; hierarchy: number; contextBlob: Buffer };
