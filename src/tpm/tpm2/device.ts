import { EngineDevice } from '../engine-device.ts';
import { errorResponse } from './dispatcher.ts';
import { RC } from './rc.ts';
import { Tpm2Engine, type Tpm2Options } from './engine.ts';
import { FileStateStore } from './state/store.ts';

/** Waits for an RSA key a command needs at most this often before failing it. */
const MAX_KEY_WAITS = 4;

/** A TPM 2.0 engine as a transport sees it. */
export class Tpm2Device extends EngineDevice<Tpm2Engine> {
  readonly family = 'tpm2' as const;

  /** An engine with an RSA key pool may wait for a key: the command runs again once it is made. */
  override async execute(command: Uint8Array, locality: number): Promise<Uint8Array> {
    for (let round = 0; ; round++) {
      try {
        return this.executeSync(command, locality);
      } catch (e) {
        const wait = this.engine.rsaKeyWait(e);
        if (!wait || round >= MAX_KEY_WAITS) throw e;
        await wait;
      }
    }
  }

  protected unpoweredResponse(): Buffer {
    // TPM_RC_FAILURE: what a chip without power (or in failure mode) answers, if it answers at all.
    return errorResponse(RC.FAILURE);
  }
}

/** Opens (manufacturing on first use) the TPM 2.0 whose NV lives in `stateDir`. */
export function openTpm2Device(stateDir: string, opts: Omit<Tpm2Options, 'store'> = {}): Tpm2Device {
  return new Tpm2Device(new Tpm2Engine({ ...opts, store: new FileStateStore(stateDir) }));
}
