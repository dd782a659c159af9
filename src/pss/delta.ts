/**
 * The difference between two NVM images of one vTPM, so that a save after a small change (a
 * PCR_Extend moves 32 bytes and a counter) stores tens of bytes instead of the whole image.
 *
 *   u32 length of the new image
 *   repeated: u32 offset, u16 length, the new bytes at that offset
 *
 * Runs closer than MERGE_GAP bytes are joined: a run header costs six bytes, so copying a few
 * unchanged bytes is cheaper than starting another run.
 */

const BLOCK = 256;
const MERGE_GAP = 8;
const MAX_RUN = 0xffff;

/**
 * The delta turning `before` into `after`, or undefined when the images differ in length or the
 * delta would not be much smaller than `after` itself (then the whole image is stored).
 */
export function encodeDelta(before: Buffer, after: Buffer, maxBytes = after.length >>> 2): Buffer | undefined {
  if (before.length !== after.length) return undefined;
  const runs: [number, number][] = [];
  const n = after.length;
  for (let block = 0; block < n; block += BLOCK) {
    const end = Math.min(block + BLOCK, n);
    // A native comparison skips the unchanged blocks, which are nearly all of them.
    if (after.compare(before, block, end, block, end) === 0) continue;
    for (let i = block; i < end; i++) {
      if (before[i] === after[i]) continue;
      const last = runs[runs.length - 1];
      if (last && i - last[1] <= MERGE_GAP && i + 1 - last[0] <= MAX_RUN) last[1] = i + 1;
      else runs.push([i, i + 1]);
    }
  }
  let size = 4;
  for (const [from, to] of runs) size += 6 + (to - from);
  if (size > maxBytes) return undefined;
  const out = Buffer.allocUnsafe(size);
  out.writeUInt32BE(n, 0);
  let at = 4;
  for (const [from, to] of runs) {
    out.writeUInt32BE(from, at);
    out.writeUInt16BE(to - from, at + 4);
    out.set(after.subarray(from, to), at + 6);
    at += 6 + (to - from);
  }
  return out;
}

/** `base` with `delta` applied, in a new buffer; undefined when the delta does not fit the base. */
export function applyDelta(base: Uint8Array, delta: Uint8Array): Buffer | undefined {
  const d = Buffer.from(delta.buffer, delta.byteOffset, delta.byteLength);
  if (d.length < 4 || d.readUInt32BE(0) !== base.length) return undefined;
  const out = Buffer.from(base);
  let at = 4;
  while (at < d.length) {
    if (at + 6 > d.length) return undefined;
    const offset = d.readUInt32BE(at);
    const length = d.readUInt16BE(at + 4);
    at += 6;
    if (length === 0 || at + length > d.length || offset + length > out.length) return undefined;
    d.copy(out, offset, at, at + length);
    at += length;
  }
  return out;
}
