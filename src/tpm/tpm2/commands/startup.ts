import { oneOf, u16 } from '../../wire/codec.ts';
import { CC, SU } from '../constants.ts';
import { command } from '../command.ts';

const startupType = oneOf(u16, [SU.CLEAR, SU.STATE]);

export const startupCommands = [
  command({
    cc: CC.Startup,
    name: 'Startup',
    noSessions: true,
    handles: [],
    params: { startupType },
    response: {},
    nv: true,
    handler: ({ tpm, locality }, { startupType }) => {
      tpm.startup(startupType, locality);
      return {};
    },
  }),
  command({
    cc: CC.Shutdown,
    name: 'Shutdown',
    handles: [],
    params: { shutdownType: startupType },
    response: {},
    nv: true,
    handler: ({ tpm }, { shutdownType }) => {
      tpm.shutdown(shutdownType);
      return {};
    },
  }),
];
