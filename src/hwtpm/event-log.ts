/**
 * The TCG "crypto agile" firmware event log (PC Client Platform Firmware Profile, section 10): the
 * format of /sys/kernel/security/tpm0/binary_bios_measurements. The first entry is a SHA-1-format
 * TCG_PCClientPCREvent carrying the TCG_EfiSpecIDEvent that names the active banks and their digest
 * sizes; every later entry is a TCG_PCR_EVENT2. All integers are little-endian.
 */
import { digest, digestSize, isHashAlg } from '../tpm/crypto/hash.ts';
import { EV } from './event-types.ts';
import { asBuffer } from '../tpm/wire/buffer.ts';

export interface TaggedDigest {
  readonly alg: number;
  readonly digest: Buffer;
}

export interface AlgorithmSize {
  readonly alg: number;
  readonly digestSize: number;
}

/** TCG_EfiSpecIDEvent. */
export interface SpecIdEvent {
  readonly platformClass: number;
  readonly specVersionMinor: number;
  readonly specVersionMajor: number;
  readonly specErrata: number;
  /** 1: UINTN is 32 bits, 2: 64 bits. */
  readonly uintnSize: number;
  readonly algorithms: readonly AlgorithmSize[];
  readonly vendorInfo: Buffer;
}

/** TCG_PCR_EVENT2. */
export interface PcrEvent {
  readonly pcrIndex: number;
  readonly eventType: number;
  /** One digest per bank of the Spec ID event. */
  readonly digests: readonly TaggedDigest[];
  readonly event: Buffer;
}

export interface EventLog {
  readonly specId: SpecIdEvent;
  readonly events: readonly PcrEvent[];
}

/** A log that does not follow the format; `offset` is where in the input the problem lies. */
export class EventLogError extends Error {
  constructor(
    readonly offset: number,
    readonly problem: string,
  ) {
    super(`malformed TCG event log at byte ${offset}: ${problem}`);
    this.name = 'EventLogError';
  }
}

export const SPEC_ID_SIGNATURE = 'Spec ID Event03';
export const STARTUP_LOCALITY_SIGNATURE = 'StartupLocality';
/** PC Client TPMs have 24 PCRs. */
export const PCR_COUNT = 24;

const SHA1_SIZE = 20;
const MAX_DIGEST = 64;
const signature16 = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'latin1'), Buffer.alloc(16 - s.length)]);

/** The Spec ID event a 64-bit PC Client firmware writes for the given banks (PFP 1.05: errata 2). */
export function specIdFor(banks: readonly number[], vendorInfo: Uint8Array = Buffer.alloc(0)): SpecIdEvent {
  return {
    platformClass: 0,
    specVersionMinor: 0,
    specVersionMajor: 2,
    specErrata: 2,
    uintnSize: 2,
    algorithms: banks.map((alg) => {
      const size = digestSize(alg);
      if (size === 0) throw new RangeError(`bank 0x${alg.toString(16)} is not an implemented hash`);
      return { alg, digestSize: size };
    }),
    vendorInfo: Buffer.from(vendorInfo),
  };
}

/** The digest of `data` in every bank, as a measuring agent extends it. */
export function eventDigests(banks: readonly number[], ...data: Uint8Array[]): TaggedDigest[] {
  return banks.map((alg) => ({ alg, digest: digest(alg, ...data) }));
}

/** TCG_EfiStartupLocalityEvent: PCR 0 was reset to this locality rather than to zero. */
export function startupLocalityEvent(locality: number): Buffer {
  if (locality !== 0 && locality !== 3 && locality !== 4) throw new RangeError(`a startup locality is 0, 3 or 4, not ${locality}`);
  return Buffer.concat([signature16(STARTUP_LOCALITY_SIGNATURE), Buffer.from([locality])]);
}

// ---- encoding ----

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b;
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
}

function encodeSpecId(s: SpecIdEvent): Buffer {
  if (s.vendorInfo.length > 255) throw new RangeError('vendorInfo is at most 255 bytes');
  return Buffer.concat([
    signature16(SPEC_ID_SIGNATURE),
    u32(s.platformClass),
    Buffer.from([s.specVersionMinor, s.specVersionMajor, s.specErrata, s.uintnSize]),
    u32(s.algorithms.length),
    ...s.algorithms.map((a) => Buffer.concat([u16(a.alg), u16(a.digestSize)])),
    Buffer.from([s.vendorInfo.length]),
    s.vendorInfo,
  ]);
}

