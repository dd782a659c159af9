/**
 * The Microsoft TPM 2.0 reference simulator's socket protocol (server side), as tcti-mssim speaks
 * it: a command port P carrying enveloped TPM commands and a platform port P+1 carrying "pin"
 * signals (power, physical presence, cancel, NV availability). Every message starts with a
 * big-endian u32 code; most are acknowledged with a u32 0. Replies mirror the reference
 * simulator's TcpServer.c / TPMCmdp.c.
 *
 * tcti-mssim connects to both ports at initialisation and sends POWER_ON and NV_ON on the
 * platform port; on finalisation it may send SESSION_END on both, or just close.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { TpmDevice } from '../tpm/device.ts';
import { DEFAULT_BIND_ADDRESS, listen, listenTcpPair, type Listener } from './endpoint.ts';
import { TruncatedFrameError } from './errors.ts';
import { SerialQueue } from '../tpm/serial-queue.ts';
import { SocketReader, writeFully } from './socket-io.ts';
import { commandSizeResponse, failureResponse, HEADER_SIZE_OFFSET, localityResponse, TPM_HEADER_SIZE } from './tpm-frames.ts';
import { FailureLog } from './failure-log.ts';

export const MssimCmd = {
  SIGNAL_POWER_ON: 1,
  SIGNAL_POWER_OFF: 2,
  SIGNAL_PHYS_PRES_ON: 3,
  SIGNAL_PHYS_PRES_OFF: 4,
  SIGNAL_HASH_START: 5,
  SIGNAL_HASH_DATA: 6,
  SIGNAL_HASH_END: 7,
  SEND_COMMAND: 8,
  SIGNAL_CANCEL_ON: 9,
  SIGNAL_CANCEL_OFF: 10,
  SIGNAL_NV_ON: 11,
  SIGNAL_NV_OFF: 12,
  SIGNAL_KEY_CACHE_ON: 13,
  SIGNAL_KEY_CACHE_OFF: 14,
  REMOTE_HANDSHAKE: 15,
  SET_ALTERNATIVE_RESULT: 16,
  SIGNAL_RESET: 17,
  SIGNAL_RESTART: 18,
  SESSION_END: 20,
  STOP: 21,
} as const;

/** The reference server's protocol version, returned by REMOTE_HANDSHAKE. */
const SERVER_VERSION = 1;
/** TpmEndPointInfo: tpmPlatformAvailable | tpmInRawMode. Not tpmSupportsPP: the device has no PP pin. */
const ENDPOINT_INFO = 0x01 | 0x04;
const ACK = 0;
const REFUSED = 1;
const MAX_LOCALITY = 4;

export interface MssimServerOptions {
  /** Command port; the platform port is port + 1. 0 picks a free adjacent pair. */
  port: number;
  /** Defaults to 127.0.0.1. */
  bindaddr?: string;
  logger: Logger;
  /** Share a queue with other servers of the same device; a private one is made otherwise. */
  queue?: SerialQueue;
}

export interface MssimServer {
  /** `tcp://HOST:P`, the command port. */
  readonly command: string;
  /** `tcp://HOST:P+1`, the platform port. */
  readonly platform: string;
  /** P, the number to give tcti-mssim (`-T mssim:port=P`). */
  readonly port: number;
  /** Stops listening, ends every connection, waits for the command in progress; does not flush the device. */
  close(): Promise<void>;
  /** Resolves once the server is closed, by close() or by a client's STOP (which flushes the device first). */
  readonly closed: Promise<void>;
}

interface MssimContext {
  device: TpmDevice;
  queue: SerialQueue;
  logger: Logger;
  /** The server's, not the connection's: tpm2-tools connects once per command. */
  failures: FailureLog;
  /** A client sent STOP: flush the device and stop the server. */
  stop(): void;
}

