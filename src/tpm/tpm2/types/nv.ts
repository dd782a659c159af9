import { checked, sizedStruct, struct, u16, u32, type Codec } from '../../wire/codec.ts';
import { digest } from '../../crypto/hash.ts';
import { ALG, HT } from '../constants.ts';
import { RC } from '../rc.ts';
import { algHash, digestBuf } from './basic.ts';

/** TPMI_RH_NV_INDEX. */
export const nvIndexHandle: Codec<number> = checked(u32, (h) => h >>> 24 === HT.NV_INDEX, RC.VALUE);

/** TPMS_NV_PUBLIC. */
export const nvPublic = struct({ nvIndex: nvIndexHandle, nameAlg: algHash, attributes: u32, authPolicy: digestBuf, dataSize: u16 });
export type NvPublic = { nvIndex: number; nameAlg: number; attributes: number; authPolicy: Buffer; dataSize: number };

/** TPM2B_NV_PUBLIC. */
export const nvPublic2b = sizedStruct(nvPublic) as Codec<NvPublic>;

/** The Name of an NV index: nameAlg || H_nameAlg(TPMS_NV_PUBLIC), with its current attributes. */
export function nvName(pub: NvPublic): Buffer {
  const w = Buffer.alloc(4 + 2 + 4 + 2 + pub.authPolicy.length + 2);
  let o = w.writeUInt32BE(pub.nvIndex >>> 0, 0);
  o = w.writeUInt16BE(pub.nameAlg, o);
  o = w.writeUInt32BE(pub.attributes >>> 0, o);
  o = w.writeUInt16BE(pub.authPolicy.length, o);
  o += pub.authPolicy.copy(w, o);
  w.writeUInt16BE(pub.dataSize, o);
  const alg = Buffer.alloc(2);
  alg.writeUInt16BE(pub.nameAlg);
  return pub.nameAlg === ALG.NULL ? Buffer.alloc(0) : Buffer.concat([alg, digest(pub.nameAlg, w)]);
}