function checkDigests(s: SpecIdEvent, e: PcrEvent, index: number): void {
  const ok =
    e.digests.length === s.algorithms.length &&
    s.algorithms.every((a) => e.digests.filter((d) => d.alg === a.alg && d.digest.length === a.digestSize).length === 1);
  if (!ok) throw new RangeError(`event ${index} must carry exactly one digest for each bank of the Spec ID event`);
}

export function encodeEventLog(log: EventLog): Buffer {
  const spec = encodeSpecId(log.specId);
  const parts: Buffer[] = [u32(0), u32(EV.NO_ACTION), Buffer.alloc(SHA1_SIZE), u32(spec.length), spec];
  log.events.forEach((e, i) => {
    checkDigests(log.specId, e, i + 1);
    parts.push(u32(e.pcrIndex), u32(e.eventType), u32(e.digests.length));
    for (const d of e.digests) parts.push(u16(d.alg), d.digest);
    parts.push(u32(e.event.length), e.event);
  });
  return Buffer.concat(parts);
}

// ---- decoding ----

class Reader {
  offset: number;
  constructor(
    private readonly buf: Buffer,
    start: number,
    private readonly end: number,
  ) {
    this.offset = start;
  }

  get remaining(): number {
    return this.end - this.offset;
  }

  private need(n: number, what: string): number {
    if (n > this.remaining) throw new EventLogError(this.offset, `${what} needs ${n} bytes but only ${this.remaining} remain`);
    const at = this.offset;
    this.offset += n;
    return at;
  }

  u8(what: string): number {
    return this.buf[this.need(1, what)]!;
  }

  u16(what: string): number {
    return this.buf.readUInt16LE(this.need(2, what));
  }

  u32(what: string): number {
    return this.buf.readUInt32LE(this.need(4, what));
  }

  bytes(n: number, what: string): Buffer {
    const at = this.need(n, what);
    return Buffer.from(this.buf.subarray(at, at + n));
  }
}

function decodeSpecId(r: Reader): SpecIdEvent {
  const sigAt = r.offset;
  if (!r.bytes(16, 'the Spec ID signature').equals(signature16(SPEC_ID_SIGNATURE))) {
    throw new EventLogError(sigAt, `the first event is not a "${SPEC_ID_SIGNATURE}" event (a SHA-1-only log is not crypto agile)`);
  }
  const platformClass = r.u32('platformClass');
  const specVersionMinor = r.u8('specVersionMinor');
  const majorAt = r.offset;
  const specVersionMajor = r.u8('specVersionMajor');
  if (specVersionMajor !== 2) throw new EventLogError(majorAt, `specVersionMajor is ${specVersionMajor}, not 2`);
  const specErrata = r.u8('specErrata');
  const uintnAt = r.offset;
  const uintnSize = r.u8('uintnSize');
  if (uintnSize !== 1 && uintnSize !== 2) throw new EventLogError(uintnAt, `uintnSize is ${uintnSize}, not 1 or 2`);
  const countAt = r.offset;
  const count = r.u32('numberOfAlgorithms');
  if (count === 0) throw new EventLogError(countAt, 'numberOfAlgorithms is 0');
  if (count * 4 > r.remaining) throw new EventLogError(countAt, `numberOfAlgorithms ${count} does not fit the Spec ID event`);
  const algorithms: AlgorithmSize[] = [];
  for (let i = 0; i < count; i++) {
    const at = r.offset;
    const alg = r.u16('algorithmId');
    const size = r.u16('digestSize');
    if (algorithms.some((a) => a.alg === alg)) throw new EventLogError(at, `algorithm 0x${alg.toString(16)} is listed twice`);
    const known = digestSize(alg);
    if (known !== 0 && known !== size) throw new EventLogError(at, `algorithm 0x${alg.toString(16)} has digestSize ${size}, not ${known}`);
    if (size === 0 || size > MAX_DIGEST) throw new EventLogError(at, `digestSize ${size} of algorithm 0x${alg.toString(16)} is out of range`);
    algorithms.push({ alg, digestSize: size });
  }
  const vendorInfo = r.bytes(r.u8('vendorInfoSize'), 'vendorInfo');
  if (r.remaining !== 0) throw new EventLogError(r.offset, `${r.remaining} unexpected bytes after the Spec ID event's vendorInfo`);
  return { platformClass, specVersionMinor, specVersionMajor, specErrata, uintnSize, algorithms, vendorInfo };
}

