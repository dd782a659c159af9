import { u16 } from '../../wire/codec.ts';
import { ORD, ST } from '../constants.ts';
import { command } from '../command.ts';
import { RC, Tpm12Error } from '../rc.ts';

export const startupCommands = [
  command({
    ord: ORD.Startup,
    name: 'TPM_Startup',
    auths: [0],
    params: { startupType: u16 },
    response: {},
    preStartup: true,
    whenDisabled: true,
    whenDeactivated: true,
    handler(ctx, { startupType }) {
      if (ctx.tpm.started) throw new Tpm12Error(RC.INVALID_POSTINIT);
      if (startupType !== ST.CLEAR && startupType !== ST.STATE && startupType !== ST.DEACTIVATED) throw new Tpm12Error(RC.BAD_PARAMETER);
      ctx.tpm.startup(startupType);
      return {};
    },
  }),
  command({
    ord: ORD.SaveState,
    name: 'TPM_SaveState',
    auths: [0],
    params: {},
    response: {},
    whenDisabled: true,
    whenDeactivated: true,
    handler(ctx) {
      ctx.tpm.saveState();
      return {};
    },
  }),
];
