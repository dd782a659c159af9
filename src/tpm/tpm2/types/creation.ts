import { oneOf, sized, sizedStruct, struct, u16, u8, type Codec } from '../../wire/codec.ts';
import { ST } from '../constants.ts';
import { RC } from '../rc.ts';
import { dataBuf, digestBuf, hierarchyOrNull } from './basic.ts';
import { pcrSelectionList, type PcrSelection } from './pcr.ts';

/** TPM2B_NAME: a handle or nameAlg || digest (sizeof TPMU_NAME = sizeof TPMT_HA). */
export const nameBuf = sized(66);
/** TPM2B_PRIVATE: integrity HMAC plus the encrypted sensitive area. */
export const privateBuf = sized(1024);

/** TPMS_CREATION_DATA. */
export const creationData = struct({
  pcrSelect: pcrSelectionList,
  pcrDigest: digestBuf,
  locality: u8,
  parentNameAlg: u16,
  parentName: nameBuf,
  parentQualifiedName: nameBuf,
  outsideInfo: dataBuf,
});
export type CreationData = {
  pcrSelect: PcrSelection[];
  pcrDigest: Buffer;
  locality: number;
  parentNameAlg: number;
  parentName: Buffer;
  parentQualifiedName: Buffer;
  outsideInfo: Buffer;
};

/** TPM2B_CREATION_DATA. */
export const creationData2b = sizedStruct(creationData) as Codec<CreationData>;

/** TPMT_TK_CREATION. */
export const creationTicket = struct({ tag: oneOf(u16, [ST.CREATION], RC.TAG), hierarchy: hierarchyOrNull, digest: digestBuf });
export type Ticket = { tag: number; hierarchy: number; digest: Buffer };
