/**
 * The platform firmware's start-up of the chip: power, then TPM2_Startup(CLEAR) or
 * TPM_Startup(ST_CLEAR) — unless something already started it, which the chip answers with
 * TPM_RC_INITIALIZE / TPM_INVALID_POSTINIT and which is not a failure here.
 */
import { RC } from '../tpm/tpm2/rc.ts';
import { RC as RC12 } from '../tpm/tpm12/rc.ts';
import { Tpm12Client, Tpm12ResponseError } from '../tpm/tpm12/client/index.ts';
import type { HostTpm } from './host-tpm.ts';
import { Tpm2Client, Tpm2CommandError } from './tpm2-client.ts';

/** TPM_ST_CLEAR. */
const ST_CLEAR = 0x0001;

export async function startChip(chip: HostTpm): Promise<void> {
  if (!chip.powered) await chip.powerOn();
  await chip.exclusive(async (exec) => {
    try {
      if (chip.family === 'tpm2') await new Tpm2Client(exec).startup();
      else await new Tpm12Client(exec).startup(ST_CLEAR);
    } catch (e) {
      const alreadyStarted =
        (e instanceof Tpm2CommandError && e.rc === RC.INITIALIZE) || (e instanceof Tpm12ResponseError && e.rc === RC12.INVALID_POSTINIT);
      if (!alreadyStarted) throw e;
    }
  });
}
