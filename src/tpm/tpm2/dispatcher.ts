import { Reader } from '../wire/buffer.ts';
import { CC, RH, ST } from './constants.ts';
import type { CallContext, CommandDef } from './command.ts';
import type { Codec } from '../wire/codec.ts';
import { RC, TpmError, atHandle, atParameter } from './rc.ts';
import { parseAuthArea, writeAuthResponse, type AuthCommand, type AuthResponse } from './auth/session-area.ts';
import { beginCommandAudit, cpHashOf, endCommandAudit, endExclusiveAudit, type PendingAudit } from './audit.ts';
import { checkAuthorizations, decryptParameters, finishSessions, planSessions, type SessionPlan } from './auth/authorize.ts';
import type { Tpm2Engine } from './engine.ts';
import { ExternalOperationNeeded } from './hardware-keys.ts';

export const HEADER_SIZE = 10;

/** A 10-byte error response: tag TPM_ST_NO_SESSIONS, size 10, the code. */
export function errorResponse(rc: number): Buffer {
  const b = Buffer.allocUnsafe(HEADER_SIZE);
  // A command whose tag is not a TPM 2.0 tag may be a TPM 1.2 command: answer in 1.2's framing.
  b.writeUInt16BE(rc === RC.BAD_TAG ? ST.RSP_COMMAND : ST.NO_SESSIONS, 0);
  b.writeUInt32BE(HEADER_SIZE, 2);
  b.writeUInt32BE(rc >>> 0, 6);
  return b;
}

/** A command definition with its per-call lookups done once, when the table is built. */
export interface CompiledCommand {
  readonly def: CommandDef;
  readonly params: readonly [string, Codec<unknown>][];
  readonly response: readonly [string, Codec<unknown>][];
  /** Indices of the handles that need an authorization session, in order. */
  readonly authHandles: readonly number[];
  /** Whether the first parameter / response parameter is a TPM2B (session encryption applies). */
  readonly firstParamSized: boolean;
  readonly firstResponseSized: boolean;
}

export function compileTable(defs: readonly CommandDef[]): ReadonlyMap<number, CompiledCommand> {
  return new Map(
    defs.map((def) => [
      def.cc,
      {
        def,
        params: Object.entries(def.params),
        response: Object.entries(def.response),
        authHandles: def.handles.flatMap((h, i) => (h.auth === 'none' ? [] : [i])),
        firstParamSized: Object.values(def.params)[0]?.sized === true,
        firstResponseSized: Object.values(def.response)[0]?.sized === true,
      },
    ]),
  );
}

/**
 * Executes one command end to end: header, handles, authorization area, parameters, handler,
 * response. Every failure becomes a response code; nothing a client sends can throw out of here.
 */
export function dispatch(tpm: Tpm2Engine, table: ReadonlyMap<number, CompiledCommand>, command: Buffer, locality: number): Buffer {
  try {
    return execute(tpm, table, command, locality);
  } catch (e) {
    if (e instanceof TpmError) {
      // A failed command changes nothing, except what must outlive it: a counted auth failure.
      tpm.commitNvIfDirty();
      return errorResponse(e.rc);
    }
    // Not a failure: the device model fetches what the chip must do and runs the command again.
    if (e instanceof ExternalOperationNeeded) throw e;
    tpm.reportInternalError(e);
    return errorResponse(RC.FAILURE);
  }
}

function numbered(e: unknown, number: (rc: number) => number): unknown {
  return e instanceof TpmError ? new TpmError(number(e.rc), e.message) : e;
}

