import { createHash, createHmac } from 'node:crypto';

/**
 * A deterministic byte stream: HMAC-SHA-256 in counter mode keyed by a secret seed, bound to a
 * label and a context. Primary keys are drawn from it, so the same seed and template always
 * give the same key while different templates give unrelated ones.
 */
export class SeededStream {
  private counter = 0;
  private buffer = Buffer.alloc(0);
  private readonly suffix: Buffer;

  constructor(private readonly key: Uint8Array, label: string, context: Uint8Array) {
    this.suffix = Buffer.concat([Buffer.from(label, 'latin1'), Buffer.from([0]), context]);
  }

  /** The same stream at the same position, moving on its own from here. */
  fork(): SeededStream {
    const copy = Object.create(SeededStream.prototype) as SeededStream;
    return Object.assign(copy, this);
  }

  /** Moves this stream to where `other`, a fork of it, stands. */
  catchUp(other: SeededStream): void {
    this.counter = other.counter;
    this.buffer = other.buffer;
  }

  /** Names the stream and its position: two streams with the same one give the same bytes from here. */
  position(): string {
    const at = Buffer.alloc(12);
    at.writeUInt32BE(this.counter);
    at.writeUInt32BE(this.buffer.length, 4);
    at.writeUInt32BE(this.key.length, 8);
    return createHash('sha256').update(at).update(this.key).update(this.suffix).digest('hex');
  }

  next(n: number): Buffer {
    while (this.buffer.length < n) {
      const c = Buffer.alloc(4);
      c.writeUInt32BE(++this.counter);
      this.buffer = Buffer.concat([this.buffer, createHmac('sha256', this.key).update(c).update(this.suffix).digest()]);
    }
    const out = this.buffer.subarray(0, n);
    this.buffer = this.buffer.subarray(n);
    return Buffer.from(out);
  }
}
