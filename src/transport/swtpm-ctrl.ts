/**
 * The swtpm control channel (server side): big-endian u32 command code, then the request part of
 * the matching ptm_* struct from <swtpm/tpm_ioctl.h>; the reply is the struct's response part,
 * which always starts with a u32 result. Layouts and result codes mirror swtpm 0.7, checked
 * against a running swtpm 0.7.1.
 *
 * swtpm reads a control request with one read() and a 500 ms deadline. We frame by command code
 * instead (each request has a known length), so requests split over several TCP segments work,
 * and an idle half-sent request only stalls its own connection.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { SocketReader, writeFully } from './socket-io.ts';
import type { SwtpmTpm } from './swtpm-tpm.ts';
import { TruncatedFrameError } from './errors.ts';

export const CtrlCmd = {
  GET_CAPABILITY: 0x01,
  INIT: 0x02,
  SHUTDOWN: 0x03,
  GET_TPMESTABLISHED: 0x04,
  SET_LOCALITY: 0x05,
  HASH_START: 0x06,
  HASH_DATA: 0x07,
  HASH_END: 0x08,
  CANCEL_TPM_CMD: 0x09,
  STORE_VOLATILE: 0x0a,
  RESET_TPMESTABLISHED: 0x0b,
  GET_STATEBLOB: 0x0c,
  SET_STATEBLOB: 0x0d,
  STOP: 0x0e,
  GET_CONFIG: 0x0f,
  SET_DATAFD: 0x10,
  SET_BUFFERSIZE: 0x11,
  GET_INFO: 0x12,
} as const;

/** TPM 1.2 result codes, which swtpm uses on its control channel for both TPM families. */
export const PtmResult = {
  SUCCESS: 0x00,
  BAD_PARAMETER: 0x03,
  FAIL: 0x09,
  /** swtpm's answer to a command it does not know, or that needs a running TPM when it is not. */
  BAD_ORDINAL: 0x0a,
  BAD_LOCALITY: 0x3d,
} as const;

export const PtmCap = {
  INIT: 1 << 0,
  SHUTDOWN: 1 << 1,
  GET_TPMESTABLISHED: 1 << 2,
  SET_LOCALITY: 1 << 3,
  HASHING: 1 << 4,
  CANCEL_TPM_CMD: 1 << 5,
  STORE_VOLATILE: 1 << 6,
  RESET_TPMESTABLISHED: 1 << 7,
  GET_STATEBLOB: 1 << 8,
  SET_STATEBLOB: 1 << 9,
  STOP: 1 << 10,
  GET_CONFIG: 1 << 11,
  SET_DATAFD: 1 << 12,
  SET_BUFFERSIZE: 1 << 13,
  GET_INFO: 1 << 14,
  SEND_COMMAND_HEADER: 1 << 15,
} as const;

/**
 * What we implement. Clients such as QEMU consult this before using a command, so hashing,
 * state blobs and descriptor passing stay unadvertised until they exist.
 */
export const SUPPORTED_CAPS =
  PtmCap.INIT |
  PtmCap.SHUTDOWN |
  PtmCap.GET_TPMESTABLISHED |
  PtmCap.SET_LOCALITY |
  PtmCap.CANCEL_TPM_CMD |
  PtmCap.STORE_VOLATILE |
  PtmCap.RESET_TPMESTABLISHED |
  PtmCap.STOP |
  PtmCap.GET_CONFIG |
  PtmCap.SET_BUFFERSIZE |
  PtmCap.GET_INFO;

const SWTPM_INFO_TPMSPECIFICATION = 1n;
const SWTPM_INFO_TPMATTRIBUTES = 2n;
const PTM_GETINFO_SIZE = 3 * 1024;

/** Answers to CMD_GET_INFO beyond the family, which the device interface does not expose. */
export interface SwtpmInfo {
  specLevel?: number;
  specRevision?: number;
  manufacturer?: string;
  version?: string;
  model?: string;
}

export interface ControlContext {
  tpm: SwtpmTpm;
  info: SwtpmInfo;
  logger: Logger;
  /** Called after CMD_SHUTDOWN has been answered: the whole server must stop. */
  shutdown(): void;
}

/**
 * Request body length after the command code, for the commands whose length is fixed.
 * CMD_HASH_DATA and CMD_SET_STATEBLOB carry caller-sized payloads and unknown codes have no known
 * length at all; those are answered and the connection closed, since we cannot find where the
 * next request starts.
 */
