/**
 * ECDSA per-message secrets computed ahead of the messages they sign. FIPS 186-4 (6.3) allows k
 * and k⁻¹ to be precomputed; the point multiplication k·G and the inversion are nearly all of
 * an ECDSA signature's cost, so a key that signs (a vTPM's attestation key) answers its next
 * Quote with a few multiplications modulo n, and the expensive part runs while the event loop
 * would otherwise wait for the next command.
 *
 * Each entry is (r, b, (k·b)⁻¹) for a fresh random k and blinding factor b: the signature is
 * s = (k·b)⁻¹ · b·(e + r·d), so no inversion ever sees k itself, and the entries of a refill are
 * inverted together (Montgomery's trick: one inversion for the batch). An entry is removed from
 * the pool before it is used and kept nowhere else, so a nonce never signs twice. Nothing is
 * persisted: a restart starts with an empty pool.
 *
 * The refill is demand-driven (only a pool that was drawn from refills) and runs one step per
 * event-loop turn, each step one point multiplication or the batch's inversion, so commands are
 * served between steps. A pool found empty makes the caller sign the one-shot way; every entry
 * computed replaces such a signature later, so under saturation the work moves, it does not grow.
 */
import { randomFillSync, type ECDH } from 'node:crypto';
import { modInverse, toBigInt } from './bigint.ts';
import type { Curve } from './ecc.ts';

export interface EcdsaNonce {
  readonly r: bigint;
  readonly b: bigint;
  /** (k·b)⁻¹ mod n. */
  readonly kbInverse: bigint;
}

interface Pending {
  readonly r: bigint;
  readonly b: bigint;
  readonly kb: bigint;
}

/** Entries per key: enough to absorb a short burst, little to throw away when the key is flushed. */
const CAPACITY = 4;

export class EcdsaNoncePool {
  private readonly ready: EcdsaNonce[] = [];
  private pending: Pending[] = [];
  private scheduled = false;

  constructor(
    private readonly curve: Curve,
    /** OpenSSL's point multiplication, through an ECDH object only this pool uses. */
    private readonly ecdh: ECDH,
  ) {}

  /** A nonce nobody has used, or undefined when none is ready. Starts a refill either way. */
  take(): EcdsaNonce | undefined {
    const nonce = this.ready.pop();
    this.scheduleRefill();
    return nonce;
  }

  /** s = (k·b)⁻¹ · b·(e + r·d) mod n, for the digest's value e and the private scalar d. */
  sign(nonce: EcdsaNonce, e: bigint, d: bigint): bigint {
    const n = this.curve.order;
    return (nonce.kbInverse * ((nonce.b * ((e + nonce.r * d) % n)) % n)) % n;
  }

  /** Runs the refill to completion at once (tests, and callers that know they are idle). */
  fill(): void {
    while (this.ready.length < CAPACITY) this.step();
  }

  get size(): number {
    return this.ready.length;
  }

  private scheduleRefill(): void {
    if (this.scheduled || this.ready.length >= CAPACITY) return;
    this.scheduled = true;
    // unref: a process with nothing else to do does not stay up to fill a pool.
    setImmediate(() => {
      this.scheduled = false;
      this.step();
      this.scheduleRefill();
    }).unref();
  }

  private step(): void {
    if (this.ready.length + this.pending.length < CAPACITY) this.pending.push(this.fresh());
    else this.invertPending();
  }

  private fresh(): Pending {
    const c = this.curve;
    const n = c.order;
    // 64 extra bits make the reduction modulo n - 1 negligibly biased (FIPS 186-4 B.5.1).
    const random = Buffer.alloc(2 * (c.bytes + 8));
    for (;;) {
      randomFillSync(random);
      const k = (toBigInt(random.subarray(0, c.bytes + 8)) % (n - 1n)) + 1n;
      const b = (toBigInt(random.subarray(c.bytes + 8)) % (n - 1n)) + 1n;
      this.ecdh.setPrivateKey(Buffer.from(k.toString(16).padStart(c.bytes * 2, '0'), 'hex'));
      const r = toBigInt(this.ecdh.getPublicKey().subarray(1, 1 + c.bytes)) % n;
      if (r !== 0n) return { r, b, kb: (k * b) % n };
    }
  }

  private invertPending(): void {
    const n = this.curve.order;
    const items = this.pending;
    this.pending = [];
    const prefix: bigint[] = [];
    let product = 1n;
    for (const item of items) {
      prefix.push(product);
      product = (product * item.kb) % n;
    }
    let inverse = modInverse(product, n);
    for (let i = items.length - 1; i >= 0; i--) {
      const item = items[i]!;
      this.ready.push({ r: item.r, b: item.b, kbInverse: (inverse * prefix[i]!) % n });
      inverse = (inverse * item.kb) % n;
    }
  }
}
