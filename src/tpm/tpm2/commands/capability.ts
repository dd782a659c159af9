import { u32, yesNo } from '../../wire/codec.ts';
import { CAP, CC, HT, RH } from '../constants.ts';
import { command, commandAttributes } from '../command.ts';
import { RC, TpmError } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { ALGORITHMS, CURVES } from '../capability/algorithms.ts';
import { auditedCommands } from '../audit.ts';
import { pcrProperties, tpmProperties } from '../capability/properties.ts';
import { MAX_CAP, capabilityData, type CapabilityData } from '../types/capability.ts';

const PERMANENT_HANDLES = [RH.OWNER, RH.NULL, RH.RS_PW, RH.LOCKOUT, RH.ENDORSEMENT, RH.PLATFORM, RH.PLATFORM_NV];

/** Items with a key ≥ `from`, at most `count` of them, and whether more remain. */
function page<T>(items: readonly T[], key: (t: T) => number, from: number, count: number, max: number): [T[], boolean] {
  const all = items.filter((t) => key(t) >>> 0 >= from >>> 0);
  const n = Math.min(count, max);
  return [all.slice(0, n), all.length > n];
}

function handlesOfType(tpm: Tpm2Engine, from: number): number[] {
  switch (from >>> 24) {
    case HT.PCR:
      return Array.from({ length: tpm.pcrCount }, (_, i) => i);
    case HT.PERMANENT:
      return PERMANENT_HANDLES;
    case HT.TRANSIENT:
      return tpm.objects.handles();
    case HT.HMAC_SESSION:
      // TPM_HT_LOADED_SESSION: every loaded session, HMAC and policy alike.
      return tpm.sessions.handles();
    case HT.NV_INDEX:
      return tpm.nv.nvIndices.handles();
    case HT.POLICY_SESSION:
      // TPM_HT_SAVED_SESSION: sessions whose contexts are saved.
      return [...tpm.savedSessions.keys()];
    case HT.PERSISTENT:
      return [...tpm.nv.persistent.keys()];
    default:
      throw TpmError.parameter(RC.HANDLE, 2);
  }
}

function answer(tpm: Tpm2Engine, capability: number, property: number, count: number): [CapabilityData, boolean] {
  const id = (x: number) => x;
  switch (capability) {
    case CAP.ALGS: {
      const [algs, more] = page(ALGORITHMS, (a) => a.alg, property, count, MAX_CAP.algs);
      return [{ capability, algs: algs.map((a) => ({ ...a })) }, more];
    }
    case CAP.HANDLES: {
      const all = handlesOfType(tpm, property).sort((a, b) => a - b);
      const [items, more] = page(all, id, property, count, MAX_CAP.handles);
      return [{ capability, items }, more];
    }
    case CAP.COMMANDS: {
      const all = [...tpm.commands.values()].map((c) => c.def).sort((a, b) => a.cc - b.cc);
      const [defs, more] = page(all, (d) => d.cc, property, count, MAX_CAP.commands);
      return [{ capability, items: defs.map(commandAttributes) }, more];
    }
    case CAP.PP_COMMANDS:
      return [{ capability, items: [] }, false];
    case CAP.AUDIT_COMMANDS: {
      const [items, more] = page(auditedCommands(tpm), id, property, count, MAX_CAP.commands);
      return [{ capability, items }, more];
    }
    case CAP.PCRS:
      if (property !== 0) throw TpmError.parameter(RC.VALUE, 2);
      return [{ capability, pcrs: tpm.pcrs.allocation() }, false];
    case CAP.TPM_PROPERTIES: {
      const [props, more] = page(tpmProperties(tpm), (p) => p[0], property, count, MAX_CAP.tpmProperties);
      return [{ capability, properties: props.map(([p, value]) => ({ property: p, value })) }, more];
    }
    case CAP.PCR_PROPERTIES: {
      const [props, more] = page(pcrProperties(tpm), (p) => p.tag, property, count, MAX_CAP.pcrProperties);
      return [{ capability, pcrProperties: props }, more];
    }
    case CAP.ECC_CURVES: {
      const [curves, more] = page(CURVES, id, property, count, MAX_CAP.curves);
      return [{ capability, curves }, more];
    }
    case CAP.AUTH_POLICIES:
      if (property >>> 24 !== HT.PERMANENT) throw TpmError.parameter(RC.VALUE, 2);
      return [{ capability, empty: true }, false];
    case CAP.ACT:
      return [{ capability, empty: true }, false];
    default:
      throw TpmError.parameter(RC.VALUE, 1);
  }
}

export const capabilityCommands = [
  command({
    cc: CC.GetCapability,
    name: 'GetCapability',
    handles: [],
    params: { capability: u32, property: u32, propertyCount: u32 },
    response: { moreData: yesNo, capabilityData },
    handler: ({ tpm }, { capability, property, propertyCount }) => {
      const [capabilityData, moreData] = answer(tpm, capability, property, propertyCount);
      return { moreData, capabilityData };
    },
  }),
];
