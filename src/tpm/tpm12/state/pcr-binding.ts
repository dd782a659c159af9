import { RC, Tpm12Error } from '../rc.ts';
import { decodeAs, enc } from '../structures/basic.ts';
import { pcrInfo, pcrInfoLong, pcrInfoShort, validLocalitySelection, type PcrInfoShort } from '../structures/pcr.ts';
import { STAG } from '../constants.ts';
import type { PcrBank } from './pcrs.ts';

/** A PCR binding (of a key, sealed blob or NV area) in one shape, whatever structure carried it. */
export interface PcrBinding {
  long: boolean;
  releaseSelect: Buffer;
  digestAtRelease: Buffer;
  localityAtRelease: number;
  creationSelect: Buffer;
  digestAtCreation: Buffer;
  localityAtCreation: number;
}

function anySelected(select: Buffer): boolean {
  return select.some((b) => b !== 0);
}

/** Parses stored PCR info: TPM_PCR_INFO_LONG if `long`, else TPM_PCR_INFO; empty means unbound. */
export function parsePcrInfo(raw: Buffer, long: boolean): PcrBinding | null {
  if (raw.length === 0) return null;
  if (long) {
    const p = decodeAs(pcrInfoLong, raw, RC.INVALID_PCR_INFO);
    return {
      long,
      releaseSelect: p.releasePCRSelection,
      digestAtRelease: p.digestAtRelease,
      localityAtRelease: p.localityAtRelease,
      creationSelect: p.creationPCRSelection,
      digestAtCreation: p.digestAtCreation,
      localityAtCreation: p.localityAtCreation,
    };
  }
  const p = decodeAs(pcrInfo, raw, RC.INVALID_PCR_INFO);
  return {
    long,
    releaseSelect: p.pcrSelection,
    digestAtRelease: p.digestAtRelease,
    localityAtRelease: 0x1f,
    creationSelect: p.pcrSelection,
    digestAtCreation: p.digestAtCreation,
    localityAtCreation: 0,
  };
}

/** Whether input PCR info is a TPM_PCR_INFO_LONG (it starts with its tag). */
export function isLongPcrInfo(raw: Buffer): boolean {
  return raw.length >= 2 && raw.readUInt16BE(0) === STAG.PCR_INFO_LONG;
}

/**
 * The PCR info to store for a new key or sealed blob (TPM_CreateWrapKey, TPM_Seal): the caller's
 * release selection, digest and localities, with the creation digest and locality filled in.
 */
export function bindAtCreation(raw: Buffer, pcrs: PcrBank, locality: number, long = isLongPcrInfo(raw)): { long: boolean; stored: Buffer; binding: PcrBinding | null } {
  if (raw.length === 0) return { long, stored: raw, binding: null };
  const b = parsePcrInfo(raw, long)!;
  if (long) {
    // libtpms refuses a caller's localityAtCreation of 0 with TPM_BADINDEX though it overwrites the value.
    if (!validLocalitySelection(b.localityAtCreation) || b.localityAtCreation === 0) throw new Tpm12Error(RC.BADINDEX);
    if (!validLocalitySelection(b.localityAtRelease) || b.localityAtRelease === 0) throw new Tpm12Error(RC.BAD_LOCALITY);
    const creationSelect = b.creationSelect;
    const stored = enc(pcrInfoLong, {
      tag: STAG.PCR_INFO_LONG,
      localityAtCreation: 1 << locality,
      localityAtRelease: b.localityAtRelease,
      creationPCRSelection: creationSelect,
      releasePCRSelection: b.releaseSelect,
      digestAtCreation: pcrs.compositeHash(creationSelect),
      digestAtRelease: b.digestAtRelease,
    });
    return { long, stored, binding: parsePcrInfo(stored, true) };
  }
  const stored = enc(pcrInfo, { pcrSelection: b.releaseSelect, digestAtRelease: b.digestAtRelease, digestAtCreation: pcrs.compositeHash(b.releaseSelect) });
  return { long, stored, binding: parsePcrInfo(stored, false) };
}

/** Checks a binding against the current PCRs and locality: TPM_WRONGPCRVAL / TPM_BAD_LOCALITY. */
export function checkBinding(b: PcrBinding | null, pcrs: PcrBank, locality: number): void {
  if (!b) return;
  if (b.long && (b.localityAtRelease & (1 << locality)) === 0) throw new Tpm12Error(RC.BAD_LOCALITY);
  if (anySelected(b.releaseSelect) && !pcrs.compositeHash(b.releaseSelect).equals(b.digestAtRelease)) throw new Tpm12Error(RC.WRONGPCRVAL);
}

/** Checks a TPM_PCR_INFO_SHORT (NV areas). */
export function checkShort(p: PcrInfoShort, pcrs: PcrBank, locality: number): void {
  if ((p.localityAtRelease & (1 << locality)) === 0) throw new Tpm12Error(RC.BAD_LOCALITY);
  if (anySelected(p.pcrSelection) && !pcrs.compositeHash(p.pcrSelection).equals(p.digestAtRelease)) throw new Tpm12Error(RC.WRONGPCRVAL);
}

/** The TPM_PCR_INFO_SHORT describing a selection's current values (Quote2, CertifyKey2 info). */
export function currentShort(select: Buffer, pcrs: PcrBank, locality: number): PcrInfoShort {
  return { pcrSelection: select, localityAtRelease: 1 << locality, digestAtRelease: pcrs.compositeHash(select) };
}

export function shortFromBinding(b: PcrBinding): Buffer {
  return enc(pcrInfoShort, { pcrSelection: b.releaseSelect, localityAtRelease: b.localityAtRelease, digestAtRelease: b.digestAtRelease });
}
