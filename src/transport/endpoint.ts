/**
 * Where a transport listens (TCP or Unix socket), and the listening itself: connection tracking so
 * close() really ends every client, stale Unix socket files, and port pairs for the protocols
 * whose clients derive the second port as "first + 1" (tcti-mssim always, tcti-swtpm for ctrl).
 */
import { createConnection, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { chmod, lstat, unlink } from 'node:fs/promises';
import { resolve as resolvePath } from 'node:path';
import type { Logger } from 'pino';
import { EndpointError } from './errors.ts';

export interface TcpEndpoint {
  type: 'tcp';
  /** 0 picks a free port. */
  port: number;
  /** Defaults to 127.0.0.1, as swtpm does: a TPM is not something to expose by accident. */
  bindaddr?: string;
}

export interface UnixEndpoint {
  type: 'unixio';
  path: string;
  /** File mode bits of the socket file; swtpm's default is 0770. */
  mode?: number;
}

export type Endpoint = TcpEndpoint | UnixEndpoint;

export const DEFAULT_BIND_ADDRESS = '127.0.0.1';
export const DEFAULT_UNIX_SOCKET_MODE = 0o770;

export interface Listener {
  /** `tcp://HOST:PORT` (IPv6 hosts in brackets) or `unix:///absolute/path`. */
  readonly url: string;
  /** The bound TCP port (the real one when 0 was asked for); undefined for Unix sockets. */
  readonly port: number | undefined;
  /** Stops accepting, ends every open connection, removes a Unix socket file. Idempotent. */
  close(): Promise<void>;
}

export type ConnectionHandler = (socket: Socket) => void;

function tcpUrl(host: string, port: number): string {
  return `tcp://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

export async function listen(endpoint: Endpoint, onConnection: ConnectionHandler, logger: Logger): Promise<Listener> {
  return endpoint.type === 'tcp' ? listenTcp(endpoint, onConnection, logger) : listenUnix(endpoint, onConnection, logger);
}

/**
 * Listens on two adjacent free TCP ports P and P+1. The kernel hands out ephemeral ports one at a
 * time, so we take one and try its neighbour, starting over when the neighbour is taken.
 */
export async function listenTcpPair(
  bindaddr: string | undefined,
  onFirst: ConnectionHandler,
  onSecond: ConnectionHandler,
  logger: Logger,
  attempts = 64,
): Promise<[Listener, Listener]> {
  for (let attempt = 0; attempt < attempts; attempt++) {
    const first = await listenTcp({ type: 'tcp', port: 0, bindaddr }, onFirst, logger);
    const port = first.port!;
    if (port < 65535) {
      try {
        const second = await listenTcp({ type: 'tcp', port: port + 1, bindaddr }, onSecond, logger);
        return [first, second];
      } catch (err) {
        if (!(err instanceof EndpointError && err.code === 'ADDRESS_IN_USE')) {
          await first.close();
          throw err;
        }
      }
    }
    await first.close();
  }
  throw new EndpointError(
    `found no two adjacent free TCP ports on ${bindaddr ?? DEFAULT_BIND_ADDRESS} after ${attempts} tries; ` +
      'give explicit ports instead of 0',
    'NO_PORT_PAIR',
  );
}

async function listenTcp(endpoint: TcpEndpoint, onConnection: ConnectionHandler, logger: Logger): Promise<Listener> {
  const host = endpoint.bindaddr ?? DEFAULT_BIND_ADDRESS;
  const tracked = trackedServer(onConnection, logger, true);
  try {
    await startListening(tracked.server, { port: endpoint.port, host });
  } catch (err) {
    throw listenError(tcpUrl(host, endpoint.port), err);
  }
  const address = tracked.server.address() as AddressInfo;
  return makeListener(tracked, tcpUrl(address.address, address.port), address.port, async () => undefined);
}

async function listenUnix(endpoint: UnixEndpoint, onConnection: ConnectionHandler, logger: Logger): Promise<Listener> {
  const path = resolvePath(endpoint.path);
  const url = `unix://${path}`;
  await removeStaleSocket(path, url);
  const tracked = trackedServer(onConnection, logger, false);
  try {
    await startListening(tracked.server, { path });
  } catch (err) {
    throw listenError(url, err);
  }
  const listener = makeListener(tracked, url, undefined, () => unlink(path).catch(() => undefined));
  try {
    await chmod(path, endpoint.mode ?? DEFAULT_UNIX_SOCKET_MODE);
  } catch (err) {
    await listener.close();
    throw new EndpointError(`cannot set the mode of ${url}: ${(err as Error).message}`, 'CHMOD_FAILED', { cause: err });
  }
  return listener;
}

/** A socket file left by a crashed server would make bind() fail; one that still answers is someone else's. */
async function removeStaleSocket(path: string, url: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch {
    return; // nothing there
  }
  if (!isSocket) {
    throw new EndpointError(`cannot listen on ${url}: the path exists and is not a socket; remove it or choose another path`, 'NOT_A_SOCKET');
  }
  const alive = await new Promise<boolean>((resolve) => {
    const probe = createConnection({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) {
    throw new EndpointError(`cannot listen on ${url}: another process is serving that socket; stop it or choose another path`, 'ADDRESS_IN_USE');
  }
  await unlink(path);
}

interface TrackedServer {
  server: Server;
  /** Ends every connection still open; server.close() alone would wait for idle clients forever. */
  destroyAll(): void;
}

function trackedServer(onConnection: ConnectionHandler, logger: Logger, tcp: boolean): TrackedServer {
  const server = createServer();
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    // The connection handler logs socket errors; this guard only keeps an unhandled 'error'
    // from ever taking the process down.
    socket.on('error', () => undefined);
    // One small request, one small response: Nagle's delay would only add latency.
    if (tcp) socket.setNoDelay(true);
    onConnection(socket);
  });
  // Errors after listening (e.g. EMFILE on accept) must not crash the daemon; a failure to listen
  // at all is reported by startListening's caller, not logged here as a fault.
  server.once('listening', () => server.on('error', (err) => logger.error({ err }, 'listening socket failed')));
  return {
    server,
    destroyAll() {
      for (const socket of sockets) socket.destroy();
    },
  };
}

function makeListener(tracked: TrackedServer, url: string, port: number | undefined, cleanup: () => Promise<unknown>): Listener {
  let closing: Promise<void> | undefined;
  return {
    url,
    port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        tracked.server.close(() => resolve());
        tracked.destroyAll();
      }).then(async () => {
        await cleanup();
      });
      return closing;
    },
  };
}

