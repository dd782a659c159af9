import { Reader, Writer } from '../../wire/buffer.ts';
import { encode } from '../../wire/codec.ts';
import { publicArea, sensitiveArea } from '../types/public.ts';
import { makeHardwareObject, makeObject, type TpmObject } from './model.ts';

const FORMAT = 1;
/** Format 2 adds a hardware-backed key's authValue and outer blob after the areas. */
const FORMAT_HARDWARE = 2;

/** A persistent object as kept in NV (and in contexts): format, hierarchy, the parent's QN and both areas. */
export function serializeObject(o: TpmObject): Buffer {
  const w = new Writer(512);
  w.u8(o.hardware ? FORMAT_HARDWARE : FORMAT).u32(o.hierarchy);
  w.sized(o.parentQn).sized(o.publicBytes);
  // A public-only object (LoadExternal of a public key) has no sensitive area: size 0.
  const s = o.sensitive ? encode(sensitiveArea, o.sensitive) : Buffer.alloc(0);
  w.sized(s);
  if (o.hardware) w.sized(o.hardware.authValue).sized(o.hardware.outer);
  return Buffer.from(w.finish());
}

/** The object; a hardware-backed one still needs its engine's backend attached (attachBackend). */
export function deserializeObject(blob: Buffer): TpmObject {
  const r = new Reader(blob);
  const format = r.u8();
  if (format !== FORMAT && format !== FORMAT_HARDWARE) throw new RangeError('unknown persistent object format');
  const hierarchy = r.u32();
  const parentQn = r.sizedCopy();
  const pub = publicArea.decode(r.sub(r.u16()));
  const size = r.u16();
  const sensitive = size === 0 ? undefined : sensitiveArea.decode(r.sub(size));
  if (format === FORMAT_HARDWARE) {
    const authValue = r.sizedCopy();
    const outer = r.sizedCopy();
    return makeHardwareObject(pub, { authValue, outer }, hierarchy, parentQn);
  }
  return makeObject(pub, sensitive, hierarchy, parentQn);
}

