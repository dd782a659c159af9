import { u16 } from '../../wire/codec.ts';
import { ORD, PP } from '../constants.ts';
import { command } from '../command.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { bool } from '../structures/basic.ts';
import type { Tpm12Engine } from '../engine.ts';

const LIFETIME_BITS = PP.LIFETIME_LOCK | PP.HW_ENABLE | PP.CMD_ENABLE | PP.HW_DISABLE | PP.CMD_DISABLE;
const PRESENCE_BITS = PP.LOCK | PP.PRESENT | PP.NOTPRESENT;

/** TSC_PhysicalPresence (PC Client): the lifetime configuration bits, or the presence flag. */
function physicalPresence(tpm: Tpm12Engine, v: number): void {
  const f = tpm.nv.flags;
  const s = tpm.stclear;
  if ((v & ~(LIFETIME_BITS | PRESENCE_BITS)) !== 0) throw new Tpm12Error(RC.BAD_PARAMETER);
  if ((v & LIFETIME_BITS) !== 0 && (v & PRESENCE_BITS) !== 0) throw new Tpm12Error(RC.BAD_PARAMETER);
  if (v & LIFETIME_BITS) {
    if (f.physicalPresenceLifetimeLock) throw new Tpm12Error(RC.BAD_PARAMETER);
    if ((v & PP.HW_ENABLE && v & PP.HW_DISABLE) || (v & PP.CMD_ENABLE && v & PP.CMD_DISABLE)) throw new Tpm12Error(RC.BAD_PARAMETER);
    if (v & PP.HW_ENABLE) f.physicalPresenceHWEnable = true;
    if (v & PP.HW_DISABLE) f.physicalPresenceHWEnable = false;
    if (v & PP.CMD_ENABLE) f.physicalPresenceCMDEnable = true;
    if (v & PP.CMD_DISABLE) f.physicalPresenceCMDEnable = false;
    if (v & PP.LIFETIME_LOCK) f.physicalPresenceLifetimeLock = true;
    tpm.markNvDirty();
    return;
  }
  if (v === 0) throw new Tpm12Error(RC.BAD_PARAMETER);
  if (!f.physicalPresenceCMDEnable) throw new Tpm12Error(RC.BAD_PARAMETER);
  if (v & PP.PRESENT && v & PP.NOTPRESENT) throw new Tpm12Error(RC.BAD_PARAMETER);
  if (v & PP.LOCK && v & PP.PRESENT) throw new Tpm12Error(RC.BAD_PARAMETER);
  if (s.physicalPresenceLock && v & (PP.PRESENT | PP.NOTPRESENT)) throw new Tpm12Error(RC.BAD_PARAMETER);
  if (v & PP.PRESENT) s.physicalPresence = true;
  if (v & PP.NOTPRESENT) s.physicalPresence = false;
  if (v & PP.LOCK) {
    s.physicalPresence = false;
    s.physicalPresenceLock = true;
  }
}

function requirePresence(tpm: Tpm12Engine): void {
  if (!tpm.physicalPresence) throw new Tpm12Error(RC.BAD_PRESENCE);
}

export const physicalCommands = [
  command({
    ord: ORD.TSC_PhysicalPresence,
    name: 'TSC_PhysicalPresence',
    auths: [0],
    params: { physicalPresence: u16 },
    response: {},
    preStartup: true,
    whenDisabled: true,
    whenDeactivated: true,
    handler(ctx, { physicalPresence: v }) {
      physicalPresence(ctx.tpm, v);
      return {};
    },
  }),
  command({
    ord: ORD.PhysicalEnable,
    name: 'TPM_PhysicalEnable',
    auths: [0],
    params: {},
    response: {},
    whenDisabled: true,
    whenDeactivated: true,
    handler(ctx) {
      requirePresence(ctx.tpm);
      ctx.tpm.nv.flags.disable = false;
      ctx.tpm.markNvDirty();
      return {};
    },
  }),
  command({
    ord: ORD.PhysicalDisable,
    name: 'TPM_PhysicalDisable',
    auths: [0],
    params: {},
    response: {},
    whenDeactivated: true,
    handler(ctx) {
      requirePresence(ctx.tpm);
      ctx.tpm.nv.flags.disable = true;
      ctx.tpm.markNvDirty();
      return {};
    },
  }),
  command({
    ord: ORD.PhysicalSetDeactivated,
    name: 'TPM_PhysicalSetDeactivated',
    auths: [0],
    params: { state: bool },
    response: {},
    whenDeactivated: true,
    handler(ctx, { state }) {
      requirePresence(ctx.tpm);
      ctx.tpm.nv.flags.deactivated = state;
      // Takes effect at the next TPM_Startup(ST_CLEAR), except that deactivating is immediate.
      if (state) ctx.tpm.stclear.deactivated = true;
      ctx.tpm.markNvDirty();
      return {};
    },
  }),
  command({
    ord: ORD.SetOwnerInstall,
    name: 'TPM_SetOwnerInstall',
    auths: [0],
    params: { state: bool },
    response: {},
    handler(ctx, { state }) {
      if (ctx.tpm.nv.owner) throw new Tpm12Error(RC.OWNER_SET);
      requirePresence(ctx.tpm);
      ctx.tpm.nv.flags.ownership = state;
      ctx.tpm.markNvDirty();
      return {};
    },
  }),
];