function execute(tpm: Tpm2Engine, table: ReadonlyMap<number, CompiledCommand>, command: Buffer, locality: number): Buffer {
  if (command.length >= 6) {
    const tag = command.readUInt16BE(0);
    if (tag !== ST.NO_SESSIONS && tag !== ST.SESSIONS) throw new TpmError(RC.BAD_TAG);
    const size = command.readUInt32BE(2);
    if (size !== command.length || size > tpm.maxCommandSize) throw new TpmError(RC.COMMAND_SIZE);
  }
  if (command.length < HEADER_SIZE) throw new TpmError(RC.INSUFFICIENT);
  const r = new Reader(command);
  const tag = r.u16();
  r.u32();
  const cc = r.u32();
  const compiled = table.get(cc);
  if (!compiled) throw new TpmError(RC.COMMAND_CODE);
  if (!tpm.started !== (cc === CC.Startup)) throw new TpmError(RC.INITIALIZE);
  const def = compiled.def;

  const handles: number[] = [];
  for (let i = 0; i < def.handles.length; i++) {
    let h: number;
    try {
      h = def.handles[i]!.type.decode(r);
    } catch (e) {
      throw numbered(e, (rc) => atHandle(rc, i + 1));
    }
    const rc = tpm.checkHandle(h);
    if (rc !== RC.SUCCESS) throw new TpmError(rc === RC.REFERENCE_H0 ? rc + i : atHandle(rc, i + 1));
    handles.push(h);
  }

  let sessions: AuthCommand[] = NO_SESSIONS;
  if (tag === ST.SESSIONS) {
    if (def.noSessions) throw new TpmError(RC.AUTH_CONTEXT);
    sessions = parseAuthArea(r);
  }
  if (sessions.length < compiled.authHandles.length) throw new TpmError(RC.AUTH_MISSING);
  const plan = sessions.length
    ? planSessions(tpm, sessions, compiled.authHandles, handles, compiled.firstParamSized, compiled.firstResponseSized)
    : undefined;

  // The parameter area as sent; a view is made only for those who read it (HMACs, decryption, audit).
  const cpBuffer = needsParameterArea(tpm, cc, sessions) ? command.subarray(r.offset) : EMPTY;
  const paramBytes = plan?.decrypt !== undefined ? decryptParameters(tpm, plan, cpBuffer) : cpBuffer;
  const pr = paramBytes === cpBuffer ? r : new Reader(paramBytes);
  const params: Record<string, unknown> = {};
  for (let i = 0; i < compiled.params.length; i++) {
    const [key, c] = compiled.params[i]!;
    try {
      params[key] = c.decode(pr);
    } catch (e) {
      throw numbered(e, (rc) => atParameter(rc, i + 1));
    }
  }
  if (pr.remaining !== 0) throw new TpmError(RC.SIZE);

  if (plan) {
    checkAuthorizations(tpm, plan, cc, handles, cpBuffer, locality);
    if (plan.audit !== undefined) plan.auditCpHash = cpHashOf(tpm, plan.slots[plan.audit]!.session!.authHash, cc, handles, cpBuffer);
  }

  const audit = beginCommandAudit(tpm, cc, handles, cpBuffer);
  const ctx: CallContext = { tpm, locality, handles };
  const result = def.handler(ctx, params as never);
  const response = buildResponse(tpm, compiled, tag, result, plan, audit);
  // A command the exclusive audit session did not audit ends its exclusivity (finishSessions
  // sees to it for commands with sessions).
  if (!plan) endExclusiveAudit(tpm);
  // After the response is final, so the audit counter's NV change commits with this command.
  tpm.afterCommand(def);
  return response;
}

const NO_SESSIONS: AuthCommand[] = [];
const EMPTY = Buffer.alloc(0);

function needsParameterArea(tpm: Tpm2Engine, cc: number, sessions: AuthCommand[]): boolean {
  for (let i = 0; i < sessions.length; i++) if (sessions[i]!.handle !== RH.RS_PW) return true;
  return tpm.audit.commands.has(cc);
}
const NO_RESPONSES: AuthResponse[] = [];

function buildResponse(
  tpm: Tpm2Engine,
  compiled: CompiledCommand,
  tag: number,
  result: Record<string, unknown>,
  plan: SessionPlan | undefined,
  audit: PendingAudit | undefined,
): Buffer {
  // One scratch writer per engine: the response is assembled there and copied out once.
  const w = tpm.responseWriter;
  w.reset();
  w.u16(tag).u32(0).u32(RC.SUCCESS);
  if (compiled.def.responseHandle) w.u32(result.handle as number);
  const paramSizeAt = tag === ST.SESSIONS ? w.reserveU32() : -1;
  const start = w.length;
  for (let i = 0; i < compiled.response.length; i++) {
    const [key, c] = compiled.response[i]!;
    c.encode(w, result[key]);
  }
  const auditing = audit !== undefined || tpm.audit.algorithmChanged;
  if (paramSizeAt >= 0) {
    w.patchU32(paramSizeAt, w.length - start);
    const rpBuffer = w.view(start);
    const auths = plan ? finishSessions(tpm, plan, compiled.def.cc, rpBuffer) : NO_RESPONSES;
    if (auditing) endCommandAudit(tpm, audit, rpBuffer);
    for (const a of auths) writeAuthResponse(w, a);
  } else if (auditing) {
    endCommandAudit(tpm, audit, w.view(start));
  }
  w.patchU32(2, w.length);
  return w.copyOut();
}
