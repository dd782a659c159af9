import type { Socket } from 'node:net';
import { TruncatedFrameError } from './errors.ts';

/**
 * Exact-length reads over a stream socket. Both protocols are length-prefixed, so a handler reads
 * "exactly n bytes" in a loop; TCP delivers those bytes in arbitrary chunks (one frame split over
 * many reads, or many frames in one).
 *
 * Reading is paused while enough unconsumed input is buffered, so a client that pipelines
 * commands faster than the TPM answers them is slowed down by TCP instead of growing our memory.
 */
export class SocketReader {
  readonly #socket: Socket;
  readonly #highWater: number;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #ended = false;
  #failure: Error | undefined;
  #waiter: { wanted: number; wake: () => void } | undefined;

  constructor(socket: Socket, highWater = 64 * 1024) {
    this.#socket = socket;
    this.#highWater = highWater;
    socket.on('data', (chunk: Buffer) => {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
      this.#flowControl();
      this.#wake();
    });
    socket.on('end', () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on('close', () => {
      this.#ended = true;
      this.#wake();
    });
    socket.on('error', (err) => {
      this.#failure ??= err;
      this.#wake();
    });
  }

  /**
   * Resolves with exactly `n` bytes, or with `null` when the peer closed cleanly before sending
   * any byte of them (the normal end of a session between frames). Rejects with
   * TruncatedFrameError when the peer closed part-way, and with the socket's error if it failed.
   */
  async read(n: number): Promise<Buffer | null> {
    if (this.#waiter) throw new Error('SocketReader.read called while another read is pending');
    for (;;) {
      if (this.#buffered >= n) return this.#take(n);
      if (this.#failure) throw this.#failure;
      if (this.#ended) {
        if (this.#buffered === 0) return null;
        throw new TruncatedFrameError(this.#buffered, n);
      }
      await new Promise<void>((wake) => {
        this.#waiter = { wanted: n, wake };
        this.#flowControl();
      });
    }
  }

  /** Like read(), but a clean end of stream is also a truncation: the caller is inside a frame. */
  async readRest(n: number, alreadyRead: number): Promise<Buffer> {
    const bytes = await this.read(n);
    if (bytes === null) throw new TruncatedFrameError(alreadyRead, alreadyRead + n);
    return bytes;
  }

  #take(n: number): Buffer {
    let out: Buffer;
    const first = this.#chunks[0];
    if (n === 0) {
      out = Buffer.alloc(0);
    } else if (first !== undefined && first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let filled = 0;
      while (filled < n) {
        const chunk = this.#chunks[0]!;
        const used = Math.min(chunk.length, n - filled);
        chunk.copy(out, filled, 0, used);
        filled += used;
        if (used === chunk.length) this.#chunks.shift();
        else this.#chunks[0] = chunk.subarray(used);
      }
    }
    this.#buffered -= n;
    this.#flowControl();
    return out;
  }

  #wake(): void {
    const waiter = this.#waiter;
    if (!waiter) return;
    if (this.#buffered >= waiter.wanted || this.#ended || this.#failure) {
      this.#waiter = undefined;
      waiter.wake();
    }
  }

  #flowControl(): void {
    // A pending read that needs more than is buffered must be able to make progress even when a
    // single frame is larger than the high-water mark.
    const starving = this.#waiter !== undefined && this.#waiter.wanted > this.#buffered;
    if (this.#buffered >= this.#highWater && !starving) this.#socket.pause();
    else this.#socket.resume();
  }
}

/**
 * Writes `bytes` and resolves once they are handed to the kernel (or the socket is gone), so a
 * client that does not read its responses holds back its own connection only.
 */
export function writeFully(socket: Socket, bytes: Uint8Array): Promise<void> {
  if (socket.destroyed || !socket.writable) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('close', done);
      resolve();
    };
    socket.once('close', done);
    // Errors surface through the socket's 'error' event, which the connection handler owns.
    socket.write(bytes, () => done());
  });
}
