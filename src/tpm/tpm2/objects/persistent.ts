import { Reader, Writer } from '../../wire/buffer.ts';
import { encode } from '../../wire/codec.ts';
import { publicArea, sensitiveArea } from '../types/public.ts';
import { makeObject, type TpmObject } from './model.ts';

const FORMAT = 1;

/** A persistent object as kept in NV: format, hierarchy, the parent's QN and both areas. */
export function serializeObject(o: TpmObject): Buffer {
  const w = new Writer(512);
  w.u8(FORMAT).u32(o.hierarchy);
  w.u16(o.parentQn.length).bytes(o.parentQn);
  w.u16(o.publicBytes.length).bytes(o.publicBytes);
  // A public-only object (LoadExternal of a public key) has no sensitive area: size 0.
  const s = o.sensitive ? encode(sensitiveArea, o.sensitive) : Buffer.alloc(0);
  w.u16(s.length).bytes(s);
  return Buffer.from(w.finish());
}

export function deserializeObject(blob: Buffer): TpmObject {
  const r = new Reader(blob);
  if (r.u8() !== FORMAT) throw new RangeError('unknown persistent object format');
  const hierarchy = r.u32();
  const parentQn = Buffer.from(r.bytes(r.u16()));
  const pub = publicArea.decode(r.sub(r.u16()));
  const size = r.u16();
  const sensitive = size === 0 ? undefined : sensitiveArea.decode(r.sub(size));
  return makeObject(pub, sensitive, hierarchy, parentQn);
}

