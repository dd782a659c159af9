/**
 * A minimal swtpm data-channel client: one TCP connection, raw TPM command bytes out, responses
 * framed by the size field of their 10-byte header. One command in flight at a time. The same
 * client drives every peer, so their figures differ only by the server.
 *
 * The measuring loop is a callback state machine on the socket's 'data' event (no promise per
 * operation) to keep the client's own cost per round trip small and equal for all peers.
 */
import { connect, type Socket } from 'node:net';
import { hex } from './commands.ts';
import { SampleBuffer } from './stats.ts';

const hrtime = process.hrtime.bigint;
const HEADER = 10;
/** Far above any TPM response; a bigger size field means the stream is out of step. */
const MAX_RESPONSE = 1 << 20;
/** A server that answers nothing for this long is hung; the run fails instead of waiting forever. */
const STALL_MS = 10_000;

export interface RunResult {
  ops: number;
  elapsedNs: bigint;
  samples: SampleBuffer;
}

/** Who gets the next response. A persistent waiter (the measuring loop) stays armed until it disarms itself. */
type Waiter = { onResponse: (response: Buffer) => void; onFailure: (err: Error) => void; persistent: boolean };

export class DataChannelClient {
  readonly #socket: Socket;
  readonly #peer: string;
  /** Bytes of a response that arrived split over several chunks. */
  #partial: Buffer | null = null;
  #waiter: Waiter | null = null;
  #failure: Error | null = null;

  private constructor(socket: Socket, peer: string) {
    this.#socket = socket;
    this.#peer = peer;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('error', (err) => this.#fail(new Error(`${peer} data connection failed: ${err.message}`)));
    socket.on('close', () => this.#fail(new Error(`${peer} closed the data connection`)));
  }

  static connect(host: string, port: number, peer: string, timeoutMs = 5000): Promise<DataChannelClient> {
    return new Promise((resolve, reject) => {
      const socket = connect({ host, port });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`connecting to ${peer} at ${host}:${port} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      socket.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot connect to ${peer} at ${host}:${port}: ${err.message}`));
      });
      socket.once('connect', () => {
        clearTimeout(timer);
        socket.removeAllListeners('error');
        resolve(new DataChannelClient(socket, peer));
      });
    });
  }

  /** The connection's own port, to tell a TCP self-connect (source port = destination port) from a server. */
  get localPort(): number | undefined {
    return this.#socket.localPort;
  }

  /** One command, one response (any rc). */
  exchange(command: Buffer): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      this.#expect({
        onResponse: (response) => {
          clearTimeout(timer);
          resolve(response);
        },
        onFailure: (err) => {
          clearTimeout(timer);
          reject(err);
        },
        persistent: false,
      });
      timer = setTimeout(() => this.#fail(this.#stalled()), STALL_MS);
      this.#socket.write(command);
    });
  }

  /**
   * Sends `command` back to back for `seconds`, each after the previous response, and fails on
   * the first response whose rc is not 0. Every `sampleEvery`-th round trip is timed, from the
   * write to the last byte of its response.
   */
  run(command: Buffer, seconds: number, sampleEvery: number, samples: SampleBuffer | null): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const socket = this.#socket;
      const buf = samples ?? new SampleBuffer(16);
      let ops = 0;
      const start = hrtime();
      const deadline = start + BigInt(Math.round(seconds * 1e9));
      let sentAt = start;
      // Checked once per STALL_MS rather than armed per operation, which would cost a timer each.
      let seen = -1;
      const watchdog = setInterval(() => {
        if (ops === seen) this.#fail(this.#stalled());
        seen = ops;
      }, STALL_MS);
      const waiter: Waiter = {
        onResponse: (response) => {
          const now = hrtime();
          const rc = response.readUInt32BE(6);
          if (rc !== 0) {
            clearInterval(watchdog);
            this.#waiter = null;
            reject(new Error(`${this.#peer} answered the measured command with rc ${hex(rc)} after ${ops} successful ones (response ${response.toString('hex')})`));
            return;
          }
          if (ops % sampleEvery === 0) buf.push(Number(now - sentAt));
          ops++;
          if (now >= deadline) {
            clearInterval(watchdog);
            this.#waiter = null;
            resolve({ ops, elapsedNs: now - start, samples: buf });
            return;
          }
          sentAt = hrtime();
          socket.write(command);
        },
        onFailure: (err) => {
          clearInterval(watchdog);
          reject(err);
        },
        persistent: true,
      };
      this.#expect(waiter);
      socket.write(command);
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#waiter = null;
      if (this.#socket.destroyed) return resolve();
      this.#socket.once('close', () => resolve());
      this.#socket.end();
      setTimeout(() => this.#socket.destroy(), 1000).unref();
    });
  }

  #expect(waiter: Waiter): void {
    if (this.#failure) throw this.#failure;
    if (this.#waiter) throw new Error('DataChannelClient: a command is already in flight');
    this.#waiter = waiter;
  }

  #onData(chunk: Buffer): void {
    let data = chunk;
    if (this.#partial) {
      data = Buffer.concat([this.#partial, chunk]);
      this.#partial = null;
    }
    while (data.length > 0) {
      if (data.length < HEADER) {
        this.#partial = data;
        return;
      }
      const size = data.readUInt32BE(2);
      if (size < HEADER || size > MAX_RESPONSE) {
        this.#fail(new Error(`${this.#peer} sent a response with size field ${size}; the stream is out of step`));
        this.#socket.destroy();
        return;
      }
      if (data.length < size) {
        this.#partial = data;
        return;
      }
      const response = data.length === size ? data : data.subarray(0, size);
      data = data.subarray(size);
      const waiter = this.#waiter;
      if (!waiter) {
        this.#fail(new Error(`${this.#peer} sent ${size} bytes nobody asked for`));
        this.#socket.destroy();
        return;
      }
      if (!waiter.persistent) this.#waiter = null;
      waiter.onResponse(response);
    }
  }

  #stalled(): Error {
    return new Error(`${this.#peer} sent no response for at least ${STALL_MS / 1000} s; it looks hung`);
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    const waiter = this.#waiter;
    this.#waiter = null;
    waiter?.onFailure(err);
  }
}
