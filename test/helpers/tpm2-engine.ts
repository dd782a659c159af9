/**
 * Engines for tests: pinned entropy, a manual clock, and helpers that execute a command and
 * parse (and check the form of) its response.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { Tpm2Engine, type Tpm2Options } from '../../src/tpm/tpm2/engine.ts';
import type { EntropySource } from '../../src/tpm/crypto/random.ts';
import { ALG, SU } from '../../src/tpm/tpm2/constants.ts';
import {
  RESPONSE_HANDLE_COMMANDS,
  commandCode,
  hexRc,
  parse,
  parseResponse,
  pcrRead,
  selection,
  startup,
  type Response,
} from './tpm2-commands.ts';

/** A reproducible entropy stream: SHA-256(seed || counter) blocks. Each call makes a new stream. */
export function pinnedEntropy(seed = 'vtpmd-test'): EntropySource {
  let counter = 0;
  let pool = Buffer.alloc(0);
  return (n: number) => {
    while (pool.length < n) {
      const c = Buffer.alloc(4);
      c.writeUInt32BE(counter++);
      pool = Buffer.concat([pool, createHash('sha256').update(seed).update(c).digest()]);
    }
    const out = Buffer.from(pool.subarray(0, n));
    pool = pool.subarray(n);
    return out;
  };
}

/** A clock the test moves by hand (milliseconds). */
export interface ManualClock {
  now: () => number;
  advance(ms: number): void;
  set(ms: number): void;
}

export function manualClock(start = 1_000): ManualClock {
  let t = start;
  return {
    now: () => t,
    advance: (ms) => {
      t += ms;
    },
    set: (ms) => {
      t = ms;
    },
  };
}

/** An engine with pinned entropy and a frozen manual clock unless the options say otherwise. */
export function newEngine(opts: Tpm2Options = {}): Tpm2Engine {
  return new Tpm2Engine({ entropy: pinnedEntropy(), now: manualClock().now, ...opts });
}

/** Executes a command and parses the response (its form is checked by parseResponse). */
export function exec(tpm: Tpm2Engine, cmd: Uint8Array, locality = 0): Response {
  const out = tpm.execute(cmd, locality);
  return parseResponse(out, { responseHandle: cmd.length >= 10 && RESPONSE_HANDLE_COMMANDS.has(commandCode(cmd)) });
}

/** Executes a command that must succeed. */
export function ok(tpm: Tpm2Engine, cmd: Uint8Array, locality = 0): Response {
  const r = exec(tpm, cmd, locality);
  assert.equal(hexRc(r.rc), hexRc(0), `expected TPM_RC_SUCCESS, got ${hexRc(r.rc)}`);
  return r;
}

/** Executes a command that must fail with exactly `rc` (and a 10-byte error response). */
export function fails(tpm: Tpm2Engine, cmd: Uint8Array, rc: number, locality = 0): Response {
  const r = exec(tpm, cmd, locality);
  assert.equal(hexRc(r.rc), hexRc(rc));
  assert.equal(r.raw.length, 10);
  return r;
}

/** A started engine (Startup(CLEAR) done). */
export function startedEngine(opts: Tpm2Options = {}): Tpm2Engine {
  const tpm = newEngine(opts);
  ok(tpm, startup(SU.CLEAR));
  return tpm;
}

/** Reads one PCR of one bank. */
export function readPcr(tpm: Tpm2Engine, pcr: number, alg: number = ALG.SHA256): Buffer {
  const out = parse.pcrRead(ok(tpm, pcrRead([selection(alg, [pcr])])));
  assert.equal(out.pcrValues.length, 1, `PCR ${pcr} of bank 0x${alg.toString(16)} not returned`);
  return out.pcrValues[0]!;
}

/** The pcrUpdateCounter PCR_Read reports. */
export function pcrUpdateCounter(tpm: Tpm2Engine): number {
  return parse.pcrRead(ok(tpm, pcrRead([]))).pcrUpdateCounter;
}

/** Power cycle: _TPM_Init, then a Startup of the given type that must succeed. */
export function powerCycle(tpm: Tpm2Engine, type: number = SU.CLEAR): void {
  tpm.powerOn();
  ok(tpm, startup(type));
}

/** node:crypto's name for a TPM hash algorithm, for computing expected values independently. */
export function nodeHashName(alg: number): string {
  switch (alg) {
    case ALG.SHA1:
      return 'sha1';
    case ALG.SHA256:
      return 'sha256';
    case ALG.SHA384:
      return 'sha384';
    case ALG.SHA512:
      return 'sha512';
    default:
      throw new RangeError(`no node:crypto hash for 0x${alg.toString(16)}`);
  }
}

export function H(alg: number, ...parts: (Uint8Array | string)[]): Buffer {
  const h = createHash(nodeHashName(alg));
  for (const p of parts) h.update(p);
  return h.digest();
}

export function HMAC(alg: number, key: Uint8Array, ...parts: Uint8Array[]): Buffer {
  const h = createHmac(nodeHashName(alg), key);
  for (const p of parts) h.update(p);
  return h.digest();
}

/** The implemented banks, in TPM_ALG_ID order, with digest sizes. */
export const BANKS = [
  { alg: ALG.SHA1, size: 20 },
  { alg: ALG.SHA256, size: 32 },
  { alg: ALG.SHA384, size: 48 },
  { alg: ALG.SHA512, size: 64 },
] as const;
