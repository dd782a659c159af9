import { codec, type Codec } from '../../wire/codec.ts';
import { asBuffer, Reader, Writer } from '../../wire/buffer.ts';
import { RC, Tpm12Error } from '../rc.ts';

/** Exactly n bytes (TPM_DIGEST, TPM_NONCE, TPM_AUTHDATA are n = 20). Decoding copies. */
export function fixed(n: number): Codec<Buffer> {
  return codec(
    (w, v) => {
      if (v.length !== n) throw new RangeError(`expected ${n} bytes, got ${v.length}`);
      w.bytes(v);
    },
    (r) => Buffer.from(r.bytes(n)),
  );
}

export const digest20 = fixed(20);

/** A BOOL: 0 or 1; anything else is TPM_BAD_PARAMETER. */
export const bool = codec<boolean>(
  (w, v) => w.u8(v ? 1 : 0),
  (r) => {
    const v = r.u8();
    if (v > 1) throw new Tpm12Error(RC.BAD_PARAMETER);
    return v === 1;
  },
);

/** A UINT32 size then that many bytes, at most `max`. */
export function bytes32(max = 1 << 16): Codec<Buffer> {
  return codec(
    (w, v) => {
      w.u32(v.length);
      w.bytes(v);
    },
    (r) => {
      const n = r.u32();
      if (n > max) throw new Tpm12Error(RC.BAD_PARAM_SIZE);
      return Buffer.from(r.bytes(n));
    },
  );
}

/** A UINT16 size then that many bytes. */
export function bytes16(max = 0xffff): Codec<Buffer> {
  return codec(
    (w, v) => {
      w.u16(v.length);
      w.bytes(v);
    },
    (r) => {
      const n = r.u16();
      if (n > max) throw new Tpm12Error(RC.BAD_PARAM_SIZE);
      return Buffer.from(r.bytes(n));
    },
  );
}

/** A TPM_STRUCTURE_TAG that must have one value. */
export function structTag(tag: number): Codec<number> {
  return codec(
    (w) => w.u16(tag),
    (r) => {
      const v = r.u16();
      if (v !== tag) throw new Tpm12Error(RC.INVALID_STRUCTURE);
      return v;
    },
  );
}

/** TPM_STRUCT_VER 1.1.0.0, the only version 1.1 structures carry. */
export const STRUCT_VER_11 = Buffer.from([1, 1, 0, 0]);

export const structVer = codec<Buffer>(
  (w, v) => w.bytes(v),
  (r) => {
    const v = Buffer.from(r.bytes(4));
    if (v[0] !== 1 || v[1] !== 1) throw new Tpm12Error(RC.BAD_VERSION);
    return v;
  },
);

/** A u32 counted list of u32 values (no count for TPM_CAP_NV_LIST, see below). */
export function encodeU32s(values: readonly number[]): Buffer {
  const w = new Writer(4 * values.length + 4);
  for (const v of values) w.u32(v);
  return w.finish();
}

/** Encodes with a codec into a fresh buffer. */
export function enc<T>(c: Codec<T>, v: T): Buffer {
  const w = new Writer(256);
  c.encode(w, v);
  return Buffer.from(w.finish());
}

/**
 * Decodes a whole buffer that came from inside the TPM's own blobs or from a sized field; any
 * failure (short, long, malformed) becomes `rc`.
 */
export function decodeAs<T>(c: Codec<T>, bytes: Uint8Array, rc: number): T {
  try {
    const r = new Reader(asBuffer(bytes));
    const v = c.decode(r);
    if (r.remaining !== 0) throw new Tpm12Error(rc);
    return v;
  } catch {
    throw new Tpm12Error(rc);
  }
}

/**
 * Bytes written as they are, with no size: a response field whose structure the handler already
 * encoded (TPM_CertifyKey's certifyInfo, which is TPM_CERTIFY_INFO or TPM_CERTIFY_INFO2).
 */
export const rawBytes = codec<Buffer>(
  (w, v) => w.bytes(v),
  () => {
    throw new Tpm12Error(RC.BAD_PARAMETER);
  },
);