function startListening(server: Server, options: { port: number; host: string } | { path: string }): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => {
      server.off('listening', onListening);
      reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      resolve();
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(options);
  });
}

function listenError(url: string, err: unknown): EndpointError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  switch (code) {
    case 'EADDRINUSE':
      return new EndpointError(
        `cannot listen on ${url}: the address is already in use; stop whatever holds it or choose another port (port=0 picks a free one)`,
        'ADDRESS_IN_USE',
      );
    case 'EACCES':
    case 'EPERM':
      return new EndpointError(
        url.startsWith('unix:')
          ? `cannot listen on ${url}: permission denied; choose a socket path in a directory you may write`
          : `cannot listen on ${url}: permission denied; use a port above 1023 or run with the privilege to bind low ports`,
        'PERMISSION_DENIED',
      );
    case 'ENOENT':
      return new EndpointError(`cannot listen on ${url}: the directory does not exist; create it or choose another path`, 'NO_DIRECTORY');
    case 'EADDRNOTAVAIL':
      return new EndpointError(`cannot listen on ${url}: no interface of this host has that address; fix bindaddr`, 'ADDRESS_NOT_AVAILABLE');
    default:
      return new EndpointError(`cannot listen on ${url}: ${(err as Error).message}`, code ?? 'LISTEN_FAILED');
  }
}
