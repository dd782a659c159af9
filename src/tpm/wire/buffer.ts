import { RC, TpmError } from '../tpm2/rc.ts';

/**
 * Reads big-endian TPM wire data. Running out of bytes is TPM_RC_INSUFFICIENT, the code the
 * specification gives for a structure that ends early; the dispatcher numbers it.
 */
export class Reader {
  private pos: number;
  private readonly end: number;

  constructor(readonly buf: Buffer, start = 0, end = buf.length) {
    this.pos = start;
    this.end = end;
  }

  get offset(): number {
    return this.pos;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  private need(n: number): void {
    if (this.end - this.pos < n) throw new TpmError(RC.INSUFFICIENT);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16BE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  i8(): number {
    this.need(1);
    return this.buf.readInt8(this.pos++);
  }

  u64(): bigint {
    this.need(8);
    const v = this.buf.readBigUInt64BE(this.pos);
    this.pos += 8;
    return v;
  }

  /** A view of the next n bytes (no copy); callers that keep the bytes must copy them. */
  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  /** A field its u16 size precedes (the shape of a TPM2B), copied: the caller keeps it. */
  sizedCopy(): Buffer {
    return Buffer.from(this.bytes(this.u16()));
  }

  /** A reader over the next n bytes, advancing this one past them. */
  sub(n: number): Reader {
    this.need(n);
    const r = new Reader(this.buf, this.pos, this.pos + n);
    this.pos += n;
    return r;
  }
}

/** A 32-bit value big-endian, as digests over TPM structures take command codes and counts. */
export function u32be(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}

/** Views bytes as a Buffer without copying them. */
export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * A copy in memory of its own. A small Buffer is normally cut from a shared 8 KB pool block and
 * keeps the whole block alive for as long as it lives; a value kept for the life of a VM must not.
 */
export function detached(b: Uint8Array): Buffer {
  const out = Buffer.allocUnsafeSlow(b.length);
  out.set(b);
  return out;
}

/** Writes big-endian TPM wire data into a growable buffer. */
export class Writer {
  private buf: Buffer;
  private pos = 0;

  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  get length(): number {
    return this.pos;
  }

  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): this {
    this.room(1);
    this.buf[this.pos++] = v & 0xff;
    return this;
  }

  i8(v: number): this {
    this.room(1);
    this.buf.writeInt8(v, this.pos++);
    return this;
  }

  u16(v: number): this {
    this.room(2);
    this.buf.writeUInt16BE(v & 0xffff, this.pos);
    this.pos += 2;
    return this;
  }

  u32(v: number): this {
    this.room(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  u64(v: bigint): this {
    this.room(8);
    this.buf.writeBigUInt64BE(BigInt.asUintN(64, v), this.pos);
    this.pos += 8;
    return this;
  }

  bytes(v: Uint8Array): this {
    this.room(v.length);
    this.buf.set(v, this.pos);
    this.pos += v.length;
    return this;
  }

  /** `v` after its u16 size (the shape of a TPM2B). */
  sized(v: Uint8Array): this {
    return this.u16(v.length).bytes(v);
  }

  /** Reserves a u32 to be filled in later (sizes known only after their content). */
  reserveU32(): number {
    const at = this.pos;
    this.u32(0);
    return at;
  }

  patchU32(at: number, v: number): void {
    this.buf.writeUInt32BE(v >>> 0, at);
  }

  /** Reserves a u16 to be filled in later. */
  reserveU16(): number {
    const at = this.pos;
    this.u16(0);
    return at;
  }

  patchU16(at: number, v: number): void {
    this.buf.writeUInt16BE(v & 0xffff, at);
  }

  /** Starts over, keeping the buffer (a scratch writer reused across responses). */
  reset(): void {
    this.pos = 0;
  }

  /** A live view of the bytes written from `start` on (valid until the next write). */
  view(start: number): Buffer {
    return this.buf.subarray(start, this.pos);
  }

  /** A copy of the written bytes in a buffer of their own (the writer stays reusable). */
  copyOut(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    return out;
  }

  /** The written bytes (a view; the writer must not be used afterwards). */
  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}
