import { RC, Tpm12Error } from '../rc.ts';
import { PCR_COUNT, selectedPcrs } from '../structures/pcr.ts';
import { pcrComposite } from '../structures/pcr.ts';
import { enc } from '../structures/basic.ts';
import { sha1 } from './key-object.ts';

/** PC Client TPM_PCR_ATTRIBUTES: whether a PCR resets, and the localities that may reset / extend it. */
interface PcrAttributes {
  reset: boolean;
  /** Bit mask of localities (bit n = locality n). */
  resetLocal: number;
  extendLocal: number;
  /** Whether TPM_Startup(ST_CLEAR) sets the PCR to all ones (the D-RTM PCRs). */
  startsAtOnes: boolean;
}

const ALL = 0x1f;

function attributes(i: number): PcrAttributes {
  if (i === 16 || i === 23) return { reset: true, resetLocal: ALL, extendLocal: ALL, startsAtOnes: false };
  switch (i) {
    case 17:
    case 18:
    case 19:
      return { reset: true, resetLocal: 0x10, extendLocal: 0x1c, startsAtOnes: true };
    case 20:
      return { reset: true, resetLocal: 0x14, extendLocal: 0x0e, startsAtOnes: true };
    case 21:
    case 22:
      return { reset: true, resetLocal: 0x04, extendLocal: 0x04, startsAtOnes: true };
    default:
      return { reset: false, resetLocal: 0, extendLocal: ALL, startsAtOnes: false };
  }
}

const ATTRS: readonly PcrAttributes[] = Array.from({ length: PCR_COUNT }, (_, i) => attributes(i));

/** The 24 SHA-1 PCRs of a PC Client TPM 1.2. */
export class PcrBank {
  values: Buffer[] = [];

  constructor() {
    this.startupClear();
  }

  startupClear(): void {
    this.values = ATTRS.map((a) => Buffer.alloc(20, a.startsAtOnes ? 0xff : 0));
  }

  read(i: number): Buffer {
    const v = this.values[i];
    if (!v) throw new Tpm12Error(RC.BADINDEX);
    return v;
  }

  extend(i: number, digest: Buffer, locality: number): Buffer {
    const a = ATTRS[i];
    if (!a) throw new Tpm12Error(RC.BADINDEX);
    if ((a.extendLocal & (1 << locality)) === 0) throw new Tpm12Error(RC.BAD_LOCALITY);
    const v = sha1(this.values[i]!, digest);
    this.values[i] = v;
    return v;
  }

  /** TPM_PCR_Reset: every selected PCR must be resettable from this locality, or none is reset. */
  reset(select: Buffer, locality: number): void {
    const pcrs = selectedPcrs(select);
    if (pcrs.length === 0) throw new Tpm12Error(RC.BAD_PARAMETER);
    for (const i of pcrs) {
      const a = ATTRS[i]!;
      if (!a.reset) throw new Tpm12Error(RC.NOTRESETABLE);
      if ((a.resetLocal & (1 << locality)) === 0) throw new Tpm12Error(RC.NOTLOCAL);
    }
    for (const i of pcrs) this.values[i] = Buffer.alloc(20);
  }

  /** TPM_PCR_COMPOSITE of the selected PCRs. */
  composite(select: Buffer): { select: Buffer; values: Buffer[] } {
    return { select, values: selectedPcrs(select).map((i) => this.values[i]!) };
  }

  /** TPM_COMPOSITE_HASH: SHA-1 of the TPM_PCR_COMPOSITE. */
  compositeHash(select: Buffer): Buffer {
    return sha1(enc(pcrComposite, this.composite(select)));
  }
}

/** The composite hash of a selection over given values (clients compute expected digests with it). */
export function compositeHashOf(select: Buffer, values: readonly Buffer[]): Buffer {
  return sha1(enc(pcrComposite, { select, values: [...values] }));
}
