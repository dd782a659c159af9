import { createHmac, randomBytes } from 'node:crypto';
import { detached } from '../wire/buffer.ts';

export type EntropySource = (n: number) => Buffer;

export const systemEntropy: EntropySource = (n) => randomBytes(n);

/**
 * `source` read a chunk at a time and handed out in slices: one call into the system's CSPRNG
 * per chunk rather than per nonce, for callers that draw a few bytes per operation. Every byte
 * is handed out once, and the chunk is wiped as it is used up.
 */
export function bufferedEntropy(source: EntropySource = systemEntropy, chunk = 4096): EntropySource {
  let pool: Buffer = Buffer.alloc(0);
  let at = 0;
  return (n) => {
    if (n > chunk) return source(n);
    if (at + n > pool.length) {
      pool.fill(0);
      pool = source(chunk);
      at = 0;
    }
    at += n;
    // A copy, and one of its own: a caller that wipes its bytes (a key) must not share them with
    // anyone's, and one that keeps them (a stored nonce) must not keep a pool block alive.
    return detached(pool.subarray(at - n, at));
  };
}

/**
 * The process's CSPRNG reads, shared: what TPM engines and clients draw by default. A session
 * command takes a fresh nonce on each side, and one read of the system's generator per nonce cost
 * a fifth of an HMAC-authorized command in the engine; one pool for the process, not one per
 * engine, keeps a thousand loaded vTPMs from holding 4 KB each.
 */
export const processEntropy: EntropySource = bufferedEntropy();

/**
 * The TPM's random number generator: entropy from the injected source, with StirRandom input
 * mixed into an HMAC-SHA256 key whose output stream is XORed over it. Stirring can only add
 * unpredictability, and a test that pins the source gets reproducible output.
 */
export class TpmRandom {
  private key: Buffer | null = null;
  private counter = 0;

  constructor(private readonly entropy: EntropySource = processEntropy) {}

  bytes(n: number): Buffer {
    const out = this.entropy(n);
    if (!this.key) return out;
    for (let off = 0; off < n; off += 32) {
      const block = createHmac('sha256', this.key).update(Buffer.from([this.counter >>> 24, this.counter >>> 16, this.counter >>> 8, this.counter])).digest();
      this.counter = (this.counter + 1) >>> 0;
      for (let i = 0; i < 32 && off + i < n; i++) out[off + i]! ^= block[i]!;
    }
    return out;
  }

  stir(input: Uint8Array): void {
    this.key = createHmac('sha256', this.key ?? Buffer.alloc(32)).update(input).digest();
  }
}
