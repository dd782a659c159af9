import type { HostTpm } from './host-tpm.ts';
import type { ChipClient } from './chip-client.ts';
import { Tpm2ChipClient } from './chip-client-tpm2.ts';
import { Tpm12ChipClient } from './chip-client-tpm12.ts';
import { startChip } from './chip-startup.ts';

/** The chip client for whichever personality `chip` speaks, after the platform's start-up if firmware has not done it yet. */
export async function openChipClient(chip: HostTpm): Promise<ChipClient> {
  await startChip(chip);
  return chip.family === 'tpm2' ? new Tpm2ChipClient(chip) : new Tpm12ChipClient(chip);
}
