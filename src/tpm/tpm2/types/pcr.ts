import { codec, list, type Codec } from '../../wire/codec.ts';
import { isHashAlg } from '../../crypto/hash.ts';
import { RC, TpmError } from '../rc.ts';
import { HASH_COUNT } from './basic.ts';

/** PCR_SELECT_MIN for the PC-Client platform: 24 PCRs need three bytes. */
export const PCR_SELECT_MIN = 3;
/** The widest selection any engine accepts (256 PCRs). */
export const PCR_SELECT_LIMIT = 32;

/** TPMS_PCR_SELECTION: one bank and a bitmap of PCR indices (bit n of byte n/8). */
export interface PcrSelection {
  hash: number;
  select: Buffer;
}

export const pcrSelection: Codec<PcrSelection> = codec(
  (w, v) => {
    w.u16(v.hash);
    w.u8(v.select.length);
    w.bytes(v.select);
  },
  (r) => {
    const hash = r.u16();
    if (!isHashAlg(hash)) throw new TpmError(RC.HASH);
    const n = r.u8();
    if (n < PCR_SELECT_MIN || n > PCR_SELECT_LIMIT) throw new TpmError(RC.VALUE);
    return { hash, select: Buffer.from(r.bytes(n)) };
  },
);

/** TPML_PCR_SELECTION. */
export const pcrSelectionList = list(pcrSelection, HASH_COUNT);

export function isSelected(select: Uint8Array, pcr: number): boolean {
  const byte = pcr >> 3;
  return byte < select.length && (select[byte]! & (1 << (pcr & 7))) !== 0;
}

export function selectBitmap(pcrs: Iterable<number>, bytes: number): Buffer {
  const b = Buffer.alloc(bytes);
  for (const p of pcrs) b[p >> 3]! |= 1 << (p & 7);
  return b;
}
