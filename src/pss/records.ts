/**
 * The PSS database schema (level, utf8 keys, binary values). Every value carries a format number
 * so a later vtpmd can read, convert or refuse it knowingly.
 *
 *   key            value
 *   meta           JSON {format, pssId, counterId, sealedKey, bindPcrs, staged?, codeTransitions?} —
 *                  written at creation, and again when an upgrade is staged (`staged`: the storage
 *                  key sealed to the PCR values the upgraded code will give; `codeTransitions`:
 *                  model code whose state later model code may continue, under a MAC) or takes
 *                  effect (`staged` becomes `sealedKey`)
 *   head           JSON {format, epoch, count, aggregate, mac} — rewritten by every commit
 *   rec/<vmId>     JSON {format, vmId, measurement, version, base, blobId, nonce} — one per VM
 *   blob/<vmId>    the VM's whole image, saved as version `base` (see blob.ts)
 *   delta/<hex vmId>/<version, 16 hex digits>
 *                  the deltas of versions base + 1 … version; `blobId` names the last blob
 *
 * Records and their blob are written in the same batch as the head, so the three never disagree
 * after a crash. Buffers appear as lowercase hex (the sealed key as base64); the epoch, a chip
 * counter value, as a decimal string.
 */
import { PssError, PssViolation } from './errors.ts';
import type { CodeTransition } from './integrity.ts';
import { detached } from '../tpm/wire/buffer.ts';
export const KEY = {
  meta: 'meta',
  head: 'head',
  record: (vmId: string): string => `rec/${vmId}`,
  blob: (vmId: string): string => `blob/${vmId}`,
  // Hex, so one VM's range never takes in another VM whose id extends this one's.
  delta: (vmId: string, version: number): string => `delta/${Buffer.from(vmId, 'utf8').toString('hex')}/${version.toString(16).padStart(16, '0')}`,
} as const;

/** Every record key, and nothing else ('0' follows '/'). */
export const RECORD_RANGE = { gte: 'rec/', lt: 'rec0' } as const;

export const META_FORMAT = 1;
export const HEAD_FORMAT = 1;
/** 2 added `base`; a format 1 record (no deltas) reads as base = version. */
export const RECORD_FORMAT = 2;

export interface Meta {
  readonly pssId: Buffer;
  readonly counterId: number;
  /** The storage key as the chip sealed it to `bindPcrs`. */
  readonly sealedKey: Buffer;
  readonly bindPcrs: readonly number[];
  /** Whether the counter takes increments only with the PSS's counter key (databases made before it existed: no). */
  readonly counterAuth: boolean;
  readonly staged?: StagedKey;
  readonly codeTransitions?: { readonly pairs: readonly CodeTransition[]; readonly mac: Buffer };
}

/** The storage key sealed to the values `bindPcrs` will hold once staged code runs (code-upgrade.ts). */
export interface StagedKey {
  readonly sealedKey: Buffer;
  /** ISO 8601. */
  readonly stagedAt: string;
}

export interface Head {
  /** The chip counter value of the last durable commit. */
  readonly epoch: bigint;
  readonly count: number;
  /** XOR of every record's keyed digest (integrity.ts). */
  readonly aggregate: Buffer;
  readonly mac: Buffer;
}

export interface VmRecord {
  readonly vmId: string;
  readonly measurement: Buffer;
  readonly version: number;
  /** The version saved as a whole image; later versions up to `version` are deltas. */
  readonly base: number;
  readonly blobId: Buffer;
  readonly nonce: Buffer;
}

export function encodeMeta(m: Meta): Buffer {
  return json({
    format: META_FORMAT,
    pssId: m.pssId.toString('hex'),
    counterId: m.counterId,
    sealedKey: m.sealedKey.toString('base64'),
    bindPcrs: [...m.bindPcrs],
    ...(m.counterAuth ? { counterAuth: true } : {}),
    ...(m.staged
      ? {
          staged: { sealedKey: m.staged.sealedKey.toString('base64'), stagedAt: m.staged.stagedAt },
        }
      : {}),
    ...(m.codeTransitions
      ? { codeTransitions: { pairs: m.codeTransitions.pairs.map(([from, to]) => [from.toString('hex'), to.toString('hex')]), mac: m.codeTransitions.mac.toString('hex') } }
      : {}),
  });
}

