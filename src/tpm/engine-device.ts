import type { TpmDevice } from './device.ts';

/** What an in-memory command engine (TPM 2.0 or TPM 1.2) offers its device wrapper. */
export interface CommandEngine {
  readonly maxCommandSize: number;
  execute(command: Uint8Array, locality: number): Buffer;
  powerOn(): void;
  powerOff(): void;
  commitNv(): void;
}

/**
 * An engine as a transport sees it. The power rail and the established flag live here because
 * they belong to the platform interface (TIS/CRB access register), not to the command engine.
 */
export abstract class EngineDevice<E extends CommandEngine> implements TpmDevice {
  abstract readonly family: 'tpm2' | 'tpm12';
  private on = true;
  private establishedFlag = false;

  constructor(readonly engine: E) {}

  /** What the TPM answers without power (a chip that answers at all reports failure). */
  protected abstract unpoweredResponse(): Buffer;

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
    if (!this.on) return this.unpoweredResponse();
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
