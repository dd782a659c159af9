/**
 * A small TPM 2.0 command builder and response parser for tests and benchmarks, composed from the
 * project's own wire codecs. Builders return complete command buffers (header, handles,
 * authorization area, parameters); `parseResponse` splits a response into its header, response
 * handle, parameter area and session area without interpreting the parameters, and
 * `responseParams` decodes the parameter area with codecs.
 */
import { Reader, Writer } from '../../src/tpm/wire/buffer.ts';
import { decode, encode, i8, struct, u32, u64, yesNo, type Codec, type StructOf } from '../../src/tpm/wire/codec.ts';
import { ALG, CC, RH, SESSION_ATTR, ST, SU } from '../../src/tpm/tpm2/constants.ts';
import {
  algList,
  digestBuf,
  digestList,
  digestValues,
  hashCheckTicket,
  maxBuffer,
  type TaggedHash,
} from '../../src/tpm/tpm2/types/basic.ts';
import { capabilityData } from '../../src/tpm/tpm2/types/capability.ts';
import { pcrSelectionList, type PcrSelection } from '../../src/tpm/tpm2/types/pcr.ts';
import { publicParms, type PublicParms } from '../../src/tpm/tpm2/types/public-parms.ts';
import { timeInfo } from '../../src/tpm/tpm2/types/time.ts';

export const HEADER_SIZE = 10;

/** One TPMS_AUTH_COMMAND. Defaults make a plain password session with an empty password. */
export interface SessionSpec {
  handle?: number;
  nonce?: Uint8Array;
  attributes?: number;
  /** The password (TPM_RS_PW) or HMAC. */
  password?: Uint8Array | string;
}

/** What a convenience builder accepts as the authorization of a handle. */
export type AuthArg = string | Uint8Array | SessionSpec;

export interface CommandSpec {
  cc: number;
  handles?: readonly number[];
  /** When present (even empty) and `tag` is not given, the tag is TPM_ST_SESSIONS iff non-empty. */
  sessions?: readonly SessionSpec[];
  /** Parameter area bytes. */
  params?: Uint8Array;
  /** Overrides the tag (to build deliberately inconsistent commands). */
  tag?: number;
  /** Overrides the authorizationSize field (written only when sessions are present). */
  authSize?: number;
  /** Overrides the commandSize field. */
  size?: number;
}

const toBytes = (v: Uint8Array | string): Buffer => (typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v));

/** A password session for TPM_RS_PW. */
export function pw(password: Uint8Array | string = ''): SessionSpec {
  return { handle: RH.RS_PW, password, attributes: SESSION_ATTR.continueSession };
}

function session(a: AuthArg): SessionSpec {
  return typeof a === 'string' || a instanceof Uint8Array ? pw(a) : a;
}

/** Encodes one value with a codec (a fresh copy). */
export function enc<T>(c: Codec<T>, v: T): Buffer {
  return Buffer.from(encode(c, v));
}

/** Concatenates parameter fields. */
export function params(...parts: Uint8Array[]): Buffer {
  return Buffer.concat(parts);
}

export function u16b(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v & 0xffff);
  return b;
}

export function u32b(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}

/** A TPM2B of raw bytes (no maximum enforced: tests build oversized ones on purpose). */
export function tpm2b(data: Uint8Array | string): Buffer {
  const d = toBytes(data);
  return Buffer.concat([u16b(d.length), d]);
}

/** Builds a complete command. */
export function buildCommand(spec: CommandSpec): Buffer {
  const sessions = spec.sessions ?? [];
  const w = new Writer(64);
  w.u16(spec.tag ?? (sessions.length > 0 ? ST.SESSIONS : ST.NO_SESSIONS));
  const sizeAt = w.reserveU32();
  w.u32(spec.cc);
  for (const h of spec.handles ?? []) w.u32(h);
  if (sessions.length > 0) {
    const at = w.reserveU32();
    const start = w.length;
    for (const s of sessions) {
      const nonce = s.nonce ?? Buffer.alloc(0);
      const hmac = toBytes(s.password ?? '');
      w.u32(s.handle ?? RH.RS_PW);
      w.u16(nonce.length).bytes(nonce);
      w.u8(s.attributes ?? SESSION_ATTR.continueSession);
      w.u16(hmac.length).bytes(hmac);
    }
    w.patchU32(at, spec.authSize ?? w.length - start);
  }
  if (spec.params) w.bytes(spec.params);
  w.patchU32(sizeAt, spec.size ?? w.length);
  return Buffer.from(w.finish());
}

