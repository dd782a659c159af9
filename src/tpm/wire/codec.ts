import { RC, TpmError } from '../tpm2/rc.ts';
import { asBuffer, Reader, Writer } from './buffer.ts';

/**
 * A wire type, declared once for both directions. Decoders are strict: they throw TpmError with
 * the format-one code the specification gives (TPM_RC_INSUFFICIENT, TPM_RC_SIZE, TPM_RC_VALUE…);
 * the dispatcher numbers it by the handle or parameter being decoded.
 */
export interface Codec<T> {
  encode(w: Writer, v: T): void;
  decode(r: Reader): T;
  /** Set on TPM2B codecs: a first parameter of this kind may be session-encrypted. */
  readonly sized?: true;
}

export type Decoded<C> = C extends Codec<infer T> ? T : never;

export function codec<T>(encode: (w: Writer, v: T) => void, decode: (r: Reader) => T): Codec<T> {
  return { encode, decode };
}

export const u8 = codec<number>((w, v) => w.u8(v), (r) => r.u8());
export const i8 = codec<number>((w, v) => w.i8(v), (r) => r.i8());
export const u16 = codec<number>((w, v) => w.u16(v), (r) => r.u16());
export const u32 = codec<number>((w, v) => w.u32(v), (r) => r.u32());
export const u64 = codec<bigint>((w, v) => w.u64(v), (r) => r.u64());

function sizedCodec<T>(encode: (w: Writer, v: T) => void, decode: (r: Reader) => T): Codec<T> {
  return { encode, decode, sized: true };
}

/** A value restricted to a set (a TPMI_ interface type); anything else fails with `rc`. */
export function oneOf(base: Codec<number>, allowed: Iterable<number>, rc: number = RC.VALUE): Codec<number> {
  const set = new Set(allowed);
  return codec(base.encode, (r) => {
    const v = base.decode(r);
    if (!set.has(v)) throw new TpmError(rc);
    return v;
  });
}

/** A value checked by a predicate; anything else fails with `rc`. */
export function checked<T>(base: Codec<T>, ok: (v: T) => boolean, rc: number = RC.VALUE): Codec<T> {
  return codec(base.encode, (r) => {
    const v = base.decode(r);
    if (!ok(v)) throw new TpmError(rc);
    return v;
  });
}

/** TPMI_YES_NO. */
export const yesNo = codec<boolean>(
  (w, v) => w.u8(v ? 1 : 0),
  (r) => {
    const v = r.u8();
    if (v > 1) throw new TpmError(RC.VALUE);
    return v === 1;
  },
);

/** A TPM2B of bytes: a u16 size then that many bytes, at most `max`. Decoding copies. */
export function sized(max: number): Codec<Buffer> {
  return sizedCodec(
    (w, v) => {
      w.u16(v.length);
      w.bytes(v);
    },
    (r) => {
      const n = r.u16();
      if (n > max) throw new TpmError(RC.SIZE);
      return Buffer.from(r.bytes(n));
    },
  );
}

/**
 * A TPM2B wrapping a structure (TPM2B_PUBLIC, TPM2B_SENSITIVE_CREATE…): the size must equal what
 * the structure consumes. A zero size decodes to null where the specification allows it.
 */
export function sizedStruct<T>(inner: Codec<T>, allowEmpty = false): Codec<T | null> {
  return sizedCodec(
    (w, v) => {
      if (v === null) {
        w.u16(0);
        return;
      }
      const at = w.reserveU16();
      const start = w.length;
      inner.encode(w, v);
      w.patchU16(at, w.length - start);
    },
    (r) => {
      const n = r.u16();
      if (n === 0) {
        if (allowEmpty) return null;
        throw new TpmError(RC.SIZE);
      }
      const sub = r.sub(n);
      const v = inner.decode(sub);
      if (sub.remaining !== 0) throw new TpmError(RC.SIZE);
      return v;
    },
  );
}

type Fields = Record<string, Codec<any>>;
export type StructOf<F extends Fields> = { [K in keyof F]: Decoded<F[K]> };

/** A structure: its fields in declaration order. */
export function struct<F extends Fields>(fields: F): Codec<StructOf<F>> {
  const entries = Object.entries(fields);
  return codec(
    (w, v) => {
      for (const [k, c] of entries) c.encode(w, (v as Record<string, unknown>)[k]);
    },
    (r) => {
      const out: Record<string, unknown> = {};
      for (const [k, c] of entries) out[k] = c.decode(r);
      return out as StructOf<F>;
    },
  );
}

/** A TPML: a u32 count then the items; a count above `max` is TPM_RC_SIZE. */
export function list<T>(item: Codec<T>, max: number): Codec<T[]> {
  return codec(
    (w, v) => {
      w.u32(v.length);
      for (const x of v) item.encode(w, x);
    },
    (r) => {
      const n = r.u32();
      if (n > max) throw new TpmError(RC.SIZE);
      const out: T[] = [];
      for (let i = 0; i < n; i++) out.push(item.decode(r));
      return out;
    },
  );
}

/** Encodes a value to a fresh buffer. */
export function encode<T>(c: Codec<T>, v: T): Buffer {
  const w = new Writer(64);
  c.encode(w, v);
  return w.finish();
}

/** Decodes a whole buffer; leftover bytes are TPM_RC_SIZE. */
export function decode<T>(c: Codec<T>, bytes: Uint8Array): T {
  const r = new Reader(asBuffer(bytes));
  const v = c.decode(r);
  if (r.remaining !== 0) throw new TpmError(RC.SIZE);
  return v;
}