export async function startMssimServer(device: TpmDevice, options: MssimServerOptions): Promise<MssimServer> {
  const { logger } = options;
  const queue = options.queue ?? new SerialQueue();
  let connections = 0;
  let closing: Promise<void> | undefined;
  let markClosed!: () => void;
  const closed = new Promise<void>((resolve) => (markClosed = resolve));
  const failures = new FailureLog(logger);

  const context = (channel: string): MssimContext => {
    const connLogger = logger.child({ channel, conn: ++connections });
    connLogger.debug('client connected');
    return {
      device,
      queue,
      logger: connLogger,
      failures,
      stop: () => {
        logger.info('STOP received; flushing the device and stopping');
        void queue
          .run(() => device.flush())
          .catch((err: unknown) => logger.error({ err }, 'the device failed to flush on STOP'))
          .then(close);
      },
    };
  };
  const onCommand = (socket: Socket): void => void serveCommandConnection(socket, context('command'));
  const onPlatform = (socket: Socket): void => void servePlatformConnection(socket, context('platform'));

  let listeners: [Listener, Listener];
  if (options.port === 0) {
    listeners = await listenTcpPair(options.bindaddr, onCommand, onPlatform, logger);
  } else {
    const endpoint = { type: 'tcp', bindaddr: options.bindaddr ?? DEFAULT_BIND_ADDRESS } as const;
    const command = await listen({ ...endpoint, port: options.port }, onCommand, logger);
    try {
      listeners = [command, await listen({ ...endpoint, port: options.port + 1 }, onPlatform, logger)];
    } catch (err) {
      await command.close();
      throw err;
    }
  }
  const [commandListener, platformListener] = listeners;

  function close(): Promise<void> {
    closing ??= (async () => {
      await Promise.all([commandListener.close(), platformListener.close()]);
      await queue.idle();
      markClosed();
    })();
    return closing;
  }

  logger.info({ command: commandListener.url, platform: platformListener.url }, 'mssim server listening');
  return {
    command: commandListener.url,
    platform: platformListener.url,
    port: commandListener.port!,
    close,
    closed,
  };
}

async function serveCommandConnection(socket: Socket, ctx: MssimContext): Promise<void> {
  const { device, logger } = ctx;
  const reader = new SocketReader(socket);
  try {
    for (;;) {
      const head = await reader.read(4);
      if (head === null) return;
      const code = head.readUInt32BE(0);
      switch (code) {
        case MssimCmd.SEND_COMMAND: {
          const envelope = await reader.readRest(5, 4);
          const locality = envelope[0]!;
          const size = envelope.readUInt32BE(1);
          if (size > device.maxCommandSize) {
            // The reference simulator drops the connection here; we also say why first.
            logger.warn({ size, max: device.maxCommandSize }, 'command larger than the device accepts; answered TPM_RC_COMMAND_SIZE and closed');
            await writeFully(socket, envelopeResponse(commandSizeResponse(device.family)));
            socket.end();
            return;
          }
          const command = await reader.readRest(size, 9);
          const response = await sendCommand(ctx, locality, command);
          await writeFully(socket, envelopeResponse(response));
          continue;
        }
        case MssimCmd.REMOTE_HANDSHAKE: {
          const clientVersion = (await reader.readRest(4, 4)).readUInt32BE(0);
          if (clientVersion === 0) {
            logger.warn('client sent handshake version 0; closed as the reference simulator does');
            return;
          }
          await writeFully(socket, u32s(SERVER_VERSION, ENDPOINT_INFO, ACK));
          continue;
        }
        case MssimCmd.SET_ALTERNATIVE_RESULT:
          await reader.readRest(4, 4); // not applicable to a simulator, as in the reference
          await writeFully(socket, u32s(ACK));
          continue;
        case MssimCmd.SIGNAL_HASH_START:
        case MssimCmd.SIGNAL_HASH_END:
          logger.debug({ code }, 'refused a D-RTM hash signal: the device has no D-RTM interface');
          await writeFully(socket, u32s(REFUSED));
          continue;
        case MssimCmd.SIGNAL_HASH_DATA: {
          const length = (await reader.readRest(4, 4)).readUInt32BE(0);
          if (length > device.maxCommandSize) {
            logger.warn({ length }, 'oversized hash data; closed');
            return;
          }
          await reader.readRest(length, 8);
          logger.debug('refused a D-RTM hash signal: the device has no D-RTM interface');
          await writeFully(socket, u32s(REFUSED));
          continue;
        }
        case MssimCmd.SESSION_END:
          return;
        case MssimCmd.STOP:
          ctx.stop();
          return;
        default:
          // No reply, as in the reference: an unknown message has no known length to skip.
          logger.warn({ code }, 'unknown command-port message; closed');
          return;
      }
    }
  } catch (err) {
    if (err instanceof TruncatedFrameError) logger.warn({ err }, 'command client left mid-message; nothing was executed');
    else logger.debug({ err }, 'command connection failed');
  } finally {
    socket.end();
  }
}

/**
 * Runs one enveloped command. An unpowered TPM answers with an empty response, as the reference
 * simulator does; malformed envelopes get the TPM's own error responses, never a dropped link.
 */
