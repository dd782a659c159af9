import { codec, list, struct, u16, u32, type Codec } from '../../wire/codec.ts';
import { CAP } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import { pcrSelectionList, type PcrSelection } from './pcr.ts';

/** MAX_CAP_DATA: a capability answer fits in MAX_CAP_BUFFER (1024) less its capability and count. */
const MAX_CAP_DATA = 1024 - 4 - 4;
export const MAX_CAP = {
  algs: Math.floor(MAX_CAP_DATA / 6),
  handles: Math.floor(MAX_CAP_DATA / 4),
  commands: Math.floor(MAX_CAP_DATA / 4),
  tpmProperties: Math.floor(MAX_CAP_DATA / 8),
  pcrProperties: Math.floor(MAX_CAP_DATA / 8),
  curves: Math.floor(MAX_CAP_DATA / 2),
} as const;

const taggedPcrSelect = codec<{ tag: number; select: Buffer }>(
  (w, v) => {
    w.u32(v.tag).u8(v.select.length).bytes(v.select);
  },
  (r) => {
    const tag = r.u32();
    const n = r.u8();
    if (n > 32) throw new TpmError(RC.VALUE);
    return { tag, select: Buffer.from(r.bytes(n)) };
  },
);

export type CapabilityData =
  | { capability: typeof CAP.ALGS; algs: { alg: number; attributes: number }[] }
  | { capability: typeof CAP.HANDLES | typeof CAP.COMMANDS | typeof CAP.PP_COMMANDS | typeof CAP.AUDIT_COMMANDS; items: number[] }
  | { capability: typeof CAP.PCRS; pcrs: PcrSelection[] }
  | { capability: typeof CAP.TPM_PROPERTIES; properties: { property: number; value: number }[] }
  | { capability: typeof CAP.PCR_PROPERTIES; pcrProperties: { tag: number; select: Buffer }[] }
  | { capability: typeof CAP.ECC_CURVES; curves: number[] }
  | { capability: typeof CAP.AUTH_POLICIES | typeof CAP.ACT; empty: true };

const algList = list(struct({ alg: u16, attributes: u32 }), MAX_CAP.algs);
const u32s = list(u32, MAX_CAP.handles);
const propList = list(struct({ property: u32, value: u32 }), MAX_CAP.tpmProperties);
const pcrPropList = list(taggedPcrSelect, MAX_CAP.pcrProperties);
const curveList = list(u16, MAX_CAP.curves);

/** TPMS_CAPABILITY_DATA. */
export const capabilityData: Codec<CapabilityData> = codec(
  (w, v) => {
    w.u32(v.capability);
    switch (v.capability) {
      case CAP.ALGS:
        return algList.encode(w, v.algs);
      case CAP.HANDLES:
      case CAP.COMMANDS:
      case CAP.PP_COMMANDS:
      case CAP.AUDIT_COMMANDS:
        return u32s.encode(w, v.items);
      case CAP.PCRS:
        return pcrSelectionList.encode(w, v.pcrs);
      case CAP.TPM_PROPERTIES:
        return propList.encode(w, v.properties);
      case CAP.PCR_PROPERTIES:
        return pcrPropList.encode(w, v.pcrProperties);
      case CAP.ECC_CURVES:
        return curveList.encode(w, v.curves);
      case CAP.AUTH_POLICIES:
      case CAP.ACT:
        w.u32(0);
        return;
    }
  },
  (r) => {
    const capability = r.u32();
    switch (capability) {
      case CAP.ALGS:
        return { capability, algs: algList.decode(r) };
      case CAP.HANDLES:
      case CAP.COMMANDS:
      case CAP.PP_COMMANDS:
      case CAP.AUDIT_COMMANDS:
        return { capability, items: u32s.decode(r) };
      case CAP.PCRS:
        return { capability, pcrs: pcrSelectionList.decode(r) };
      case CAP.TPM_PROPERTIES:
        return { capability, properties: propList.decode(r) };
      case CAP.PCR_PROPERTIES:
        return { capability, pcrProperties: pcrPropList.decode(r) };
      case CAP.ECC_CURVES:
        return { capability, curves: curveList.decode(r) };
      case CAP.AUTH_POLICIES:
      case CAP.ACT:
        if (r.u32() !== 0) throw new TpmError(RC.SIZE);
        return { capability, empty: true };
      default:
        throw new TpmError(RC.VALUE);
    }
  },
);
