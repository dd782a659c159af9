import type { Command12Def } from '../command.ts';
import { attestationCommands } from './attestation.ts';
import { capabilityCommands } from './capability.ts';
import { counterCommands } from './counters.ts';
import { dirCommands } from './dir.ts';
import { identityCommands } from './identity.ts';
import { keyCommands } from './keys.ts';
import { nvCommands } from './nv.ts';
import { ownershipCommands } from './ownership.ts';
import { pcrCommands } from './pcr.ts';
import { physicalCommands } from './physical.ts';
import { randomCommands } from './random.ts';
import { sealCommands } from './seal.ts';
import { sessionCommands } from './session.ts';
import { signCommands } from './sign.ts';
import { startupCommands } from './startup.ts';

/** Every TPM 1.2 command this engine implements. */
export const COMMANDS: readonly Command12Def[] = [
  ...startupCommands,
  ...capabilityCommands,
  ...randomCommands,
  ...pcrCommands,
  ...sessionCommands,
  ...physicalCommands,
  ...ownershipCommands,
  ...keyCommands,
  ...signCommands,
  ...sealCommands,
  ...attestationCommands,
  ...identityCommands,
  ...counterCommands,
  ...dirCommands,
  ...nvCommands,
];
