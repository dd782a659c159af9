import { u32 } from '../../wire/codec.ts';
import { ET, NV_INDEX, NV_PER, NV_PER_DEFINED, ORD } from '../constants.ts';
import { command } from '../command.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { bytes32, digest20 } from '../structures/basic.ts';
import { nvDataPublic, type NvDataPublic } from '../structures/nv.ts';
import { validLocalitySelection } from '../structures/pcr.ts';
import { verifyOwner } from '../auth/entities.ts';
import type { CallContext } from '../auth/context.ts';
import { checkShort } from '../state/pcr-binding.ts';
import type { NvArea } from '../state/nv-state.ts';
import type { Tpm12Engine } from '../engine.ts';

function area(tpm: Tpm12Engine, index: number): NvArea {
  const a = tpm.nv.nv.find((x) => x.pub.nvIndex === index);
  if (!a) throw new Tpm12Error(RC.BADINDEX);
  return a;
}

function checkPub(tpm: Tpm12Engine, pub: NvDataPublic): void {
  const attrs = pub.permission.attributes >>> 0;
  if ((attrs & ~NV_PER_DEFINED) !== 0) throw new Tpm12Error(RC.BAD_ATTRIBUTES);
  if (attrs & NV_PER.AUTHWRITE && attrs & NV_PER.OWNERWRITE) throw new Tpm12Error(RC.AUTH_CONFLICT);
  if (attrs & NV_PER.AUTHREAD && attrs & NV_PER.OWNERREAD) throw new Tpm12Error(RC.AUTH_CONFLICT);
  const writeProtected = NV_PER.AUTHWRITE | NV_PER.OWNERWRITE | NV_PER.PPWRITE | NV_PER.WRITEDEFINE | NV_PER.WRITE_STCLEAR | NV_PER.GLOBALLOCK;
  if (tpm.nv.flags.nvLocked && (attrs & writeProtected) === 0) throw new Tpm12Error(RC.PER_NOWRITE);
  for (const p of [pub.pcrInfoRead, pub.pcrInfoWrite]) {
    if (!validLocalitySelection(p.localityAtRelease) || p.localityAtRelease === 0) throw new Tpm12Error(RC.BAD_LOCALITY);
  }
}

/**
 * The checks an owner-authorized or unauthorized read / write makes once NV is locked
 * (TPM_PERMANENT_FLAGS.nvLocked): before that, every area is open.
 */
function checkAccess(ctx: CallContext, a: NvArea, write: boolean, authed: 'none' | 'owner' | 'area'): void {
  const tpm = ctx.tpm;
  const attrs = a.pub.permission.attributes;
  if (!tpm.nv.flags.nvLocked) return;
  const authBit = write ? NV_PER.AUTHWRITE : NV_PER.AUTHREAD;
  const ownerBit = write ? NV_PER.OWNERWRITE : NV_PER.OWNERREAD;
  const ppBit = write ? NV_PER.PPWRITE : NV_PER.PPREAD;
  if (authed !== 'area' && attrs & authBit) throw new Tpm12Error(RC.AUTH_CONFLICT);
  if (authed === 'area' && !(attrs & authBit)) throw new Tpm12Error(RC.AUTH_CONFLICT);
  if (attrs & ownerBit && authed !== 'owner') throw new Tpm12Error(RC.AUTH_CONFLICT);
  if (attrs & ppBit && !tpm.physicalPresence) throw new Tpm12Error(RC.BAD_PRESENCE);
  if (write) {
    if (attrs & NV_PER.WRITEDEFINE && a.pub.bWriteDefine) throw new Tpm12Error(RC.AREA_LOCKED);
    if (attrs & NV_PER.WRITE_STCLEAR && a.pub.bWriteSTClear) throw new Tpm12Error(RC.AREA_LOCKED);
    if (attrs & NV_PER.GLOBALLOCK && tpm.stclear.bGlobalLock) throw new Tpm12Error(RC.AREA_LOCKED);
    checkShort(a.pub.pcrInfoWrite, tpm.pcrs, ctx.locality);
  } else {
    if (attrs & NV_PER.READ_STCLEAR && a.pub.bReadSTClear) throw new Tpm12Error(RC.DISABLED_CMD);
    checkShort(a.pub.pcrInfoRead, tpm.pcrs, ctx.locality);
  }
}

function write(ctx: CallContext, nvIndex: number, offset: number, data: Buffer, authed: 'none' | 'owner' | 'area'): void {
  const tpm = ctx.tpm;
  if (nvIndex === NV_INDEX.INDEX0 && authed !== 'area') {
    if (data.length !== 0) throw new Tpm12Error(RC.BADINDEX);
    tpm.stclear.bGlobalLock = true;
    return;
  }
  const a = area(tpm, nvIndex);
  checkAccess(ctx, a, true, authed);
  const attrs = a.pub.permission.attributes;
  if (offset + data.length > a.pub.dataSize) throw new Tpm12Error(RC.NOSPACE);
  if (attrs & NV_PER.WRITEALL && data.length !== a.pub.dataSize && data.length !== 0) throw new Tpm12Error(RC.NOT_FULLWRITE);
  if (data.length === 0) {
    // A zero-length write locks the area (WRITEDEFINE for good, WRITE_STCLEAR until the next boot).
    if (attrs & NV_PER.WRITEDEFINE) a.pub.bWriteDefine = true;
    if (attrs & NV_PER.WRITE_STCLEAR) a.pub.bWriteSTClear = true;
  } else {
    data.copy(a.data, offset);
  }
  tpm.markNvDirty();
}