function decodeEvent2(r: Reader, spec: SpecIdEvent, pcrCount: number): PcrEvent {
  const pcrAt = r.offset;
  const pcrIndex = r.u32('pcrIndex');
  if (pcrIndex >= pcrCount) throw new EventLogError(pcrAt, `pcrIndex ${pcrIndex} is not below ${pcrCount}`);
  const eventType = r.u32('eventType');
  const countAt = r.offset;
  const count = r.u32('digest count');
  if (count !== spec.algorithms.length) throw new EventLogError(countAt, `the event has ${count} digests but the Spec ID event lists ${spec.algorithms.length} banks`);
  const digests: TaggedDigest[] = [];
  for (let i = 0; i < count; i++) {
    const at = r.offset;
    const alg = r.u16('hashAlg');
    const bank = spec.algorithms.find((a) => a.alg === alg);
    if (!bank) throw new EventLogError(at, `digest algorithm 0x${alg.toString(16)} is not a bank of the Spec ID event`);
    if (digests.some((d) => d.alg === alg)) throw new EventLogError(at, `digest algorithm 0x${alg.toString(16)} appears twice in one event`);
    digests.push({ alg, digest: r.bytes(bank.digestSize, `the 0x${alg.toString(16)} digest`) });
  }
  const sizeAt = r.offset;
  const size = r.u32('eventSize');
  if (size > r.remaining) throw new EventLogError(sizeAt, `eventSize ${size} exceeds the ${r.remaining} bytes left in the log`);
  const event = r.bytes(size, 'event data');
  if (eventType === EV.NO_ACTION && digests.some((d) => d.digest.some((b) => b !== 0))) {
    throw new EventLogError(pcrAt, 'an EV_NO_ACTION event must carry all-zero digests');
  }
  return { pcrIndex, eventType, digests, event };
}

/** Parses a whole log. Anything that does not follow the format throws EventLogError, nothing else. */
export function decodeEventLog(bytes: Uint8Array, pcrCount = PCR_COUNT): EventLog {
  const buf = asBuffer(bytes);
  const r = new Reader(buf, 0, buf.length);
  const pcrAt = r.offset;
  if (r.u32('the first event pcrIndex') !== 0) throw new EventLogError(pcrAt, 'the Spec ID event must be logged in PCR 0');
  const typeAt = r.offset;
  const type = r.u32('the first event eventType');
  if (type !== EV.NO_ACTION) throw new EventLogError(typeAt, `the first event must be EV_NO_ACTION, not 0x${type.toString(16)}`);
  const digestAt = r.offset;
  if (r.bytes(SHA1_SIZE, 'the first event digest').some((b) => b !== 0)) throw new EventLogError(digestAt, 'the Spec ID event digest must be all zeros');
  const sizeAt = r.offset;
  const size = r.u32('the first event eventDataSize');
  if (size > r.remaining) throw new EventLogError(sizeAt, `eventDataSize ${size} exceeds the ${r.remaining} bytes left in the log`);
  const specReader = new Reader(buf, r.offset, r.offset + size);
  const specId = decodeSpecId(specReader);
  r.offset += size;
  const events: PcrEvent[] = [];
  while (r.remaining > 0) events.push(decodeEvent2(r, specId, pcrCount));
  return { specId, events };
}

// ---- replay ----

function startupLocality(e: PcrEvent): number | undefined {
  if (e.pcrIndex !== 0 || e.event.length !== 17) return undefined;
  return e.event.subarray(0, 16).equals(signature16(STARTUP_LOCALITY_SIGNATURE)) ? e.event[16] : undefined;
}

/**
 * The PCR values a TPM holds after extending every event of the log, per implemented bank, from
 * the reset value zero. A StartupLocality event, or an H-CRTM event, before PCR 0's first extend
 * sets PCR 0's reset value as TPM2_Startup at that locality (Part 1, 34.3) does.
 */
