/**
 * RSA keys made ahead, off the main thread. OpenSSL takes about 200 ms of CPU to generate an
 * RSA-2048 key on a lab machine; made inline, every TPM2_Create of an RSA key would stop every
 * other vTPM of the process for that long. The pool makes keys on libuv's thread pool instead:
 * a command takes a ready key at once, or — in an engine that can wait (a device model) — is run
 * again once one is ready, the main thread serving other vTPMs meanwhile. Keys are ordinary fresh
 * keys from OpenSSL's generator, each handed out once; real TPMs precompute keys the same way.
 * (Primaries are derived, not fresh: their search runs its tests off the main thread instead;
 * see deriveRsaAsync.)
 */
import { createPrivateKey, generateKeyPair } from 'node:crypto';
import { generateRsa, rsaFromPrivateKey, type RsaKey } from './rsa.ts';

interface Kind {
  readonly bits: number;
  readonly exponent: number;
  readonly ready: RsaKey[];
  /** Generations running on the thread pool. */
  making: number;
  /** Callers waiting for a key: each key made goes to the first of them, if any. */
  readonly waiters: { ok: (key: RsaKey) => void; fail: (e: Error) => void }[];
}

export interface RsaKeyPoolOptions {
  /** Keys of each size kept ready once that size has been asked for (default 2). */
  depth?: number;
  /** Generations of one size running at once (default 2: the machine's other core is the point). */
  parallel?: number;
}

export class RsaKeyPool {
  private readonly kinds = new Map<string, Kind>();
  private readonly depth: number;
  private readonly parallel: number;

  constructor(opts: RsaKeyPoolOptions = {}) {
    this.depth = opts.depth ?? 2;
    this.parallel = opts.parallel ?? 2;
  }

  /** A ready key of this size, or undefined; either way the pool goes on filling up behind it. */
  take(bits: number, exponent: number): RsaKey | undefined {
    const kind = this.kind(bits, exponent);
    const key = kind.ready.shift();
    this.fill(kind);
    return key;
  }

  /** A ready key, or one made here and now on this thread when none is (for what cannot wait). */
  takeOrMake(bits: number, exponent: number): RsaKey {
    return this.take(bits, exponent) ?? generateRsa(bits, exponent);
  }

  /** A key for the caller alone: a ready one, or the next one made. */
  next(bits: number, exponent: number): Promise<RsaKey> {
    const key = this.take(bits, exponent);
    if (key) return Promise.resolve(key);
    const kind = this.kind(bits, exponent);
    return new Promise((ok, fail) => {
      kind.waiters.push({ ok, fail });
      this.fill(kind);
    });
  }

  /** Ready keys of every size (for tests and metrics). */
  get size(): number {
    let n = 0;
    for (const kind of this.kinds.values()) n += kind.ready.length;
    return n;
  }

  private kind(bits: number, exponent: number): Kind {
    const id = `${bits}/${exponent}`;
    let kind = this.kinds.get(id);
    if (!kind) this.kinds.set(id, (kind = { bits, exponent, ready: [], making: 0, waiters: [] }));
    return kind;
  }

  private fill(kind: Kind): void {
    while (kind.making < this.parallel && kind.ready.length + kind.making < this.depth + kind.waiters.length) {
      kind.making++;
      const encoding = { privateKeyEncoding: { type: 'pkcs8', format: 'der' }, publicKeyEncoding: { type: 'spki', format: 'der' } } as const;
      generateKeyPair('rsa', { modulusLength: kind.bits, publicExponent: kind.exponent, ...encoding }, (err, _pub: Buffer, der: Buffer) => {
        kind.making--;
        if (err) {
          // Waiters are told rather than left waiting on a generator that fails.
          for (const w of kind.waiters.splice(0)) w.fail(err);
          return;
        }
        const key = rsaFromPrivateKey(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }), kind.exponent, kind.bits);
        const waiter = kind.waiters.shift();
        if (waiter) waiter.ok(key);
        else kind.ready.push(key);
        this.fill(kind);
      });
    }
  }
}

let shared: RsaKeyPool | undefined;

/** The process's pool, which every vTPM device model shares. */
export function processRsaKeyPool(): RsaKeyPool {
  return (shared ??= new RsaKeyPool());
}