export function decodeMeta(bytes: Buffer): Meta {
  const o = parse(bytes);
  checkFormat(o, META_FORMAT, 'meta');
  if (!isHex(o.pssId) || typeof o.counterId !== 'number' || typeof o.sealedKey !== 'string' || !isPcrList(o.bindPcrs)) throw unreadable('meta');
  if (o.counterAuth !== undefined && o.counterAuth !== true) throw unreadable('meta');
  const meta = { pssId: Buffer.from(o.pssId, 'hex'), counterId: o.counterId, sealedKey: Buffer.from(o.sealedKey, 'base64'), bindPcrs: o.bindPcrs, counterAuth: o.counterAuth === true };
  return {
    ...meta,
    ...(o.staged === undefined ? {} : { staged: decodeStaged(o.staged) }),
    ...(o.codeTransitions === undefined ? {} : { codeTransitions: decodeTransitions(o.codeTransitions) }),
  };
}

function decodeTransitions(o: unknown): NonNullable<Meta['codeTransitions']> {
  const { pairs, mac } = (o ?? {}) as Json;
  if (!isHex(mac) || !Array.isArray(pairs) || !pairs.every((p) => Array.isArray(p) && p.length === 2 && p.every(isHex))) throw unreadable('meta');
  return { pairs: pairs.map(([from, to]: [string, string]) => [Buffer.from(from, 'hex'), Buffer.from(to, 'hex')] as const), mac: Buffer.from(mac, 'hex') };
}

function decodeStaged(o: unknown): StagedKey {
  const { sealedKey, stagedAt } = (o ?? {}) as Json;
  if (typeof sealedKey !== 'string' || typeof stagedAt !== 'string') throw unreadable('meta');
  return { sealedKey: Buffer.from(sealedKey, 'base64'), stagedAt };
}

export function encodeHead(h: Head): Buffer {
  return json({ format: HEAD_FORMAT, epoch: h.epoch.toString(), count: h.count, aggregate: h.aggregate.toString('hex'), mac: h.mac.toString('hex') });
}

export function decodeHead(bytes: Buffer): Head {
  const o = parse(bytes);
  checkFormat(o, HEAD_FORMAT, 'head');
  if (typeof o.epoch !== 'string' || !/^\d+$/.test(o.epoch) || typeof o.count !== 'number' || !isHex(o.aggregate) || !isHex(o.mac)) throw unreadable('head');
  return { epoch: BigInt(o.epoch), count: o.count, aggregate: Buffer.from(o.aggregate, 'hex'), mac: Buffer.from(o.mac, 'hex') };
}

export function encodeRecord(r: VmRecord): Buffer {
  return json({
    format: RECORD_FORMAT,
    vmId: r.vmId,
    measurement: r.measurement.toString('hex'),
    version: r.version,
    base: r.base,
    blobId: r.blobId.toString('hex'),
    nonce: r.nonce.toString('hex'),
  });
}

export function decodeRecord(bytes: Buffer): VmRecord {
  const o = parse(bytes);
  if (o.format === 1) o.base = o.version;
  else checkFormat(o, RECORD_FORMAT, 'VM record');
  if (typeof o.vmId !== 'string' || !isHex(o.measurement) || !Number.isSafeInteger(o.version) || !isHex(o.blobId) || !isHex(o.nonce)) throw unreadable('VM record');
  if (!Number.isSafeInteger(o.base) || o.base < 1 || o.base > o.version) throw unreadable('VM record');
  return {
    vmId: o.vmId,
    // Records stay in memory for as long as their VM exists (detached).
    measurement: detached(Buffer.from(o.measurement, 'hex')),
    version: o.version as number,
    base: o.base as number,
    blobId: detached(Buffer.from(o.blobId, 'hex')),
    nonce: detached(Buffer.from(o.nonce, 'hex')),
  };
}

type Json = Record<string, any>;

function json(o: Json): Buffer {
  return Buffer.from(JSON.stringify(o), 'utf8');
}

function parse(bytes: Buffer): Json {
  try {
    const o: unknown = JSON.parse(bytes.toString('utf8'));
    if (o && typeof o === 'object' && !Array.isArray(o)) return o as Json;
  } catch {
    // falls through to the refusal below
  }
  throw new PssViolation('modified', undefined, 'a PSS database entry is not readable JSON');
}

function checkFormat(o: Json, known: number, what: string): void {
  if (o.format === known) return;
  if (typeof o.format === 'number' && o.format > known) {
    throw new PssError('bad-database', `the PSS ${what} has format ${o.format}, newer than this vtpmd reads (${known}); run the vtpmd that wrote it`);
  }
  throw unreadable(what);
}

function unreadable(what: string): PssViolation {
  return new PssViolation('modified', undefined, `the PSS ${what} entry is malformed`);
}

function isHex(v: unknown): v is string {
  return typeof v === 'string' && v.length % 2 === 0 && /^[0-9a-f]*$/.test(v);
}

function isPcrList(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((p) => Number.isInteger(p) && p >= 0 && p < 24);
}
