/**
 * A TPM 2.0 outside this process serving as the host's TPM, reached over the swtpm socket
 * interface's data channel — the protocol tpm2-tools' swtpm TCTI speaks, and what swtpm, or a
 * proxy in front of a host's /dev/tpmrm0, serves. Named the way a TCTI configuration names it:
 *
 *   swtpm                               127.0.0.1, port 2321
 *   swtpm:host=HOST,port=PORT
 *   swtpm:path=/run/vtpmd/host-tpm.sock a Unix socket
 *
 * The TPM must be powered and past TPM_Init when vtpmd attaches (swtpm: `--flags
 * not-need-init`, or a TCTI's power-on before): vtpmd never power-cycles it, because resetting the
 * host's TPM is a reboot's business, not a daemon's. One command is in flight at a time. A broken
 * connection fails the command in flight, and the next command connects again.
 */
import { connect, type Socket } from 'node:net';
import { SerialQueue } from '../tpm/serial-queue.ts';
import { HEADER_SIZE_OFFSET, TPM_HEADER_SIZE } from '../transport/tpm-frames.ts';
import { SocketReader } from '../transport/socket-io.ts';
import type { Exec, HostTpm } from './host-tpm.ts';

export type AttachedTpmAddress = { readonly host: string; readonly port: number } | { readonly path: string };

/** Largest response accepted: a TPM's own limit (TPM_PT_MAX_RESPONSE_SIZE) is a few KiB. */
const MAX_RESPONSE = 64 * 1024;
const DEFAULT_ADDRESS = { host: '127.0.0.1', port: 2321 } as const;

export class AttachedTpmError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AttachedTpmError';
  }
}

/** Parses `swtpm[:key=value,…]` (keys host, port, path); throws AttachedTpmError naming what is wrong. */
export function parseAttachedTpm(spec: string): AttachedTpmAddress {
  const m = /^([a-z0-9-]+)(?::(.*))?$/.exec(spec);
  if (!m) throw new AttachedTpmError(`host TPM ${JSON.stringify(spec)}: expected swtpm:host=HOST,port=PORT or swtpm:path=SOCKET`);
  if (m[1] !== 'swtpm') throw new AttachedTpmError(`host TPM ${JSON.stringify(spec)}: the ${m[1]} interface is not supported; vtpmd attaches over swtpm`);
  const fields = new Map<string, string>();
  for (const part of (m[2] ?? '').split(',').filter((p) => p !== '')) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    if (!['host', 'port', 'path'].includes(key) || eq < 0) throw new AttachedTpmError(`host TPM ${JSON.stringify(spec)}: unknown or empty field ${JSON.stringify(part)} (host=, port=, path=)`);
    if (fields.has(key)) throw new AttachedTpmError(`host TPM ${JSON.stringify(spec)}: ${key} given twice`);
    fields.set(key, part.slice(eq + 1));
  }
  const path = fields.get('path');
  if (path !== undefined) {
    if (fields.has('host') || fields.has('port')) throw new AttachedTpmError(`host TPM ${JSON.stringify(spec)}: path= excludes host= and port=`);
    if (path === '') throw new AttachedTpmError(`host TPM ${JSON.stringify(spec)}: path= is empty`);
    return { path };
  }
  const host = fields.get('host') || DEFAULT_ADDRESS.host;
  const portText = fields.get('port');
  const port = portText === undefined ? DEFAULT_ADDRESS.port : Number(portText);
  if (!/^\d+$/.test(portText ?? '1') || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new AttachedTpmError(`host TPM ${JSON.stringify(spec)}: port must be 1–65535, not ${JSON.stringify(portText)}`);
  }
  return { host, port };
}

export function describeAddress(a: AttachedTpmAddress): string {
  return 'path' in a ? `swtpm:path=${a.path}` : `swtpm:host=${a.host},port=${a.port}`;
}

interface Connection {
  readonly socket: Socket;
  readonly reader: SocketReader;
}

export class AttachedTpm implements HostTpm {
  readonly family = 'tpm2' as const;
  readonly powered = true;
  private readonly queue = new SerialQueue();
  private connection: Connection | undefined;
  private closed = false;

  constructor(readonly address: AttachedTpmAddress) {}

  /** Connects now, so that a wrong address fails at start rather than at the first command. */
  static async open(address: AttachedTpmAddress): Promise<AttachedTpm> {
    const tpm = new AttachedTpm(address);
    await tpm.queue.run(() => tpm.connected());
    return tpm;
  }

  get name(): string {
    return describeAddress(this.address);
  }

  async powerOn(): Promise<void> {
    // Attached powered: see the module comment.
  }

  execute(command: Uint8Array, locality: number): Promise<Uint8Array> {
    return this.exclusive((exec) => exec(command), locality);
  }

  exclusive<T>(job: (exec: Exec) => Promise<T>, locality = 0): Promise<T> {
    // The data channel carries no locality; the ctrl channel's SET_LOCALITY is left alone because
    // the host's own users share this TPM and a locality is theirs to choose.
    if (locality !== 0) return Promise.reject(new RangeError(`the attached host TPM is used at locality 0 only, not ${locality}`));
    return this.queue.run(() => job((command) => this.roundTrip(command)));
  }

  async flush(): Promise<void> {
    // The TPM makes its own NV durable before it answers; nothing is held here.
  }

  /** Closes the connection once the commands queued so far have been answered. */
  close(): Promise<void> {
    return this.queue.run(async () => {
      this.closed = true;
      this.drop();
    });
  }

  private async roundTrip(command: Uint8Array): Promise<Uint8Array> {
    const { socket, reader } = await this.connected();
    try {
      socket.write(command);
      const header = await reader.read(TPM_HEADER_SIZE);
      if (header === null) throw new AttachedTpmError(`the host TPM at ${this.name} closed the connection before answering`);
      const size = header.readUInt32BE(HEADER_SIZE_OFFSET);
      if (size < TPM_HEADER_SIZE || size > MAX_RESPONSE) throw new AttachedTpmError(`the host TPM at ${this.name} framed a response of ${size} bytes`);
      const body = await reader.readRest(size - TPM_HEADER_SIZE, TPM_HEADER_SIZE);
      return Buffer.concat([header, body]);
    } catch (e) {
      // After a failure mid-exchange the stream's framing is lost: start the next command afresh.
      this.drop();
      if (e instanceof AttachedTpmError) throw e;
      throw new AttachedTpmError(`the host TPM at ${this.name} failed during a command: ${(e as Error).message}`, { cause: e });
    }
  }

  private async connected(): Promise<Connection> {
    if (this.closed) throw new AttachedTpmError(`the host TPM at ${this.name} was detached`);
    if (this.connection && !this.connection.socket.destroyed) return this.connection;
    const socket = 'path' in this.address ? connect({ path: this.address.path }) : connect({ host: this.address.host, port: this.address.port });
    socket.setNoDelay(true);
    await new Promise<void>((ok, fail) => {
      socket.once('connect', ok);
      socket.once('error', (e) => fail(new AttachedTpmError(`cannot reach the host TPM at ${this.name}: ${e.message}`, { cause: e })));
    });
    this.connection = { socket, reader: new SocketReader(socket) };
    return this.connection;
  }

  private drop(): void {
    this.connection?.socket.destroy();
    this.connection = undefined;
  }
}
