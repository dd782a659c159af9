import type { TpmDevice } from '../device.ts';
import { Tpm2Engine, type Tpm2Options } from './engine.ts';
import { FileStateStore } from './state/store.ts';

/**
 * A TPM 2.0 engine as a transport sees it. The established flag lives here because it belongs
 * to the platform interface (TIS/CRB access register), not to the command engine.
 */
export class Tpm2Device implements TpmDevice {
  readonly family = 'tpm2' as const;
  private on = true;
  private establishedFlag = false;

  constructor(readonly engine: Tpm2Engine) {}

  get powered(): boolean {
    return this.on;
  }

  get established(): boolean {
    return this.establishedFlag;
  }

  get maxCommandSize(): number {
    return this.engine.maxCommandSize;
  }

  async execute(command: Uint8Array, locality: number): Promise<Uint8Array> {
    return this.executeSync(command, locality);
  }

  /** The same, without a promise, for in-process callers that want every microsecond. */
  executeSync(command: Uint8Array, locality: number): Buffer {
    if (!this.on) return failure();
    return this.engine.execute(command, locality);
  }

  async powerOn(): Promise<void> {
    this.engine.powerOn();
    this.on = true;
  }

  async powerOff(): Promise<void> {
    this.engine.powerOff();
    this.on = false;
  }

  resetEstablished(locality: number): boolean {
    if (locality < 3) return false;
    this.establishedFlag = false;
    return true;
  }

  async flush(): Promise<void> {
    this.engine.commitNv();
  }
}

/** TPM_RC_FAILURE: what a chip without power (or in failure mode) answers, if it answers at all. */
function failure(): Buffer {
  return Buffer.from([0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x01, 0x01]);
}

/** Opens (manufacturing on first use) the TPM 2.0 whose NV lives in `stateDir`. */
export function openTpm2Device(stateDir: string, opts: Omit<Tpm2Options, 'store'> = {}): Tpm2Device {
  return new Tpm2Device(new Tpm2Engine({ ...opts, store: new FileStateStore(stateDir) }));
}