function read(ctx: CallContext, nvIndex: number, offset: number, size: number, authed: 'none' | 'owner' | 'area'): Buffer {
  const a = area(ctx.tpm, nvIndex);
  checkAccess(ctx, a, false, authed);
  if (size === 0) {
    if (a.pub.permission.attributes & NV_PER.READ_STCLEAR && !a.pub.bReadSTClear) {
      a.pub.bReadSTClear = true;
      // The lock lives in the area's public data, so whoever keeps NV must hear of it.
      ctx.tpm.markNvDirty();
    }
    return Buffer.alloc(0);
  }
  if (offset + size > a.pub.dataSize) throw new Tpm12Error(RC.NOSPACE);
  return Buffer.from(a.data.subarray(offset, offset + size));
}

function nvEntity(index: number) {
  return { types: [ET.NV], value: index };
}

export const nvCommands = [
  command({
    ord: ORD.NV_DefineSpace,
    name: 'TPM_NV_DefineSpace',
    auths: [0, 1],
    params: { pubInfo: nvDataPublic, encAuth: digest20 },
    response: {},
    handler(ctx, { pubInfo, encAuth }) {
      const tpm = ctx.tpm;
      let authValue = encAuth;
      if (ctx.authCount > 0) {
        verifyOwner(ctx, 0, { osapOnly: true });
        authValue = ctx.adip(0, encAuth);
      } else if (tpm.nv.flags.nvLocked) {
        throw new Tpm12Error(RC.AUTHFAIL);
      }
      const index = pubInfo.nvIndex >>> 0;
      if (index === NV_INDEX.LOCK) {
        if (pubInfo.dataSize !== 0) throw new Tpm12Error(RC.BADINDEX);
        tpm.nv.flags.nvLocked = true;
        tpm.markNvDirty();
        return {};
      }
      if (index === NV_INDEX.INDEX0 || index === NV_INDEX.DIR || (index & NV_INDEX.D_BIT) !== 0) throw new Tpm12Error(RC.BADINDEX);
      const existing = tpm.nv.nv.find((x) => x.pub.nvIndex === index);
      if (existing) {
        if (pubInfo.dataSize !== 0) throw new Tpm12Error(RC.BADINDEX);
        tpm.nv.nv = tpm.nv.nv.filter((x) => x !== existing);
        tpm.markNvDirty();
        return {};
      }
      if (pubInfo.dataSize === 0) throw new Tpm12Error(RC.BADINDEX);
      checkPub(tpm, pubInfo);
      const used = tpm.nv.nv.reduce((n, a) => n + a.pub.dataSize, 0);
      if (used + pubInfo.dataSize > tpm.nvSpace) throw new Tpm12Error(RC.NOSPACE);
      tpm.nv.nv.push({
        pub: { ...pubInfo, nvIndex: index, bReadSTClear: false, bWriteSTClear: false, bWriteDefine: false },
        auth: authValue,
        data: Buffer.alloc(pubInfo.dataSize, 0xff),
      });
      tpm.markNvDirty();
      return {};
    },
  }),
  command({
    ord: ORD.NV_WriteValue,
    name: 'TPM_NV_WriteValue',
    auths: [0, 1],
    params: { nvIndex: u32, offset: u32, data: bytes32(4096) },
    response: {},
    handler(ctx, { nvIndex, offset, data }) {
      if (ctx.authCount > 0) verifyOwner(ctx, 0);
      write(ctx, nvIndex, offset, data, ctx.authCount > 0 ? 'owner' : 'none');
      return {};
    },
  }),
  command({
    ord: ORD.NV_WriteValueAuth,
    name: 'TPM_NV_WriteValueAuth',
    auths: [1],
    params: { nvIndex: u32, offset: u32, data: bytes32(4096) },
    response: {},
    handler(ctx, { nvIndex, offset, data }) {
      const a = area(ctx.tpm, nvIndex);
      if (!(a.pub.permission.attributes & NV_PER.AUTHWRITE)) throw new Tpm12Error(RC.AUTH_CONFLICT);
      ctx.verify(0, a.auth, nvEntity(nvIndex));
      write(ctx, nvIndex, offset, data, 'area');
      return {};
    },
  }),
  command({
    ord: ORD.NV_ReadValue,
    name: 'TPM_NV_ReadValue',
    auths: [0, 1],
    params: { nvIndex: u32, offset: u32, dataSize: u32 },
    response: { data: bytes32() },
    handler(ctx, { nvIndex, offset, dataSize }) {
      if (ctx.authCount > 0) verifyOwner(ctx, 0);
      return { data: read(ctx, nvIndex, offset, dataSize, ctx.authCount > 0 ? 'owner' : 'none') };
    },
  }),
  command({
    ord: ORD.NV_ReadValueAuth,
    name: 'TPM_NV_ReadValueAuth',
    auths: [1],
    params: { nvIndex: u32, offset: u32, dataSize: u32 },
    response: { data: bytes32() },
    handler(ctx, { nvIndex, offset, dataSize }) {
      const a = area(ctx.tpm, nvIndex);
      if (!(a.pub.permission.attributes & NV_PER.AUTHREAD)) throw new Tpm12Error(RC.AUTH_CONFLICT);
      ctx.verify(0, a.auth, nvEntity(nvIndex));
      return { data: read(ctx, nvIndex, offset, dataSize, 'area') };
    },
  }),
];
