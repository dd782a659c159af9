/**
 * Host-level failures of the transports: things an operator must fix (a busy port, a bad option,
 * a path that is not a socket). TPM-level failures never become these; they travel to the client
 * as TPM response codes.
 */
export class TransportError extends Error {
  constructor(
    message: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An endpoint could not be listened on. */
export class EndpointError extends TransportError {}

/** A swtpm-style option string (`--server type=tcp,port=…`) is malformed or asks for something vtpmd does not do. */
export class OptionError extends TransportError {
  constructor(message: string) {
    super(message, 'BAD_OPTION');
  }
}

/** The device failed while the server was bringing it up (power-on or the start-up Startup command). */
export class DeviceStartError extends TransportError {
  constructor(cause: unknown) {
    super(
      `the TPM device failed to start: ${(cause as Error)?.message ?? String(cause)}; check its state directory and the log above`,
      'DEVICE_START_FAILED',
      { cause },
    );
  }
}

/** The peer closed its side while a frame was only partly received. */
export class TruncatedFrameError extends TransportError {
  constructor(
    readonly received: number,
    readonly wanted: number,
  ) {
    super(`connection closed after ${received} of ${wanted} bytes of a frame`, 'TRUNCATED_FRAME');
  }
}