export function replay(log: EventLog, pcrCount = PCR_COUNT): Map<number, Buffer[]> {
  const banks = new Map<number, Buffer[]>();
  for (const a of log.specId.algorithms) {
    if (isHashAlg(a.alg)) banks.set(a.alg, Array.from({ length: pcrCount }, () => Buffer.alloc(a.digestSize)));
  }
  let pcr0Extended = false;
  const resetPcr0 = (locality: number) => {
    for (const values of banks.values()) values[0]![values[0]!.length - 1] = locality;
  };
  for (const e of log.events) {
    if (e.pcrIndex >= pcrCount) throw new RangeError(`pcrIndex ${e.pcrIndex} is not below ${pcrCount}`);
    if (e.eventType === EV.NO_ACTION) {
      const locality = startupLocality(e);
      if (locality !== undefined && !pcr0Extended) resetPcr0(locality);
      continue;
    }
    if (e.pcrIndex === 0) {
      if (e.eventType === EV.EFI_HCRTM_EVENT && !pcr0Extended) resetPcr0(4);
      pcr0Extended = true;
    }
    for (const d of e.digests) {
      const values = banks.get(d.alg);
      if (values) values[e.pcrIndex] = digest(d.alg, values[e.pcrIndex]!, d.digest);
    }
  }
  return banks;
}

// ---- building ----

/** Accumulates a log for a fixed set of banks as a measuring agent writes it. */
export class EventLogBuilder {
  private readonly events: PcrEvent[] = [];
  readonly specId: SpecIdEvent;

  constructor(readonly banks: readonly number[], vendorInfo?: Uint8Array, prior?: EventLog) {
    if (banks.length === 0) throw new RangeError('an event log needs at least one bank');
    if (new Set(banks).size !== banks.length) throw new RangeError('a bank is listed twice');
    this.specId = prior?.specId ?? specIdFor(banks, vendorInfo);
    if (prior) this.events.push(...prior.events);
  }

  /** A builder that goes on where `log` (firmware's, say) ends, with its Spec ID event and banks. */
  static continuing(log: EventLog): EventLogBuilder {
    const banks = log.specId.algorithms.map((a) => a.alg);
    const unknown = banks.filter((alg) => !isHashAlg(alg));
    if (unknown.length > 0) throw new RangeError(`the log has banks this host cannot hash: ${unknown.map((a) => `0x${a.toString(16)}`).join(', ')}`);
    return new EventLogBuilder(banks, undefined, log);
  }

  /** Logs `event`, measured by the digest of `measured` (the event data itself by default). */
  measure(pcrIndex: number, eventType: number, event: Uint8Array, measured: Uint8Array = event): PcrEvent {
    return this.record(pcrIndex, eventType, event, eventDigests(this.banks, measured));
  }

  /** Logs `event` with digests computed elsewhere (an Authenticode hash, a digest of code). */
  record(pcrIndex: number, eventType: number, event: Uint8Array, digests: readonly TaggedDigest[]): PcrEvent {
    if (!Number.isInteger(pcrIndex) || pcrIndex < 0 || pcrIndex >= PCR_COUNT) throw new RangeError(`PCR ${pcrIndex} does not exist`);
    const ordered = this.banks.map((alg) => {
      const d = digests.find((x) => x.alg === alg);
      if (!d || d.digest.length !== digestSize(alg)) throw new RangeError(`no ${digestSize(alg)}-byte digest for bank 0x${alg.toString(16)}`);
      return { alg, digest: Buffer.from(d.digest) };
    });
    if (digests.length !== ordered.length) throw new RangeError('digests given for banks the log does not have');
    const e: PcrEvent = { pcrIndex, eventType, digests: ordered, event: Buffer.from(event) };
    this.events.push(e);
    return e;
  }

  /** An EV_NO_ACTION event: informative, never extended, so its digests are zero. */
  noAction(event: Uint8Array, pcrIndex = 0): PcrEvent {
    return this.record(pcrIndex, EV.NO_ACTION, event, this.banks.map((alg) => ({ alg, digest: Buffer.alloc(digestSize(alg)) })));
  }

  get log(): EventLog {
    return { specId: this.specId, events: [...this.events] };
  }

  encode(): Buffer {
    return encodeEventLog(this.log);
  }
}