function sendCommand(ctx: MssimContext, locality: number, command: Buffer): Promise<Uint8Array> {
  const { device, failures } = ctx;
  return ctx.queue.run(async () => {
    if (!device.powered) return new Uint8Array(0);
    // The envelope carries its own length; a header that disagrees is what a TPM calls an
    // inconsistent commandSize. Checking here lets devices rely on size field == length on
    // every transport.
    if (command.length < TPM_HEADER_SIZE || command.readUInt32BE(HEADER_SIZE_OFFSET) !== command.length) {
      return commandSizeResponse(device.family);
    }
    if (locality > MAX_LOCALITY) return localityResponse(device.family);
    try {
      return await device.execute(command, locality);
    } catch (err) {
      failures.commandFailed(err);
      return failureResponse(device.family);
    }
  });
}

async function servePlatformConnection(socket: Socket, ctx: MssimContext): Promise<void> {
  const { logger } = ctx;
  const reader = new SocketReader(socket, 4096);
  try {
    for (;;) {
      const head = await reader.read(4);
      if (head === null) return;
      const code = head.readUInt32BE(0);
      switch (code) {
        case MssimCmd.SIGNAL_POWER_ON:
          await writeFully(socket, u32s(await power(ctx, 'power-on', powerOn)));
          continue;
        case MssimCmd.SIGNAL_POWER_OFF:
          await writeFully(socket, u32s(await power(ctx, 'power-off', powerOff)));
          continue;
        case MssimCmd.SIGNAL_RESET:
          await writeFully(socket, u32s(await power(ctx, 'reset', reset)));
          continue;
        case MssimCmd.SIGNAL_PHYS_PRES_ON:
        case MssimCmd.SIGNAL_PHYS_PRES_OFF:
        case MssimCmd.SIGNAL_CANCEL_ON:
        case MssimCmd.SIGNAL_CANCEL_OFF:
        case MssimCmd.SIGNAL_NV_ON:
        case MssimCmd.SIGNAL_NV_OFF:
        case MssimCmd.SIGNAL_KEY_CACHE_ON:
        case MssimCmd.SIGNAL_KEY_CACHE_OFF:
        case MssimCmd.SIGNAL_RESTART:
          // Acknowledged without effect: the device has no such pins (NV is always available,
          // commands are never interrupted, there is no key cache), and the reference simulator
          // acknowledges these even when it ignores them.
          await writeFully(socket, u32s(ACK));
          continue;
        case MssimCmd.SESSION_END:
          return;
        case MssimCmd.STOP:
          ctx.stop();
          return;
        default:
          logger.warn({ code }, 'unknown platform signal; answered 1 and closed as the reference simulator does');
          await writeFully(socket, u32s(REFUSED));
          return;
      }
    }
  } catch (err) {
    if (err instanceof TruncatedFrameError) logger.warn({ err }, 'platform client left mid-message');
    else logger.debug({ err }, 'platform connection failed');
  } finally {
    socket.end();
  }
}

/** Power-on while powered is a no-op in the reference simulator; only SIGNAL_RESET re-inits. */
async function powerOn(device: TpmDevice): Promise<void> {
  if (!device.powered) await device.powerOn();
}

async function powerOff(device: TpmDevice): Promise<void> {
  if (device.powered) await device.powerOff();
}

/** _TPM_Init on a powered TPM; ignored when unpowered, as in the reference simulator. */
async function reset(device: TpmDevice): Promise<void> {
  if (!device.powered) return;
  await device.powerOff();
  await device.powerOn();
}

/** Runs a power signal in the device queue; a host-level failure is logged and answered "refused". */
async function power(ctx: MssimContext, signal: string, action: (device: TpmDevice) => Promise<void>): Promise<number> {
  try {
    await ctx.queue.run(() => action(ctx.device));
    return ACK;
  } catch (err) {
    ctx.logger.error({ err, signal }, 'the device failed a power signal');
    return REFUSED;
  }
}

/** {u32 size, response, u32 0}: the reply to SEND_COMMAND, acknowledgement included. */
function envelopeResponse(response: Uint8Array): Buffer {
  const size = Buffer.alloc(4);
  size.writeUInt32BE(response.length, 0);
  return Buffer.concat([size, response, u32s(ACK)]);
}

function u32s(...values: number[]): Buffer {
  const out = Buffer.alloc(4 * values.length);
  values.forEach((value, i) => out.writeUInt32BE(value, 4 * i));
  return out;
}