/** The command code of a built command. */
export function commandCode(cmd: Uint8Array): number {
  return Buffer.from(cmd.buffer, cmd.byteOffset, cmd.byteLength).readUInt32BE(6);
}

/** Commands whose response carries a handle ahead of the parameters (TPMA_CC.rHandle). */
export const RESPONSE_HANDLE_COMMANDS: ReadonlySet<number> = new Set([
  CC.HashSequenceStart,
  CC.HMAC_Start,
  CC.CreatePrimary,
  CC.Load,
  CC.LoadExternal,
  CC.ContextLoad,
  CC.StartAuthSession,
  CC.CreateLoaded,
]);

export interface AuthResponseFields {
  nonce: Buffer;
  attributes: number;
  hmac: Buffer;
}

export interface Response {
  raw: Buffer;
  tag: number;
  size: number;
  rc: number;
  /** The response handle, for commands that return one and succeed. */
  handle?: number;
  /** parameterSize, present when the tag is TPM_ST_SESSIONS. */
  parameterSize?: number;
  /** The response parameter area. */
  params: Buffer;
  /** The response authorization area (TPM_ST_SESSIONS only). */
  sessions: AuthResponseFields[];
  /** A fresh reader over the parameter area. */
  reader(): Reader;
}

/**
 * Splits a response. Throws (an ordinary Error: a test failure) if it is not well formed; error
 * responses must be exactly the 10-byte header.
 */
export function parseResponse(bytes: Uint8Array, opts: { responseHandle?: boolean } = {}): Response {
  const raw = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const problem = responseProblem(raw);
  if (problem) throw new Error(`malformed response ${raw.toString('hex')}: ${problem}`);
  const tag = raw.readUInt16BE(0);
  const size = raw.readUInt32BE(2);
  const rc = raw.readUInt32BE(6);
  const empty = Buffer.alloc(0);
  const base = { raw, tag, size, rc, sessions: [] as AuthResponseFields[] };
  if (rc !== 0) return { ...base, params: empty, reader: () => new Reader(empty) };
  let off = HEADER_SIZE;
  let handle: number | undefined;
  if (opts.responseHandle) {
    if (raw.length < off + 4) throw new Error('response too short for its handle');
    handle = raw.readUInt32BE(off);
    off += 4;
  }
  let params: Buffer;
  let parameterSize: number | undefined;
  const sessions: AuthResponseFields[] = [];
  if (tag === ST.SESSIONS) {
    if (raw.length < off + 4) throw new Error('response too short for parameterSize');
    parameterSize = raw.readUInt32BE(off);
    off += 4;
    if (raw.length < off + parameterSize) throw new Error('parameterSize runs past the response');
    params = raw.subarray(off, off + parameterSize);
    const r = new Reader(raw, off + parameterSize);
    while (r.remaining > 0) {
      const nonce = Buffer.from(r.bytes(r.u16()));
      const attributes = r.u8();
      const hmac = Buffer.from(r.bytes(r.u16()));
      sessions.push({ nonce, attributes, hmac });
    }
  } else {
    params = raw.subarray(off);
  }
  const result: Response = { ...base, params, sessions, reader: () => new Reader(params) };
  if (handle !== undefined) result.handle = handle;
  if (parameterSize !== undefined) result.parameterSize = parameterSize;
  return result;
}

/**
 * Why a response is not well formed, or null: length ≥ 10, size field = length, tag
 * TPM_ST_NO_SESSIONS/TPM_ST_SESSIONS (TPM_ST_RSP_COMMAND allowed only with TPM_RC_BAD_TAG), and an
 * error response is exactly 10 bytes with a TPM_ST_NO_SESSIONS (or, for BAD_TAG, RSP_COMMAND) tag.
 */
