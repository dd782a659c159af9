import { u32 } from '../../wire/codec.ts';
import { CC } from '../constants.ts';
import { command } from '../command.ts';
import { rhLockout } from '../types/handles.ts';

export const dictionaryAttackCommands = [
  command({
    cc: CC.DictionaryAttackLockReset,
    name: 'DictionaryAttackLockReset',
    nv: true,
    handles: [{ name: 'lockHandle', type: rhLockout, auth: 'user' }],
    params: {},
    response: {},
    handler: ({ tpm }) => {
      tpm.lockout.reset();
      return {};
    },
  }),
  command({
    cc: CC.DictionaryAttackParameters,
    name: 'DictionaryAttackParameters',
    nv: true,
    handles: [{ name: 'lockHandle', type: rhLockout, auth: 'user' }],
    params: { newMaxTries: u32, newRecoveryTime: u32, lockoutRecovery: u32 },
    response: {},
    handler: ({ tpm }, { newMaxTries, newRecoveryTime, lockoutRecovery }) => {
      // failedTries stays as it is (the errata): a maxTries at or below it means lockout at once.
      const da = tpm.nv.da;
      da.maxTries = newMaxTries;
      da.recoveryTime = newRecoveryTime;
      da.lockoutRecovery = lockoutRecovery;
      tpm.markNvDirty();
      return {};
    },
  }),
];
