import { Reader, Writer } from '../wire/buffer.ts';
import { TpmError } from '../tpm2/rc.ts';
import type { Codec } from '../wire/codec.ts';
import { AUTH_IN_SIZE, TAG } from './constants.ts';
import type { Command12Def } from './command.ts';
import { RC, Tpm12Error } from './rc.ts';
import { CallContext, type AuthBlock } from './auth/context.ts';
import { authHmac, commandDigest, responseDigest } from './auth/hmac.ts';
import type { Tpm12Engine } from './engine.ts';

export const HEADER_SIZE = 10;

const RSP_TAG = [TAG.RSP_COMMAND, TAG.RSP_AUTH1_COMMAND, TAG.RSP_AUTH2_COMMAND] as const;

/** A 10-byte error response: TPM_TAG_RSP_COMMAND, size 10, the return code. */
export function errorResponse(rc: number): Buffer {
  const b = Buffer.allocUnsafe(HEADER_SIZE);
  b.writeUInt16BE(TAG.RSP_COMMAND, 0);
  b.writeUInt32BE(HEADER_SIZE, 2);
  b.writeUInt32BE(rc >>> 0, 6);
  return b;
}

export interface Compiled12 {
  readonly def: Command12Def;
  readonly params: readonly [string, Codec<unknown>][];
  readonly response: readonly [string, Codec<unknown>][];
}

export function compileTable(defs: readonly Command12Def[]): ReadonlyMap<number, Compiled12> {
  return new Map(defs.map((def) => [def.ord, { def, params: Object.entries(def.params), response: Object.entries(def.response) }]));
}

/** The return code of a failure inside a decoder: a short structure is TPM_BAD_PARAM_SIZE. */
function rcOf(e: unknown): number | undefined {
  if (e instanceof Tpm12Error) return e.rc;
  if (e instanceof TpmError) return RC.BAD_PARAM_SIZE;
  return undefined;
}

/**
 * Executes one command: header, state checks, parameters, authorization blocks, handler,
 * response with its authorization HMACs. Nothing a client sends can throw out of here.
 */
export function dispatch(tpm: Tpm12Engine, table: ReadonlyMap<number, Compiled12>, command: Buffer, locality: number): Buffer {
  const blocks: AuthBlock[] = [];
  try {
    return execute(tpm, table, command, locality, blocks);
  } catch (e) {
    // A failed command ends the sessions it named (part 1, 13.2: an error terminates the session).
    for (const b of blocks) tpm.sessions.delete(b.handle);
    const rc = rcOf(e);
    if (rc !== undefined) {
      tpm.commitNvIfDirty();
      return errorResponse(rc);
    }
    tpm.reportInternalError(e);
    return errorResponse(RC.FAIL);
  }
}

function decodeParams(compiled: Compiled12, r: Reader): Record<string, unknown> {
  const params: Record<string, unknown> = {};
  for (const [key, c] of compiled.params) params[key] = c.decode(r);
  return params;
}

function execute(tpm: Tpm12Engine, table: ReadonlyMap<number, Compiled12>, command: Buffer, locality: number, blocks: AuthBlock[]): Buffer {
  if (command.length < HEADER_SIZE) throw new Tpm12Error(RC.BAD_PARAM_SIZE);
  const tag = command.readUInt16BE(0);
  const size = command.readUInt32BE(2);
  const ord = command.readUInt32BE(6);
  if (tag !== TAG.RQU_COMMAND && tag !== TAG.RQU_AUTH1_COMMAND && tag !== TAG.RQU_AUTH2_COMMAND) throw new Tpm12Error(RC.BADTAG);
  if (size !== command.length || size > tpm.maxCommandSize) throw new Tpm12Error(RC.BAD_PARAM_SIZE);
  const compiled = table.get(ord);
  if (!compiled) throw new Tpm12Error(RC.BAD_ORDINAL);
  const def = compiled.def;
  tpm.checkState(def);

  const nAuth = tag - TAG.RQU_COMMAND;
  const nHandles = def.handles ?? 0;
  if (!def.auths.includes(nAuth as 0 | 1 | 2)) {
    // Parameters are read before the tag is judged, so a short command is a size error first.
    const r = new Reader(command, HEADER_SIZE);
    for (let i = 0; i < nHandles; i++) r.u32();
    decodeParams(compiled, r);
    throw new Tpm12Error(RC.BADTAG);
  }
  const authStart = command.length - nAuth * AUTH_IN_SIZE;
  if (authStart < HEADER_SIZE) throw new Tpm12Error(RC.BAD_PARAM_SIZE);
  const r = new Reader(command, HEADER_SIZE, authStart);
  const handles: number[] = [];
  for (let i = 0; i < nHandles; i++) handles.push(r.u32());
  const paramStart = r.offset;
  const params = decodeParams(compiled, r);
  if (r.remaining !== 0) throw new Tpm12Error(RC.BAD_PARAM_SIZE);
  const ar = new Reader(command, authStart);
  for (let i = 0; i < nAuth; i++) {
    const handle = ar.u32();
    const nonceOdd = Buffer.from(ar.bytes(20));
    const c = ar.u8();
    const hmac = Buffer.from(ar.bytes(20));
    if (c > 1) throw new Tpm12Error(RC.BAD_PARAMETER);
    blocks.push({ handle, nonceOdd, continueSession: c === 1, hmac });
  }

  const paramDigest = nAuth > 0 ? commandDigest(ord, command.subarray(paramStart, authStart)) : EMPTY;
  const ctx = new CallContext(tpm, locality, ord, handles, paramDigest, blocks);
  const result = def.handler(ctx, params as never);
  for (let i = 0; i < nAuth; i++) if (!ctx.isVerified(i)) throw new Error(`${def.name} did not verify authorization block ${i + 1}`);
  const response = buildResponse(tpm, compiled, ord, nAuth, result, ctx);
  tpm.afterCommand();
  return response;
}

const EMPTY = Buffer.alloc(0);

function buildResponse(tpm: Tpm12Engine, compiled: Compiled12, ord: number, nAuth: number, result: Record<string, unknown>, ctx: CallContext): Buffer {
  const w = new Writer(512);
  w.u16(RSP_TAG[nAuth]!).u32(0).u32(RC.SUCCESS);
  if (compiled.def.responseHandle) w.u32(result.handle as number);
  const start = w.length;
  for (const [key, c] of compiled.response) c.encode(w, result[key]);
  if (nAuth > 0) {
    const digest = responseDigest(RC.SUCCESS, ord, w.view(start));
    for (let i = 0; i < nAuth; i++) {
      const v = ctx.verification(i)!;
      const b = ctx.blocks[i]!;
      const nonceEven = tpm.random.bytes(20);
      w.bytes(nonceEven).u8(b.continueSession ? 1 : 0).bytes(authHmac(v.key, digest, nonceEven, b.nonceOdd, b.continueSession));
      if (b.continueSession && tpm.sessions.get(b.handle) === v.session) v.session.nonceEven = nonceEven;
      else tpm.sessions.delete(b.handle);
    }
  }
  w.patchU32(2, w.length);
  return Buffer.from(w.finish());
}
