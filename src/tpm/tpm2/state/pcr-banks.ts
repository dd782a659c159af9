import { hash } from 'node:crypto';
import { HASH_ALGS, digest, digestSize, hashAlg } from '../../crypto/hash.ts';
import { isSelected, type PcrSelection } from '../types/pcr.ts';
import { pcrAttributes } from './pcr-attributes.ts';
import type { Reader, Writer } from '../../wire/buffer.ts';
import type { DeltaWriter } from '../../state-delta.ts';

/** One bank: the PCR values of one hash algorithm, allocated PCRs only. */
interface Bank {
  readonly alg: number;
  readonly name: string;
  readonly size: number;
  readonly allocated: Buffer;
  /** Every PCR's value back to back, so a snapshot copies a bank in one go. */
  readonly data: Buffer;
  /** Per PCR, its slice of `data`: updated in place, never replaced. */
  readonly values: readonly Buffer[];
  /** old value || new digest, hashed in one native call per extend. */
  readonly scratch: Buffer;
  /** The PCRs written since the last takeChanges(), as a range [low, high); empty when low >= high. */
  low: number;
  high: number;
}

/** The allocation of each implemented bank: a bitmap of allocated PCRs per algorithm. */
export type PcrAllocation = Map<number, Buffer>;

export function fullAllocation(pcrCount: number): PcrAllocation {
  const bytes = Math.ceil(pcrCount / 8);
  const m: PcrAllocation = new Map();
  for (const h of HASH_ALGS) {
    const sel = Buffer.alloc(bytes);
    for (let p = 0; p < pcrCount; p++) sel[p >> 3]! |= 1 << (p & 7);
    m.set(h.alg, sel);
  }
  return m;
}

/**
 * The PCR banks of one engine. An extend hashes into a scratch buffer and copies the result into
 * place; a value handed out (`value`) is a view that later extends change, and is only read.
 * Every write goes through `touch`, so that a hand-over of the running state carries the written
 * PCRs alone (takeChanges).
 */
export class PcrBanks {
  private readonly banks: Bank[] = [];
  private readonly byAlg = new Map<number, Bank>();
  /** TPM2_PCR_Read's pcrUpdateCounter. */
  updateCounter = 0;

  constructor(readonly pcrCount: number, allocation: PcrAllocation) {
    for (const h of HASH_ALGS) {
      const allocated = allocation.get(h.alg) ?? Buffer.alloc(Math.ceil(pcrCount / 8));
      const data = Buffer.alloc(pcrCount * h.size);
      const bank: Bank = {
        alg: h.alg,
        name: h.name,
        size: h.size,
        allocated,
        data,
        values: Array.from({ length: pcrCount }, (_, p) => data.subarray(p * h.size, (p + 1) * h.size)),
        scratch: Buffer.alloc(2 * h.size),
        low: 0,
        high: pcrCount,
      };
      this.banks.push(bank);
      this.byAlg.set(h.alg, bank);
    }
  }

  private touch(b: Bank, low: number, high = low + 1): void {
    if (low < b.low) b.low = low;
    if (high > b.high) b.high = high;
  }

  private touchAll(): void {
    for (const b of this.banks) this.touch(b, 0, this.pcrCount);
  }

  /**
   * Puts the PCRs written since the last call into `w`, as the bytes writeAll wrote at `at` hold
   * them, and forgets them: what a hand-over of the running state adds for the PCRs.
   */
  takeChanges(w: DeltaWriter, at: number): void {
    let bankAt = at + 1;
    for (const b of this.banks) {
      if (b.low < b.high) w.put(bankAt + 4 + b.low * b.size, b.data, b.low * b.size, b.high * b.size);
      bankAt += 4 + b.data.length;
    }
    this.forgetChanges();
  }

  /** Forgets which PCRs were written: a whole image was handed over. */
  forgetChanges(): void {
    for (const b of this.banks) {
      b.low = this.pcrCount;
      b.high = 0;
    }
  }

  /** Sets every PCR to its power-on value (zeros; ones for the D-RTM PCRs). */
  initialize(keep?: (pcr: number) => boolean): void {
    this.touchAll();
    for (const b of this.banks) {
      for (let p = 0; p < this.pcrCount; p++) {
        if (keep?.(p)) continue;
        b.values[p]!.fill(pcrAttributes(p).initOnes ? 0xff : 0x00);
      }
    }
  }

  /** Writes the startup locality into the last byte of PCR 0 in every bank. */
  markStartupLocality(locality: number): void {
    for (const b of this.banks) {
      b.values[0]![b.size - 1] = locality;
      this.touch(b, 0);
    }
  }

  isAllocated(alg: number, pcr: number): boolean {
    const b = this.bank(alg);
    return b !== undefined && pcr < this.pcrCount && isSelected(b.allocated, pcr);
  }

