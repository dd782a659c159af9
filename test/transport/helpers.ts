/**
 * Test doubles for the transport tests: a fake TpmDevice that records what the transport asks of
 * it, and a small socket client that speaks in exact-length reads.
 */
import { connect, type Socket } from 'node:net';
import pino from 'pino';
import type { TpmDevice } from '../../src/tpm/device.ts';
import { SocketReader } from '../../src/transport/socket-io.ts';

export const silentLogger = pino({ level: 'silent' });

export type Responder = (command: Buffer, locality: number) => Uint8Array | Promise<Uint8Array>;

/**
 * Echo-like device: a response is tag 0x8001, size, rc 0, then the locality byte, then the
 * command's bytes after its header, so a test sees what arrived and at which locality.
 */
export class FakeDevice implements TpmDevice {
  family: 'tpm2' | 'tpm12' = 'tpm2';
  powered = false;
  established = true;
  maxCommandSize = 4096;
  /** Everything the transport did, in order: powerOn, powerOff, flush, execute@L, resetEstablished@L. */
  readonly events: string[] = [];
  readonly executed: { command: Buffer; locality: number }[] = [];
  respond: Responder = echoResponse;
  #active = 0;
  maxConcurrent = 0;

  constructor(init: Partial<Pick<FakeDevice, 'family' | 'powered' | 'established' | 'maxCommandSize' | 'respond'>> = {}) {
    Object.assign(this, init);
  }

  async execute(command: Uint8Array, locality: number): Promise<Uint8Array> {
    const bytes = Buffer.from(command);
    this.events.push(`execute@${locality}`);
    this.executed.push({ command: bytes, locality });
    this.#active++;
    this.maxConcurrent = Math.max(this.maxConcurrent, this.#active);
    try {
      if (!this.powered) return header(0x8001, 10, 0x101);
      return await this.respond(bytes, locality);
    } finally {
      this.#active--;
    }
  }

  async powerOn(): Promise<void> {
    this.events.push('powerOn');
    this.powered = true;
  }

  async powerOff(): Promise<void> {
    this.events.push('powerOff');
    this.powered = false;
  }

  resetEstablished(locality: number): boolean {
    this.events.push(`resetEstablished@${locality}`);
    if (locality < 3) return false;
    this.established = false;
    return true;
  }

  async flush(): Promise<void> {
    this.events.push('flush');
  }
}

export function header(tag: number, size: number, code: number): Buffer {
  const out = Buffer.alloc(10);
  out.writeUInt16BE(tag, 0);
  out.writeUInt32BE(size, 2);
  out.writeUInt32BE(code >>> 0, 6);
  return out;
}

/** A well-framed TPM 2.0 command with the given code and parameter bytes. */
export function command(code: number, params: Uint8Array = Buffer.alloc(0)): Buffer {
  return Buffer.concat([header(0x8001, 10 + params.length, code), params]);
}

export function echoResponse(command: Buffer, locality: number): Uint8Array {
  const body = command.subarray(10);
  return Buffer.concat([header(0x8001, 11 + body.length, 0), Buffer.of(locality), body]);
}

/** The echo device's answer to `command` at `locality`, for comparing with what came back. */
export function expectedEcho(cmd: Buffer, locality: number): Buffer {
  return Buffer.from(echoResponse(cmd, locality));
}

export function u32(...values: number[]): Buffer {
  const out = Buffer.alloc(4 * values.length);
  values.forEach((v, i) => out.writeUInt32BE(v >>> 0, 4 * i));
  return out;
}

/** A raw client for `tcp://host:port` or `unix:///path` URLs as the servers report them. */
export class Client {
  readonly #reader: SocketReader;
  readonly #closed: Promise<void>;

  private constructor(readonly socket: Socket) {
    this.#reader = new SocketReader(socket);
    this.#closed = new Promise((resolve) => socket.once('close', () => resolve()));
  }

  static async connect(url: string): Promise<Client> {
    const socket = url.startsWith('unix://') ? connect({ path: url.slice('unix://'.length) }) : connect(tcpTarget(url));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    socket.setNoDelay(true);
    return new Client(socket);
  }

  write(bytes: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => this.socket.write(bytes, (err) => (err ? reject(err) : resolve())));
  }

  /** Exactly n bytes; throws if the server closes first. */
  async read(n: number): Promise<Buffer> {
    const bytes = await this.#reader.read(n);
    if (bytes === null) throw new Error(`server closed the connection; wanted ${n} bytes`);
    return bytes;
  }

  /** One TPM response framed by its header's size field. */
  async readResponse(): Promise<Buffer> {
    const head = await this.read(10);
    const rest = await this.read(head.readUInt32BE(2) - 10);
    return Buffer.concat([head, rest]);
  }

  /** Resolves true when the server closes without sending anything more; false if bytes arrive. */
  async closesWithoutData(): Promise<boolean> {
    return (await this.#reader.read(1)) === null;
  }

  /** Sends a command and returns its response (swtpm data channel). */
  async transact(bytes: Uint8Array): Promise<Buffer> {
    await this.write(bytes);
    return this.readResponse();
  }

  closed(): Promise<void> {
    return this.#closed;
  }

  close(): void {
    this.socket.destroy();
  }
}

export function tcpTarget(url: string): { host: string; port: number } {
  const match = /^tcp:\/\/(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(url);
  if (!match) throw new Error(`not a tcp:// url: ${url}`);
  return { host: match[1] ?? match[2]!, port: Number(match[3]) };
}

export function portOf(url: string): number {
  return tcpTarget(url).port;
}

/** A promise with its resolve function outside, for holding a fake device mid-command. */
export function gate<T = void>(): { promise: Promise<T>; open: (value: T) => void } {
  let open!: (value: T) => void;
  const promise = new Promise<T>((resolve) => (open = resolve));
  return { promise, open };
}
