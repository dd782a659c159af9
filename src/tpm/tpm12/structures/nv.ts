import { struct, u32 } from '../../wire/codec.ts';
import { STAG } from '../constants.ts';
import { bool, structTag } from './basic.ts';
import { pcrInfoShort } from './pcr.ts';

/** TPM_NV_ATTRIBUTES. */
export const nvAttributes = struct({ tag: structTag(STAG.NV_ATTRIBUTES), attributes: u32 });

/** TPM_NV_DATA_PUBLIC. */
export const nvDataPublic = struct({
  tag: structTag(STAG.NV_DATA_PUBLIC),
  nvIndex: u32,
  pcrInfoRead: pcrInfoShort,
  pcrInfoWrite: pcrInfoShort,
  permission: nvAttributes,
  bReadSTClear: bool,
  bWriteSTClear: bool,
  bWriteDefine: bool,
  dataSize: u32,
});
export type NvDataPublic = ReturnType<typeof nvDataPublic.decode>;