const FIXED_BODY: ReadonlyMap<number, number> = new Map([
  [CtrlCmd.GET_CAPABILITY, 0],
  [CtrlCmd.INIT, 4], // u32 init_flags
  [CtrlCmd.SHUTDOWN, 0],
  [CtrlCmd.GET_TPMESTABLISHED, 0],
  [CtrlCmd.SET_LOCALITY, 1], // u8 loc
  [CtrlCmd.HASH_START, 0],
  [CtrlCmd.HASH_END, 0],
  [CtrlCmd.CANCEL_TPM_CMD, 0],
  [CtrlCmd.STORE_VOLATILE, 0],
  [CtrlCmd.RESET_TPMESTABLISHED, 1], // u8 loc
  [CtrlCmd.GET_STATEBLOB, 12], // u32 state_flags, u32 type, u32 offset
  [CtrlCmd.STOP, 0],
  [CtrlCmd.GET_CONFIG, 0],
  [CtrlCmd.SET_DATAFD, 0], // the descriptor itself travels as SCM_RIGHTS ancillary data
  [CtrlCmd.SET_BUFFERSIZE, 4], // u32 buffersize
  [CtrlCmd.GET_INFO, 16], // u64 flags, u32 offset, u32 pad
]);

interface Outcome {
  reply: Buffer;
  /** 'close': the stream cannot be resynchronised. 'shutdown': stop the server. */
  after?: 'close' | 'shutdown';
}

export async function serveControlConnection(socket: Socket, ctx: ControlContext): Promise<void> {
  const reader = new SocketReader(socket, 4096);
  try {
    for (;;) {
      const head = await reader.read(4);
      if (head === null) return;
      const code = head.readUInt32BE(0);
      const bodyLength = FIXED_BODY.get(code);
      const outcome =
        bodyLength === undefined ? unframeable(code, ctx) : await handle(code, await reader.readRest(bodyLength, 4), ctx);
      await writeFully(socket, outcome.reply);
      if (outcome.after !== undefined) {
        socket.end();
        if (outcome.after === 'shutdown') ctx.shutdown();
        return;
      }
    }
  } catch (err) {
    if (err instanceof TruncatedFrameError) ctx.logger.warn({ err }, 'control client left mid-request');
    else ctx.logger.debug({ err }, 'control connection failed');
  } finally {
    if (!socket.writableEnded) socket.destroy();
  }
}

function unframeable(code: number, ctx: ControlContext): Outcome {
  const known = code === CtrlCmd.HASH_DATA || code === CtrlCmd.SET_STATEBLOB;
  ctx.logger.warn({ code }, known ? 'unsupported control command; answered and closed' : 'unknown control command; answered and closed');
  return { reply: result(PtmResult.BAD_ORDINAL), after: 'close' };
}

