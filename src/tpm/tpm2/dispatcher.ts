import { Reader, Writer } from '../wire/buffer.ts';
import { constantTimeEqual } from '../crypto/hash.ts';
import { CC, RH, ST } from './constants.ts';
import type { CallContext, CommandDef } from './command.ts';
import { RC, TpmError, atHandle, atParameter, atSession } from './rc.ts';
import { PASSWORD_RESPONSE, parseAuthArea, writeAuthResponse, type AuthCommand, type AuthResponse } from './auth/session-area.ts';
import type { Tpm2Engine } from './engine.ts';

export const HEADER_SIZE = 10;

/** A 10-byte error response: tag TPM_ST_NO_SESSIONS, size 10, the code. */
export function errorResponse(rc: number): Buffer {
  const b = Buffer.allocUnsafe(HEADER_SIZE);
  b.writeUInt16BE(ST.NO_SESSIONS, 0);
  b.writeUInt32BE(HEADER_SIZE, 2);
  b.writeUInt32BE(rc >>> 0, 6);
  return b;
}

/** Decodes one field, numbering a failure by its position. */
function decodeAt<T>(decode: () => T, number: (rc: number) => number): T {
  try {
    return decode();
  } catch (e) {
    if (e instanceof TpmError) throw new TpmError(number(e.rc), e.message);
    throw e;
  }
}

/**
 * Executes one command end to end: header, handles, authorization area, parameters, handler,
 * response. Every failure becomes a response code; nothing a client sends can throw out of here.
 */
export function dispatch(tpm: Tpm2Engine, table: ReadonlyMap<number, CommandDef>, command: Buffer, locality: number): Buffer {
  try {
    return execute(tpm, table, command, locality);
  } catch (e) {
    if (e instanceof TpmError) return errorResponse(e.rc);
    tpm.reportInternalError(e);
    return errorResponse(RC.FAILURE);
  }
}

function execute(tpm: Tpm2Engine, table: ReadonlyMap<number, CommandDef>, command: Buffer, locality: number): Buffer {
  if (command.length < HEADER_SIZE) throw new TpmError(RC.INSUFFICIENT);
  const r = new Reader(command);
  const tag = r.u16();
  const size = r.u32();
  const cc = r.u32();
  if (tag !== ST.NO_SESSIONS && tag !== ST.SESSIONS) throw new TpmError(RC.BAD_TAG);
  if (size !== command.length || size > tpm.maxCommandSize) throw new TpmError(RC.COMMAND_SIZE);
  const def = table.get(cc);
  if (!def) throw new TpmError(RC.COMMAND_CODE);
  if (!tpm.started !== (cc === CC.Startup)) throw new TpmError(RC.INITIALIZE);

  const handles: number[] = [];
  for (let i = 0; i < def.handles.length; i++) {
    const spec = def.handles[i]!;
    const h = decodeAt(() => spec.type.decode(r), (rc) => atHandle(rc, i + 1));
    const rc = tpm.checkHandle(h);
    if (rc !== RC.SUCCESS) throw new TpmError(rc === RC.REFERENCE_H0 ? rc + i : atHandle(rc, i + 1));
    handles.push(h);
  }

  const authCount = def.handles.filter((h) => h.auth !== 'none').length;
  let sessions: AuthCommand[] = [];
  if (tag === ST.SESSIONS) {
    sessions = parseAuthArea(r);
  } else if (authCount > 0) {
    throw new TpmError(RC.AUTH_MISSING);
  }
  if (sessions.length < authCount) throw new TpmError(RC.AUTH_MISSING);

  const params: Record<string, unknown> = {};
  let n = 0;
  for (const [key, c] of Object.entries(def.params)) {
    n++;
    const at = n;
    params[key] = decodeAt(() => c.decode(r), (rc) => atParameter(rc, at));
  }
  if (r.remaining !== 0) throw new TpmError(RC.SIZE);

  const authResponses = authorize(tpm, def, handles, sessions);

  const ctx: CallContext = { tpm, locality, handles };
  const result = def.handler(ctx, params as never);
  tpm.afterCommand(def);
  return buildResponse(def, tag, result, authResponses);
}

/** Checks each session against the handle it authorizes and produces its response auth. */
function authorize(tpm: Tpm2Engine, def: CommandDef, handles: number[], sessions: AuthCommand[]): AuthResponse[] {
  const out: AuthResponse[] = [];
  let authIndex = 0;
  for (let i = 0; i < sessions.length; i++) {
    const s = sessions[i]!;
    const number = i + 1;
    // Sessions beyond the authorized handles may only audit or encrypt; those need HMAC sessions.
    while (authIndex < def.handles.length && def.handles[authIndex]!.auth === 'none') authIndex++;
    const handle = authIndex < def.handles.length ? handles[authIndex++] : undefined;
    if (s.handle !== RH.RS_PW) throw new TpmError(RC.REFERENCE_S0 + i);
    if (handle === undefined) throw new TpmError(atSession(RC.AUTH_CONTEXT, number));
    if (s.nonce.length !== 0) throw new TpmError(atSession(RC.NONCE, number));
    if (s.attributes & ~0x01) throw new TpmError(atSession(RC.ATTRIBUTES, number));
    const expected = tpm.authValue(handle);
    if (!constantTimeEqual(expected, s.hmac)) throw new TpmError(atSession(tpm.authFailureCode(handle), number));
    out.push(PASSWORD_RESPONSE);
  }
  return out;
}

function buildResponse(def: CommandDef, tag: number, result: Record<string, unknown>, auths: AuthResponse[]): Buffer {
  const w = new Writer(128);
  w.u16(tag).u32(0).u32(RC.SUCCESS);
  if (def.responseHandle) w.u32(result.handle as number);
  const paramSizeAt = tag === ST.SESSIONS ? w.reserveU32() : -1;
  const start = w.length;
  for (const [key, c] of Object.entries(def.response)) c.encode(w, result[key]);
  if (paramSizeAt >= 0) {
    w.patchU32(paramSizeAt, w.length - start);
    for (const a of auths) writeAuthResponse(w, a);
  }
  w.patchU32(2, w.length);
  return w.finish();
}
