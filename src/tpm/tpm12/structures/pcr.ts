import { codec, struct, u8, u32, type Codec } from '../../wire/codec.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { STAG } from '../constants.ts';
import { digest20, structTag } from './basic.ts';

/** PC Client TPMs have 24 PCRs: a selection is at most 3 bytes. */
export const PCR_COUNT = 24;
export const PCR_SELECT_MAX = PCR_COUNT / 8;

/** TPM_PCR_SELECTION: the bitmap bytes (bit i of byte j selects PCR 8j+i). */
export const pcrSelection: Codec<Buffer> = codec(
  (w, v) => {
    w.u16(v.length);
    w.bytes(v);
  },
  (r) => {
    const n = r.u16();
    if (n > PCR_SELECT_MAX) throw new Tpm12Error(RC.INVALID_PCR_INFO);
    return Buffer.from(r.bytes(n));
  },
);

export function selectedPcrs(select: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < select.length * 8; i++) if (select[i >> 3]! & (1 << (i & 7))) out.push(i);
  return out;
}

export function selectionOf(pcrs: readonly number[]): Buffer {
  const b = Buffer.alloc(PCR_SELECT_MAX);
  for (const p of pcrs) b[p >> 3]! |= 1 << (p & 7);
  return b;
}

/** TPM_PCR_INFO (1.1). */
export const pcrInfo = struct({ pcrSelection, digestAtRelease: digest20, digestAtCreation: digest20 });
export type PcrInfo = ReturnType<typeof pcrInfo.decode>;

/** TPM_PCR_INFO_LONG. */
export const pcrInfoLong = struct({
  tag: structTag(STAG.PCR_INFO_LONG),
  localityAtCreation: u8,
  localityAtRelease: u8,
  creationPCRSelection: pcrSelection,
  releasePCRSelection: pcrSelection,
  digestAtCreation: digest20,
  digestAtRelease: digest20,
});
export type PcrInfoLong = ReturnType<typeof pcrInfoLong.decode>;

/** TPM_PCR_INFO_SHORT. */
export const pcrInfoShort = struct({ pcrSelection, localityAtRelease: u8, digestAtRelease: digest20 });
export type PcrInfoShort = ReturnType<typeof pcrInfoShort.decode>;

/** TPM_PCR_COMPOSITE: the selection and the selected values in PCR order. */
export const pcrComposite = codec<{ select: Buffer; values: Buffer[] }>(
  (w, v) => {
    pcrSelection.encode(w, v.select);
    w.u32(v.values.length * 20);
    for (const x of v.values) w.bytes(x);
  },
  (r) => {
    const select = pcrSelection.decode(r);
    const n = u32.decode(r);
    if (n % 20 !== 0) throw new Tpm12Error(RC.BAD_PARAMETER);
    const values: Buffer[] = [];
    for (let i = 0; i < n / 20; i++) values.push(digest20.decode(r));
    return { select, values };
  },
);

/** TPM_LOCALITY_SELECTION: bits 5–7 must be clear. */
export function validLocalitySelection(v: number): boolean {
  return (v & 0xe0) === 0;
}
