import { u32 } from '../../wire/codec.ts';
import { Writer, u32be } from '../../wire/buffer.ts';
import { ALG, CAP, CAP_FLAG, CAP_PROP, ORD, PID, RT, STAG } from '../constants.ts';
import { command } from '../command.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { bytes32, enc } from '../structures/basic.ts';
import { permanentFlags, stclearFlags } from '../structures/flags.ts';
import { nvDataPublic } from '../structures/nv.ts';
import { capVersionInfo } from '../structures/attest.ts';
import { PCR_COUNT } from '../structures/pcr.ts';
import type { Tpm12Engine } from '../engine.ts';

/** TPM_VERSION in TPM_CAP_VERSION: 1.1.0.0, as the specification fixes it for 1.2 TPMs. */
const VERSION_11 = Buffer.from([1, 1, 0, 0]);

/** The protocols TPM_CAP_PID reports. */
const PROTOCOLS = new Set<number>([PID.OIAP, PID.OSAP, PID.ADIP, PID.OWNER]);

function boolBuf(v: boolean): Buffer {
  return Buffer.from([v ? 1 : 0]);
}

function subU32(sub: Buffer): number {
  if (sub.length !== 4) throw new Tpm12Error(RC.BAD_MODE);
  return sub.readUInt32BE(0);
}

export function versionInfo(tpm: Tpm12Engine): Buffer {
  const vendor = Buffer.alloc(4);
  vendor.write(tpm.identity.manufacturer.slice(0, 4), 'latin1');
  return enc(capVersionInfo, {
    tag: STAG.CAP_VERSION_INFO,
    version: Buffer.from([1, 2, tpm.identity.revMajor & 0xff, tpm.identity.revMinor & 0xff]),
    specLevel: 2,
    errataRev: 3,
    tpmVendorID: vendor,
    vendorSpecific: Buffer.alloc(0),
  });
}

/** TPM_KEY_HANDLE_LIST / the handle list of TPM_CAP_HANDLE: a u16 count and the handles. */
function handleList(handles: readonly number[]): Buffer {
  const w = new Writer(2 + 4 * handles.length);
  w.u16(handles.length);
  for (const h of handles) w.u32(h);
  return Buffer.from(w.finish());
}

function property(tpm: Tpm12Engine, prop: number): Buffer {
  const counters = tpm.nv.counters.length;
  switch (prop) {
    case CAP_PROP.PCR:
      return u32be(PCR_COUNT);
    case CAP_PROP.DIR:
      return u32be(1);
    case CAP_PROP.MANUFACTURER: {
      const b = Buffer.alloc(4);
      b.write(tpm.identity.manufacturer.slice(0, 4), 'latin1');
      return b;
    }
    case CAP_PROP.KEYS:
      return u32be(tpm.keys.free);
    case CAP_PROP.MIN_COUNTER:
      return u32be(0);
    case CAP_PROP.AUTHSESS:
    case CAP_PROP.SESSIONS:
      return u32be(tpm.sessions.free);
    case CAP_PROP.TRANSESS:
    case CAP_PROP.MAX_TRANSESS:
    case CAP_PROP.MAX_DAASESS:
    case CAP_PROP.DAASESS:
    case CAP_PROP.FAMILYROWS:
    case CAP_PROP.DELEGATE_ROW:
    case CAP_PROP.CONTEXT:
    case CAP_PROP.MAX_CONTEXT:
    case CAP_PROP.CMK_RESTRICTION:
      return u32be(0);
    case CAP_PROP.COUNTERS:
      return u32be(tpm.maxCounters - counters);
    case CAP_PROP.MAX_AUTHSESS:
    case CAP_PROP.MAX_SESSIONS:
      return u32be(tpm.sessions.capacity);
    case CAP_PROP.MAX_COUNTERS:
      return u32be(tpm.maxCounters);
    case CAP_PROP.MAX_KEYS:
      return u32be(tpm.keys.capacity);
    case CAP_PROP.OWNER:
      return boolBuf(tpm.nv.owner !== null);
    case CAP_PROP.CONTEXT_DIST:
      return u32be(0);
    case CAP_PROP.DAA_INTERRUPT:
      return boolBuf(false);
    case CAP_PROP.TIS_TIMEOUT:
      return Buffer.concat([u32be(1000000), u32be(1000000), u32be(1000000), u32be(1000000)]);
    case CAP_PROP.STARTUP_EFFECT:
      // Audit digest cleared at ST_CLEAR, keys and sessions reset at any startup (bits 6, 4, 2).
      return u32be(0x54);
    case CAP_PROP.DURATION:
      return Buffer.concat([u32be(50000000), u32be(100000000), u32be(300000000)]);
    case CAP_PROP.ACTIVE_COUNTER:
      return u32be(tpm.activeCounter ?? 0xffffffff);
    case CAP_PROP.MAX_NV_AVAILABLE:
      return u32be(tpm.nvSpace - tpm.nv.nv.reduce((n, a) => n + a.pub.dataSize, 0));
    case CAP_PROP.INPUT_BUFFER:
      return u32be(tpm.maxCommandSize);
    default:
      throw new Tpm12Error(RC.BAD_MODE);
  }
}

