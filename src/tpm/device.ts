/**
 * The command code (TPM 2.0) or ordinal (TPM 1.2) of a command: bytes 6–9 of the header in both
 * families; 0 for a command too short to have one.
 */
export function commandCodeOf(command: Uint8Array): number {
  return command.length < 10 ? 0 : ((command[6]! << 24) | (command[7]! << 16) | (command[8]! << 8) | command[9]!) >>> 0;
}

/**
 * What a transport sees of a TPM: a byte-in, byte-out command interface plus the platform
 * signals a chip receives on its pins (power, locality, the TPM established flag). Transports use
 * nothing else, so the same socket code serves an engine, a chip model or a vTPM device model.
 */
export interface TpmDevice {
  /** 'tpm2' speaks TPM 2.0 wire formats, 'tpm12' TPM 1.2. */
  readonly family: 'tpm2' | 'tpm12';

  /**
   * Executes one command at the given locality (0–4) and returns the complete response. A
   * malformed command yields an error response, never a rejected promise; the promise rejects
   * only on a host-level fault (e.g. the state store cannot be written).
   */
  execute(command: Uint8Array, locality: number): Promise<Uint8Array>;

  /**
   * The same without a promise, offered by devices that answer without waiting on I/O (an
   * in-memory engine). A transport may use it only when no other call to the device is in flight.
   */
  executeSync?(command: Uint8Array, locality: number): Uint8Array;

  /** _TPM_Init: power is (re)applied; volatile state is lost and TPM2_Startup is required. */
  powerOn(): Promise<void>;

  /** Power is removed. Commands fail until the next powerOn. */
  powerOff(): Promise<void>;

  /** True while the device has power. */
  readonly powered: boolean;

  /** The TPM established flag (TPMA_PERMANENT / access register bit), set by a D-RTM sequence. */
  readonly established: boolean;

  /** Clears the established flag; only locality 3 or 4 may do so. Returns false if refused. */
  resetEstablished(locality: number): boolean;

  /** Largest command the device accepts, in bytes. */
  readonly maxCommandSize: number;

  /** Makes every acknowledged change durable (used before a transport reports a clean stop). */
  flush(): Promise<void>;
}
