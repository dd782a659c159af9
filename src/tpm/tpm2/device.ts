import { EngineDevice } from '../engine-device.ts';
import { errorResponse } from './dispatcher.ts';
import { RC } from './rc.ts';
import { Tpm2Engine, type Tpm2Options } from './engine.ts';
import { FileStateStore } from './state/store.ts';

/** A TPM 2.0 engine as a transport sees it. */
export class Tpm2Device extends EngineDevice<Tpm2Engine> {
  readonly family = 'tpm2' as const;

  protected unpoweredResponse(): Buffer {
    // TPM_RC_FAILURE: what a chip without power (or in failure mode) answers, if it answers at all.
    return errorResponse(RC.FAILURE);
  }
}

/** Opens (manufacturing on first use) the TPM 2.0 whose NV lives in `stateDir`. */
export function openTpm2Device(stateDir: string, opts: Omit<Tpm2Options, 'store'> = {}): Tpm2Device {
  return new Tpm2Device(new Tpm2Engine({ ...opts, store: new FileStateStore(stateDir) }));
}
