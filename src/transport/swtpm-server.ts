/**
 * A swtpm-compatible socket server for one TpmDevice: the data channel and the control channel of
 * `swtpm socket`, over TCP or Unix sockets, so tcti-swtpm, swtpm_ioctl and other swtpm clients
 * can use our devices unchanged.
 *
 * Unlike swtpm, which serves one data client and one control client at a time, any number of
 * clients may be connected; their commands reach the device one at a time through a queue.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { TpmDevice } from '../tpm/device.ts';
import { DEFAULT_BIND_ADDRESS, listen, listenTcpPair, type Endpoint, type Listener } from './endpoint.ts';
import { DeviceStartError, OptionError } from './errors.ts';
import { SerialQueue } from '../tpm/serial-queue.ts';
import { serveControlConnection, type SwtpmInfo } from './swtpm-ctrl.ts';
import { serveDataConnection } from './swtpm-data.ts';
import { SwtpmTpm } from './swtpm-tpm.ts';
import type { StartupType } from './tpm-frames.ts';

export interface SwtpmFlags {
  /** swtpm `not-need-init`: the TPM runs from the start; without it data commands fail until CMD_INIT. */
  notNeedInit?: boolean;
  /**
   * swtpm `startup-clear` / `startup-state` / `startup-deactivated`: send this Startup once, right
   * after the power-on at server start. As in swtpm it is not repeated after a later CMD_INIT: the
   * client that re-initialises the TPM sends its own Startup. Implies notNeedInit.
   */
  startup?: StartupType;
}

export interface SwtpmServerOptions {
  data: Endpoint;
  ctrl: Endpoint;
  flags?: SwtpmFlags;
  logger: Logger;
  /** swtpm `--server …,disconnect`: close each data connection after its response. */
  disconnect?: boolean;
  /** Share a queue with other servers of the same device; a private one is made otherwise. */
  queue?: SerialQueue;
  /** Extra facts for CMD_GET_INFO. */
  info?: SwtpmInfo;
}

export interface SwtpmServer {
  /** Where the data channel listens: `tcp://HOST:PORT` or `unix:///path`. */
  readonly data: string;
  /** Where the control channel listens, same format. */
  readonly ctrl: string;
  /**
   * Stops listening, ends every connection, waits for the command in progress. Does not flush the
   * device: its owner does that (CMD_SHUTDOWN / CMD_STOP flush on their own).
   */
  close(): Promise<void>;
  /** Resolves once the server is closed, by close() or by a client's CMD_SHUTDOWN. */
  readonly closed: Promise<void>;
}

export async function startSwtpmServer(device: TpmDevice, options: SwtpmServerOptions): Promise<SwtpmServer> {
  const { logger } = options;
  const flags = options.flags ?? {};
  if (flags.startup === 'deactivated' && device.family === 'tpm2') {
    throw new OptionError('startup-deactivated exists only for TPM 1.2; use startup-clear or startup-state');
  }
  const queue = options.queue ?? new SerialQueue();
  const tpm = new SwtpmTpm(device, queue, logger);
  if (flags.notNeedInit || flags.startup !== undefined) {
    try {
      await tpm.start(flags.startup);
    } catch (err) {
      throw new DeviceStartError(err);
    }
  }

  let connections = 0;
  let closing: Promise<void> | undefined;
  let markClosed!: () => void;
  const closed = new Promise<void>((resolve) => (markClosed = resolve));

  const onData = (socket: Socket): void => {
    const connLogger = logger.child({ channel: 'data', conn: ++connections });
    connLogger.debug('client connected');
    void serveDataConnection(socket, { tpm, logger: connLogger, disconnect: options.disconnect ?? false });
  };
  const onCtrl = (socket: Socket): void => {
    const connLogger = logger.child({ channel: 'ctrl', conn: ++connections });
    connLogger.debug('client connected');
    void serveControlConnection(socket, {
      tpm,
      info: options.info ?? {},
      logger: connLogger,
      shutdown: () => {
        logger.info('CMD_SHUTDOWN received; stopping');
        void close();
      },
    });
  };

  const [dataListener, ctrlListener] = await listenBoth(options.data, options.ctrl, onData, onCtrl, logger);

  function close(): Promise<void> {
    closing ??= (async () => {
      await Promise.all([dataListener.close(), ctrlListener.close()]);
      await queue.idle();
      markClosed();
    })();
    return closing;
  }

  logger.info({ data: dataListener.url, ctrl: ctrlListener.url, flags }, 'swtpm server listening');
  return { data: dataListener.url, ctrl: ctrlListener.url, close, closed };
}

/**
 * tcti-swtpm finds the control channel at data port + 1, so when both ports are left to the
 * kernel we pick an adjacent pair; explicit ports are used as given.
 */
async function listenBoth(
  data: Endpoint,
  ctrl: Endpoint,
  onData: (socket: Socket) => void,
  onCtrl: (socket: Socket) => void,
  logger: Logger,
): Promise<[Listener, Listener]> {
  if (
    data.type === 'tcp' &&
    ctrl.type === 'tcp' &&
    data.port === 0 &&
    ctrl.port === 0 &&
    (data.bindaddr ?? DEFAULT_BIND_ADDRESS) === (ctrl.bindaddr ?? DEFAULT_BIND_ADDRESS)
  ) {
    return listenTcpPair(data.bindaddr, onData, onCtrl, logger);
  }
  const dataListener = await listen(data, onData, logger);
  try {
    return [dataListener, await listen(ctrl, onCtrl, logger)];
  } catch (err) {
    await dataListener.close();
    throw err;
  }
}
