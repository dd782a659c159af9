import type { Chip } from './chip.ts';
import type { ChipClient } from './chip-client.ts';
import { Tpm2ChipClient } from './chip-client-tpm2.ts';
import { Tpm2Client, Tpm2CommandError } from './tpm2-client.ts';
import { RC } from '../tpm/tpm2/rc.ts';
import { RC as RC12 } from '../tpm/tpm12/rc.ts';
import { Tpm12Client, Tpm12ResponseError } from '../tpm/tpm12/client/index.ts';
import { Tpm12ChipClient } from './chip-client-tpm12.ts';

/** TPM_ST_CLEAR. */
const ST_CLEAR = 0x0001;

/**
 * The chip client for whichever personality `chip` speaks, after the platform's start-up
 * (TPM2_Startup / TPM_Startup(ST_CLEAR)) if firmware has not done it yet.
 */
export async function openChipClient(chip: Chip): Promise<ChipClient> {
  if (!chip.powered) await chip.powerOn();
  if (chip.family === 'tpm2') {
    await chip.exclusive(async (exec) => {
      try {
        await new Tpm2Client(exec).startup();
      } catch (e) {
        if (!(e instanceof Tpm2CommandError && e.rc === RC.INITIALIZE)) throw e;
      }
    });
    return new Tpm2ChipClient(chip);
  }
  await chip.exclusive(async (exec) => {
    try {
      await new Tpm12Client(exec).startup(ST_CLEAR);
    } catch (e) {
      // TPM_INVALID_POSTINIT: firmware already started it.
      if (!(e instanceof Tpm12ResponseError && e.rc === RC12.INVALID_POSTINIT)) throw e;
    }
  });
  return new Tpm12ChipClient(chip);
}