export function responseProblem(raw: Uint8Array): string | null {
  const b = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength);
  if (b.length < HEADER_SIZE) return `length ${b.length} < 10`;
  const tag = b.readUInt16BE(0);
  const size = b.readUInt32BE(2);
  const rc = b.readUInt32BE(6);
  if (size !== b.length) return `size field ${size} != length ${b.length}`;
  const badTagForm = rc === 0x01e && tag === ST.RSP_COMMAND;
  if (tag !== ST.NO_SESSIONS && tag !== ST.SESSIONS && !badTagForm) return `tag 0x${tag.toString(16)}`;
  if (rc !== 0) {
    if (b.length !== HEADER_SIZE) return `error response of ${b.length} bytes`;
    if (tag !== ST.NO_SESSIONS && !badTagForm) return `error response with tag 0x${tag.toString(16)}`;
  }
  return null;
}

/** Decodes the whole parameter area of a successful response with the given fields, in order. */
export function responseParams<F extends Record<string, Codec<any>>>(resp: Response, fields: F): StructOf<F> {
  if (resp.rc !== 0) throw new Error(`response code 0x${resp.rc.toString(16)}: no parameters`);
  return decode(struct(fields), resp.params);
}

/** `0x1c4`-style rendering for assertion messages. */
export function hexRc(rc: number): string {
  return `0x${(rc >>> 0).toString(16).padStart(3, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// PCR selections

/** A TPMS_PCR_SELECTION for one bank; `bytes` is sizeofSelect (PC-Client: 3). */
export function selection(hash: number, pcrs: Iterable<number>, bytes = 3): PcrSelection {
  const select = Buffer.alloc(bytes);
  for (const p of pcrs) select[p >> 3]! |= 1 << (p & 7);
  return { hash, select };
}

/** The PCR indices set in a selection bitmap. */
export function selectedPcrs(select: Uint8Array): number[] {
  const out: number[] = [];
  for (let p = 0; p < select.length * 8; p++) if (select[p >> 3]! & (1 << (p & 7))) out.push(p);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Convenience builders

export function startup(type: number = SU.CLEAR): Buffer {
  return buildCommand({ cc: CC.Startup, params: u16b(type) });
}

export function shutdown(type: number = SU.CLEAR): Buffer {
  return buildCommand({ cc: CC.Shutdown, params: u16b(type) });
}

export function selfTest(fullTest = true): Buffer {
  return buildCommand({ cc: CC.SelfTest, params: enc(yesNo, fullTest) });
}

export function incrementalSelfTest(algs: number[]): Buffer {
  return buildCommand({ cc: CC.IncrementalSelfTest, params: enc(algList, algs) });
}

export function getTestResult(): Buffer {
  return buildCommand({ cc: CC.GetTestResult });
}

export function getRandom(bytesRequested: number): Buffer {
  return buildCommand({ cc: CC.GetRandom, params: u16b(bytesRequested) });
}

export function stirRandom(data: Uint8Array | string): Buffer {
  return buildCommand({ cc: CC.StirRandom, params: tpm2b(data) });
}

export function getCapability(capability: number, property: number, propertyCount: number): Buffer {
  return buildCommand({ cc: CC.GetCapability, params: params(u32b(capability), u32b(property), u32b(propertyCount)) });
}

export function testParms(parms: PublicParms | Uint8Array): Buffer {
  return buildCommand({ cc: CC.TestParms, params: parms instanceof Uint8Array ? Buffer.from(parms) : enc(publicParms, parms) });
}

export function pcrExtend(pcr: number, digests: TaggedHash[], auth: AuthArg = ''): Buffer {
  return buildCommand({ cc: CC.PCR_Extend, handles: [pcr], sessions: [session(auth)], params: enc(digestValues, digests) });
}

export function pcrEvent(pcr: number, data: Uint8Array | string, auth: AuthArg = ''): Buffer {
  return buildCommand({ cc: CC.PCR_Event, handles: [pcr], sessions: [session(auth)], params: tpm2b(data) });
}

export function pcrRead(selections: PcrSelection[]): Buffer {
  return buildCommand({ cc: CC.PCR_Read, params: enc(pcrSelectionList, selections) });
}

export function pcrReset(pcr: number, auth: AuthArg = ''): Buffer {
  return buildCommand({ cc: CC.PCR_Reset, handles: [pcr], sessions: [session(auth)] });
}

export function pcrAllocate(selections: PcrSelection[], auth: AuthArg = '', authHandle: number = RH.PLATFORM): Buffer {
  return buildCommand({
    cc: CC.PCR_Allocate,
    handles: [authHandle],
    sessions: [session(auth)],
    params: enc(pcrSelectionList, selections),
  });
}

export function hash(data: Uint8Array | string, hashAlg: number = ALG.SHA256, hierarchy: number = RH.OWNER): Buffer {
  return buildCommand({ cc: CC.Hash, params: params(tpm2b(data), u16b(hashAlg), u32b(hierarchy)) });
}

export function hashSequenceStart(auth: Uint8Array | string = '', hashAlg: number = ALG.SHA256): Buffer {
  return buildCommand({ cc: CC.HashSequenceStart, params: params(tpm2b(auth), u16b(hashAlg)) });
}

export function sequenceUpdate(handle: number, data: Uint8Array | string, auth: AuthArg = ''): Buffer {
  return buildCommand({ cc: CC.SequenceUpdate, handles: [handle], sessions: [session(auth)], params: tpm2b(data) });
}

export function sequenceComplete(
  handle: number,
  data: Uint8Array | string = '',
  hierarchy: number = RH.OWNER,
  auth: AuthArg = '',
): Buffer {
  return buildCommand({
    cc: CC.SequenceComplete,
    handles: [handle],
    sessions: [session(auth)],
    params: params(tpm2b(data), u32b(hierarchy)),
  });
}

export function eventSequenceComplete(
  pcr: number,
  handle: number,
  data: Uint8Array | string = '',
  pcrAuth: AuthArg = '',
  sequenceAuth: AuthArg = '',
): Buffer {
  return buildCommand({
    cc: CC.EventSequenceComplete,
    handles: [pcr, handle],
    sessions: [session(pcrAuth), session(sequenceAuth)],
    params: tpm2b(data),
  });
}

export function readClock(): Buffer {
  return buildCommand({ cc: CC.ReadClock });
}

export function clockSet(newTime: bigint, auth: AuthArg = '', authHandle: number = RH.OWNER): Buffer {
  return buildCommand({ cc: CC.ClockSet, handles: [authHandle], sessions: [session(auth)], params: enc(u64, newTime) });
}

export function clockRateAdjust(rateAdjust: number, auth: AuthArg = '', authHandle: number = RH.OWNER): Buffer {
  return buildCommand({ cc: CC.ClockRateAdjust, handles: [authHandle], sessions: [session(auth)], params: enc(i8, rateAdjust) });
}

// ---------------------------------------------------------------------------------------------
// Response decoders for the convenience commands

export const parse = {
  pcrRead: (r: Response) =>
    responseParams(r, { pcrUpdateCounter: u32, pcrSelectionOut: pcrSelectionList, pcrValues: digestList }),
  pcrEvent: (r: Response) => responseParams(r, { digests: digestValues }).digests,
  pcrAllocate: (r: Response) =>
    responseParams(r, { allocationSuccess: yesNo, maxPCR: u32, sizeNeeded: u32, sizeAvailable: u32 }),
  getCapability: (r: Response) => responseParams(r, { moreData: yesNo, capabilityData }),
  hash: (r: Response) => responseParams(r, { outHash: digestBuf, validation: hashCheckTicket }),
  sequenceComplete: (r: Response) => responseParams(r, { result: digestBuf, validation: hashCheckTicket }),
  eventSequenceComplete: (r: Response) => responseParams(r, { results: digestValues }).results,
  readClock: (r: Response) => responseParams(r, { currentTime: timeInfo }).currentTime,
  getRandom: (r: Response) => responseParams(r, { randomBytes: digestBuf }).randomBytes,
  incrementalSelfTest: (r: Response) => responseParams(r, { toDoList: algList }).toDoList,
  getTestResult: (r: Response) => responseParams(r, { outData: maxBuffer, testResult: u32 }),
};

