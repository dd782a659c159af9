/**
 * The difference between two images of one TPM's state, so that a save after a small change (a
 * PCR_Extend moves 32 bytes and a counter) stores tens of bytes instead of the whole image:
 *
 *   u32 length of the new image
 *   repeated: u32 offset, u16 length, the new bytes at that offset
 *
 * Two makers write it: the PSS, comparing the image it holds with a new one (encodeDelta), and
 * the TPM 2.0 engine, which knows what it changed since it last handed its state over and so
 * need neither build the whole image nor compare it (Tpm2Engine.handOver).
 */

import { asBuffer } from './wire/buffer.ts';

const BLOCK = 256;
/** A run header costs six bytes, so copying a few unchanged bytes is cheaper than starting another run. */
const MERGE_GAP = 8;
const MAX_RUN = 0xffff;

/** Collects the runs of a delta for an image of `imageLength` bytes, then encodes them. */
export class DeltaWriter {
  /** Image offset, source, and the source's range, per run. */
  private readonly runs: { at: number; src: Uint8Array; from: number; to: number }[] = [];
  private bytes = 4;

  constructor(readonly imageLength: number) {}

  /** The encoded size so far. */
  get size(): number {
    return this.bytes;
  }

  /** The new image holds `src[from, to)` at `at`. Runs must come in increasing image order. */
  put(at: number, src: Uint8Array, from = 0, to = src.length): this {
    for (let start = from; start < to; start += MAX_RUN) {
      const end = Math.min(to, start + MAX_RUN);
      this.runs.push({ at: at + start - from, src, from: start, to: end });
      this.bytes += 6 + end - start;
    }
    return this;
  }

  /**
   * Runs for every byte where `after` differs from `before` (of the same length), which the new
   * image holds at `at`. Unchanged 256-byte blocks are skipped by one native comparison each.
   */
  diff(at: number, before: Uint8Array, after: Uint8Array): this {
    const a = asBuffer(after);
    const n = a.length;
    let from = -1;
    let to = -1;
    for (let block = 0; block < n; block += BLOCK) {
      const end = Math.min(block + BLOCK, n);
      if (a.compare(before, block, end, block, end) === 0) continue;
      for (let i = block; i < end; i++) {
        if (before[i] === after[i]) continue;
        if (from >= 0 && i - to <= MERGE_GAP && i + 1 - from <= MAX_RUN) to = i + 1;
        else {
          if (from >= 0) this.put(at + from, after, from, to);
          from = i;
          to = i + 1;
        }
      }
    }
    if (from >= 0) this.put(at + from, after, from, to);
    return this;
  }

  finish(): Buffer {
    const out = Buffer.allocUnsafe(this.bytes);
    out.writeUInt32BE(this.imageLength, 0);
    let at = 4;
    for (const r of this.runs) {
      out.writeUInt32BE(r.at, at);
      out.writeUInt16BE(r.to - r.from, at + 4);
      out.set(r.src.subarray(r.from, r.to), at + 6);
      at += 6 + r.to - r.from;
    }
    return out;
  }
}

/** The largest delta worth storing for an image of `imageLength` bytes: beyond it, the whole image is stored. */
export function maxDeltaBytes(imageLength: number): number {
  return imageLength >>> 2;
}

/**
 * The delta turning `before` into `after`, or undefined when the images differ in length or the
 * delta would be larger than `maxBytes`.
 */
export function encodeDelta(before: Buffer, after: Buffer, maxBytes = maxDeltaBytes(after.length)): Buffer | undefined {
  if (before.length !== after.length) return undefined;
  const w = new DeltaWriter(after.length).diff(0, before, after);
  return w.size > maxBytes ? undefined : w.finish();
}

/** Whether `delta` is one for an image of `imageLength` bytes, every run inside it. */
function fits(imageLength: number, d: Buffer): boolean {
  if (d.length < 4 || d.readUInt32BE(0) !== imageLength) return false;
  for (let at = 4; at < d.length; ) {
    if (at + 6 > d.length) return false;
    const offset = d.readUInt32BE(at);
    const length = d.readUInt16BE(at + 4);
    at += 6;
    if (length === 0 || at + length > d.length || offset + length > imageLength) return false;
    at += length;
  }
  return true;
}

/** Applies `delta` to `image` in place; false, with `image` untouched, when the delta does not fit it. */
export function patchInPlace(image: Buffer, delta: Uint8Array): boolean {
  const d = asBuffer(delta);
  if (!fits(image.length, d)) return false;
  for (let at = 4; at < d.length; ) {
    const offset = d.readUInt32BE(at);
    const length = d.readUInt16BE(at + 4);
    d.copy(image, offset, at + 6, at + 6 + length);
    at += 6 + length;
  }
  return true;
}

/** `base` with `delta` applied, in a new buffer; undefined when the delta does not fit the base. */
export function applyDelta(base: Uint8Array, delta: Uint8Array): Buffer | undefined {
  const out = Buffer.from(base);
  return patchInPlace(out, delta) ? out : undefined;
}

/**
 * A TPM's state as its keeper (a vTPM's PSS) gets it after a command: a change to what the keeper
 * got last, where the engine could tell one. The keeper applies `delta` only if what it holds is
 * exactly `after`; otherwise it calls `image`, which it may do only while it takes the change
 * (the engine runs on afterwards).
 */
export interface StateChange {
  /** The state this change follows: the `id` of the change before it, or the whole image handed over or resumed from. */
  readonly after: object;
  /** What the next change names as `after`: an identity alone, so that keeping it keeps no bytes. */
  readonly id: object;
  readonly delta: Buffer;
  image(): Buffer;
}

/** What a change or a whole image handed over is known by, for the change after it. */
export function handedId(state: Uint8Array | StateChange): object {
  return state instanceof Uint8Array ? state : state.id;
}