async function handle(code: number, body: Buffer, ctx: ControlContext): Promise<Outcome> {
  const { tpm } = ctx;
  switch (code) {
    case CtrlCmd.GET_CAPABILITY: {
      // ptm_cap is a u64; big-endian, the first four bytes read as a zero result code.
      const reply = Buffer.alloc(8);
      reply.writeUInt32BE(SUPPORTED_CAPS, 4);
      return { reply };
    }
    case CtrlCmd.INIT:
      // PTM_INIT_FLAG_DELETE_VOLATILE asks to drop a saved volatile-state file; our devices keep
      // none apart from their state, so the flag changes nothing.
      return { reply: result((await tpm.init()) ? PtmResult.SUCCESS : PtmResult.FAIL) };
    case CtrlCmd.SHUTDOWN:
      return { reply: result((await tpm.stop()) ? PtmResult.SUCCESS : PtmResult.FAIL), after: 'shutdown' };
    case CtrlCmd.STOP:
      return { reply: result((await tpm.stop()) ? PtmResult.SUCCESS : PtmResult.FAIL) };
    case CtrlCmd.SET_LOCALITY:
      return { reply: result(tpm.setLocality(body[0]!) ? PtmResult.SUCCESS : PtmResult.BAD_LOCALITY) };
    case CtrlCmd.GET_CONFIG:
      // u32 result, u32 flags: no state-file key, no migration key.
      return { reply: Buffer.alloc(8) };
    case CtrlCmd.SET_BUFFERSIZE:
      return { reply: setBufferSize(body.readUInt32BE(0), ctx) };
    case CtrlCmd.GET_INFO:
      return { reply: getInfo(body.readBigUInt64BE(0), body.readUInt32BE(8), ctx) };
    case CtrlCmd.GET_STATEBLOB: {
      // Error replies still carry the ptm_getstate response header (result, flags, totlength, length).
      const reply = Buffer.alloc(16);
      reply.writeUInt32BE(PtmResult.BAD_ORDINAL, 0);
      return { reply };
    }
    case CtrlCmd.SET_DATAFD:
      return { reply: result(PtmResult.BAD_ORDINAL) };
  }
  // The rest need a running TPM; swtpm answers BAD_ORDINAL otherwise.
  if (!tpm.running) return { reply: result(PtmResult.BAD_ORDINAL) };
  switch (code) {
    case CtrlCmd.GET_TPMESTABLISHED: {
      // ptm_est's response is padded to 8 bytes: u32 result, u8 bit, 3 zero bytes.
      const reply = Buffer.alloc(8);
      reply[4] = tpm.device.established ? 1 : 0;
      return { reply };
    }
    case CtrlCmd.RESET_TPMESTABLISHED: {
      const locality = body[0]!;
      if (locality > 4) return { reply: result(PtmResult.BAD_LOCALITY) };
      const done = await tpm.resetEstablished(locality);
      return { reply: result(done ? PtmResult.SUCCESS : PtmResult.BAD_LOCALITY) };
    }
    case CtrlCmd.CANCEL_TPM_CMD:
      // The device offers no cancellation; a command may always run to completion instead of
      // being cancelled, so acknowledging is truthful.
      return { reply: result(PtmResult.SUCCESS) };
    case CtrlCmd.STORE_VOLATILE:
      return { reply: result((await tpm.storeVolatile()) ? PtmResult.SUCCESS : PtmResult.FAIL) };
    default:
      // CMD_HASH_START / CMD_HASH_END: no D-RTM hashing on this device.
      return { reply: result(PtmResult.BAD_ORDINAL) };
  }
}

function setBufferSize(requested: number, ctx: ControlContext): Buffer {
  // Setting (not querying) is only allowed while the TPM is stopped, as in swtpm.
  if (requested > 0 && ctx.tpm.running) return result(PtmResult.BAD_ORDINAL);
  // The device's buffer is fixed, and the protocol lets us answer with the size really used.
  const size = ctx.tpm.device.maxCommandSize;
  const reply = Buffer.alloc(16);
  reply.writeUInt32BE(size, 4); // buffersize
  reply.writeUInt32BE(size, 8); // minsize
  reply.writeUInt32BE(size, 12); // maxsize
  return reply;
}

function getInfo(flags: bigint, offset: number, ctx: ControlContext): Buffer {
  const text = Buffer.from(infoJson(flags, ctx) + '\0', 'utf8');
  const textLength = text.length - 1;
  if (offset >= textLength) return result(PtmResult.BAD_PARAMETER);
  const chunk = text.subarray(offset, offset + PTM_GETINFO_SIZE);
  const header = Buffer.alloc(12);
  header.writeUInt32BE(text.length, 4); // totlength, including the NUL
  header.writeUInt32BE(chunk.length, 8);
  return Buffer.concat([header, chunk]);
}

/** Same JSON shape as libtpms' TPMLIB_GetInfo; only facts we know are included. */
function infoJson(flags: bigint, ctx: ControlContext): string {
  const { info } = ctx;
  const parts: string[] = [];
  if (flags & SWTPM_INFO_TPMSPECIFICATION) {
    const spec: Record<string, string | number> = { family: ctx.tpm.device.family === 'tpm2' ? '2.0' : '1.2' };
    if (info.specLevel !== undefined) spec['level'] = info.specLevel;
    if (info.specRevision !== undefined) spec['revision'] = info.specRevision;
    parts.push(`"TPMSpecification":${JSON.stringify(spec)}`);
  }
  if (flags & SWTPM_INFO_TPMATTRIBUTES) {
    const attributes: Record<string, string> = {};
    if (info.manufacturer !== undefined) attributes['manufacturer'] = info.manufacturer;
    if (info.version !== undefined) attributes['version'] = info.version;
    attributes['model'] = info.model ?? 'vtpmd';
    parts.push(`"TPMAttributes":${JSON.stringify(attributes)}`);
  }
  return `{${parts.join(',')}}`;
}

function result(code: number): Buffer {
  const reply = Buffer.alloc(4);
  reply.writeUInt32BE(code, 0);
  return reply;
}
