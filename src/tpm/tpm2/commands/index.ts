import type { CommandDef } from '../command.ts';
import { capabilityCommands } from './capability.ts';
import { clockCommands } from './clock.ts';
import { hashCommands } from './hash.ts';
import { signingCommands } from './signing.ts';
import { attestationCommands } from './attestation.ts';
import { auditCommands } from './audit.ts';
import { nvCommands } from './nv.ts';
import { hierarchyCommands } from './hierarchy.ts';
import { dictionaryAttackCommands } from './dictionary-attack.ts';
import { objectCommands } from './object.ts';
import { pcrCommands } from './pcr.ts';
import { randomCommands } from './random.ts';
import { selfTestCommands } from './self-test.ts';
import { sessionCommands } from './session.ts';
import { policyCommands } from './policy.ts';
import { contextCommands } from './context.ts';
import { credentialCommands } from './credential.ts';
import { asymmetricCommands } from './asymmetric.ts';
import { symmetricCommands } from './symmetric.ts';
import { duplicationCommands } from './duplication.ts';
import { startupCommands } from './startup.ts';
import { testParmsCommands } from './test-parms.ts';

/** Every implemented TPM 2.0 command; one module per command family. */
export const COMMANDS: readonly CommandDef[] = [
  ...startupCommands,
  ...selfTestCommands,
  ...randomCommands,
  ...capabilityCommands,
  ...testParmsCommands,
  ...hashCommands,
  ...signingCommands,
  ...attestationCommands,
  ...auditCommands,
  ...pcrCommands,
  ...clockCommands,
  ...nvCommands,
  ...hierarchyCommands,
  ...dictionaryAttackCommands,
  ...objectCommands,
  ...sessionCommands,
  ...policyCommands,
  ...contextCommands,
  ...credentialCommands,
  ...asymmetricCommands,
  ...symmetricCommands,
  ...duplicationCommands,
];
