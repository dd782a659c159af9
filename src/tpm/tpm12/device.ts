import { EngineDevice } from '../engine-device.ts';
import { FileStateStore, MemoryStateStore } from '../tpm2/state/store.ts';
import { Tpm12Engine, type Tpm12Options } from './engine.ts';
import { RC, Tpm12StateError } from './rc.ts';
import { errorResponse } from './dispatcher.ts';

/** The file a TPM 1.2's NV lives in, inside its state directory. */
export const TPM12_STATE_FILE = 'tpm12-nv.json';

/** A TPM 1.2 engine as a transport sees it (family 'tpm12'). */
export class Tpm12Device extends EngineDevice<Tpm12Engine> {
  readonly family = 'tpm12' as const;

  /** A device whose NV lives in memory (tests, vTPMs whose state another layer persists). */
  static inMemory(opts: Omit<Tpm12Options, 'store'> & { initial?: Buffer } = {}): Tpm12Device {
    const { initial, ...rest } = opts;
    return new Tpm12Device(new Tpm12Engine({ ...rest, store: new MemoryStateStore(initial) }));
  }

  /** A chip without power does not answer; TPM_FAIL is the closest a byte interface can say. */
  protected unpoweredResponse(): Buffer {
    return errorResponse(RC.FAIL);
  }
}

export interface OpenTpm12Options extends Omit<Tpm12Options, 'store'> {}

/**
 * Opens (manufacturing on first use) the TPM 1.2 whose NV lives in `stateDir`. A state file that
 * is torn, corrupted or of an unknown version is reported, never replaced.
 */
export function openTpm12Device(stateDir: string, opts: OpenTpm12Options = {}): Tpm12Device {
  const store = new FileStateStore(stateDir, TPM12_STATE_FILE);
  try {
    return new Tpm12Device(new Tpm12Engine({ ...opts, store }));
  } catch (e) {
    if (e instanceof Tpm12StateError) {
      throw new Tpm12StateError(`${e.message} (${store.path}); restore it from a backup or move it away to manufacture a new TPM`);
    }
    throw e;
  }
}
