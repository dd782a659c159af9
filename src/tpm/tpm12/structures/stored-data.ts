import { codec, struct, u8, type Codec } from '../../wire/codec.ts';
import { Writer } from '../../wire/buffer.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { STAG } from '../constants.ts';
import { bytes32, digest20, STRUCT_VER_11 } from './basic.ts';

/**
 * TPM_STORED_DATA (1.1, TPM_STRUCT_VER first, sealInfo a TPM_PCR_INFO) and TPM_STORED_DATA12
 * (tag and entity type first, sealInfo a TPM_PCR_INFO_LONG), decoded into one shape.
 */
export interface StoredData {
  data12: boolean;
  et: number;
  sealInfo: Buffer;
  encData: Buffer;
}

const sealInfoBytes = bytes32(256);
const encDataBytes = bytes32(1024);

function encodeHead(w: Writer, v: StoredData): void {
  if (v.data12) w.u16(STAG.STORED_DATA12).u16(v.et);
  else w.bytes(STRUCT_VER_11);
  sealInfoBytes.encode(w, v.sealInfo);
}

export const storedData: Codec<StoredData> = codec(
  (w, v) => {
    encodeHead(w, v);
    encDataBytes.encode(w, v.encData);
  },
  (r) => {
    const first = r.u16();
    const second = r.u16();
    let data12: boolean;
    if (first === STAG.STORED_DATA12) data12 = true;
    else if (first === 0x0101) data12 = false;
    else throw new Tpm12Error(RC.INVALID_STRUCTURE);
    const sealInfo = sealInfoBytes.decode(r);
    const encData = encDataBytes.decode(r);
    return { data12, et: data12 ? second : 0, sealInfo, encData };
  },
);

/** What storedDigest covers: the structure without encDataSize and encData. */
export function storedDataDigestBytes(v: StoredData): Buffer {
  const w = new Writer(128);
  encodeHead(w, v);
  return Buffer.from(w.finish());
}

/** TPM_SEALED_DATA: the encrypted part of a sealed blob. */
export const sealedData = struct({
  payload: u8,
  authData: digest20,
  tpmProof: digest20,
  storedDigest: digest20,
  data: bytes32(256),
});
export type SealedData = ReturnType<typeof sealedData.decode>;