  /** Banks with at least one allocated PCR, in algorithm order. */
  activeBanks(): number[] {
    return this.banks.filter((b) => b.allocated.some((x) => x !== 0)).map((b) => b.alg);
  }

  /** The current allocation as TPML_PCR_SELECTION reports it (every implemented bank). */
  allocation(): PcrSelection[] {
    return this.banks.map((b) => ({ hash: b.alg, select: Buffer.from(b.allocated) }));
  }

  private bank(alg: number): Bank | undefined {
    return this.byAlg.get(alg);
  }

  /** The value of an allocated PCR, or undefined. */
  value(alg: number, pcr: number): Buffer | undefined {
    return this.isAllocated(alg, pcr) ? this.bank(alg)!.values[pcr] : undefined;
  }

  /**
   * PCRComputeCurrentDigest: the selection without unallocated PCRs, and H_alg of the selected
   * values bank by bank in PCR order (what Quote attests, PolicyPCR binds and creation data records).
   */
  digestOf(alg: number, selections: readonly PcrSelection[]): { selection: PcrSelection[]; digest: Buffer } {
    const values: Buffer[] = [];
    const selection = selections.map((sel) => {
      const select = Buffer.alloc(sel.select.length);
      for (let pcr = 0; pcr < sel.select.length * 8; pcr++) {
        const v = isSelected(sel.select, pcr) ? this.value(sel.hash, pcr) : undefined;
        if (!v) continue;
        select[pcr >> 3]! |= 1 << (pcr & 7);
        values.push(v);
      }
      return { hash: sel.hash, select };
    });
    return { selection, digest: digest(alg, ...values) };
  }

  /** Extends one bank of one PCR with a digest of that bank's size; unallocated banks ignore it. */
  extend(alg: number, pcr: number, d: Uint8Array): void {
    const b = this.byAlg.get(alg);
    if (!b || !isSelected(b.allocated, pcr)) return;
    const v = b.values[pcr]!;
    this.touch(b, pcr);
    v.copy(b.scratch, 0);
    b.scratch.set(d, b.size);
    v.set(hash(b.name, b.scratch, 'buffer'));
  }

  /** Extends every allocated bank of a PCR with the digest of `data` in that bank's algorithm. */
  extendData(pcr: number, data: Uint8Array): void {
    for (const b of this.banks) {
      if (!isSelected(b.allocated, pcr)) continue;
      this.touch(b, pcr);
      b.values[pcr]!.set(digest(b.alg, b.values[pcr]!, digest(b.alg, data)));
    }
  }

  reset(pcr: number): void {
    for (const b of this.banks) {
      if (!isSelected(b.allocated, pcr)) continue;
      this.touch(b, pcr);
      b.values[pcr]!.fill(0);
    }
  }

  noteChanged(pcr: number): void {
    if (!pcrAttributes(pcr).noIncrement) this.updateCounter = (this.updateCounter + 1) >>> 0;
  }

  /** Snapshot of the state-saved PCRs, for Shutdown(STATE). */
  saveState(): Record<number, string[]> {
    const out: Record<number, string[]> = {};
    for (const b of this.banks) {
      out[b.alg] = b.values.map((v, p) => (pcrAttributes(p).stateSave ? v.toString('hex') : ''));
    }
    return out;
  }

  /**
   * Every PCR of every bank, for a running-state snapshot (saveState keeps only what
   * Shutdown(STATE) may): per bank its algorithm and count, then the values back to back.
   */
  /** What writeAll writes, in bytes. */
  get encodedSize(): number {
    let n = 1;
    for (const b of this.banks) n += 4 + b.data.length;
    return n;
  }

  writeAll(w: Writer): void {
    w.u8(this.banks.length);
    for (const b of this.banks) w.u16(b.alg).u16(b.values.length).bytes(b.data);
  }

  /** Restores what writeAll wrote; a bank or count this engine does not have is a RangeError. */
  readAll(r: Reader): void {
    this.touchAll();
    const n = r.u8();
    for (let i = 0; i < n; i++) {
      const b = this.byAlg.get(r.u16());
      const count = r.u16();
      if (!b || count !== b.values.length) throw new RangeError('the snapshot has PCR banks this vTPM does not');
      r.bytes(b.data.length).copy(b.data);
    }
  }

  /** Restores what saveState() recorded; PCRs it did not record get their power-on value. */
  restoreState(saved: Record<number, string[]>): void {
    this.initialize();
    for (const b of this.banks) {
      const vals = saved[b.alg];
      if (!vals) continue;
      vals.forEach((hex, p) => {
        if (hex && p < this.pcrCount && hex.length === b.size * 2) b.values[p]!.write(hex, 'hex');
      });
    }
  }
}

export function isImplementedBank(alg: number): boolean {
  return hashAlg(alg) !== undefined && digestSize(alg) > 0;
}