function capability(tpm: Tpm12Engine, area: number, sub: Buffer): Buffer {
  switch (area) {
    case CAP.ORD:
      return boolBuf(tpm.commands.has(subU32(sub)));
    case CAP.ALG:
      // TRUE for the asymmetric algorithms TPM_Sign / Seal / UnBind accept, as libtpms reports.
      return boolBuf(subU32(sub) === ALG.RSA);
    case CAP.PID:
      if (sub.length !== 2) throw new Tpm12Error(RC.BAD_MODE);
      return boolBuf(PROTOCOLS.has(sub.readUInt16BE(0)));
    case CAP.FLAG:
      switch (subU32(sub)) {
        case CAP_FLAG.PERMANENT:
          return enc(permanentFlags, tpm.nv.flags);
        case CAP_FLAG.VOLATILE:
          return enc(stclearFlags, tpm.stclear);
        default:
          throw new Tpm12Error(RC.BAD_MODE);
      }
    case CAP.PROPERTY:
      return property(tpm, subU32(sub));
    case CAP.VERSION:
      return Buffer.from(VERSION_11);
    case CAP.VERSION_VAL:
      return versionInfo(tpm);
    case CAP.KEY_HANDLE:
      return handleList(tpm.keys.handles);
    case CAP.HANDLE:
      switch (subU32(sub)) {
        case RT.KEY:
          return handleList(tpm.keys.handles);
        case RT.AUTH:
          return handleList(tpm.sessions.handles);
        case RT.TRANS:
          return handleList([]);
        case RT.COUNTER:
          return handleList(tpm.nv.counters.map((c) => c.id));
        default:
          throw new Tpm12Error(RC.BAD_PARAMETER);
      }
    case CAP.NV_LIST: {
      const w = new Writer(64);
      for (const a of tpm.nv.nv) w.u32(a.pub.nvIndex);
      return Buffer.from(w.finish());
    }
    case CAP.NV_INDEX: {
      const index = subU32(sub);
      const a = tpm.nv.nv.find((x) => x.pub.nvIndex === index);
      if (!a) throw new Tpm12Error(RC.BADINDEX);
      return enc(nvDataPublic, a.pub);
    }
    case CAP.SELECT_SIZE: {
      if (sub.length !== 4) throw new Tpm12Error(RC.BAD_MODE);
      const major = sub[0]!;
      const minor = sub[1]!;
      const reqSize = sub.readUInt16BE(2);
      return boolBuf(major === 1 && (minor === 1 || minor === 2) && reqSize >= 1 && reqSize <= PCR_COUNT / 8);
    }
    case CAP.DA_LOGIC: {
      const w = new Writer(32);
      w.u16(STAG.DA_INFO).u8(0).u16(0).u16(5).u16(STAG.DA_ACTION_TYPE).u32(1).u32(0).u32(0);
      return Buffer.from(w.finish());
    }
    default:
      throw new Tpm12Error(RC.BAD_MODE);
  }
}

export const capabilityCommands = [
  command({
    ord: ORD.GetCapability,
    name: 'TPM_GetCapability',
    auths: [0],
    params: { capArea: u32, subCap: bytes32(64) },
    response: { resp: bytes32() },
    whenDisabled: true,
    whenDeactivated: true,
    handler(ctx, { capArea, subCap }) {
      return { resp: capability(ctx.tpm, capArea, subCap) };
    },
  }),
];
