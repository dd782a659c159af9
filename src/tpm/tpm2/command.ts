import type { Codec, Decoded } from '../wire/codec.ts';
import type { Tpm2Engine } from './engine.ts';

/** Which authorization a handle needs (Part 3 "Auth Role"). */
export type AuthRole = 'none' | 'user' | 'admin' | 'dup';

export interface HandleSpec {
  readonly name: string;
  /** The TPMI_ interface the handle must satisfy (decoding failures become TPM_RC_VALUE + Hn…). */
  readonly type: Codec<number>;
  readonly auth: AuthRole;
}

type Fields = Record<string, Codec<any>>;
export type Values<F extends Fields> = { [K in keyof F]: Decoded<F[K]> };

/** What a handler knows of the call beyond its decoded handles and parameters. */
export interface CallContext {
  readonly tpm: Tpm2Engine;
  readonly locality: number;
  readonly handles: readonly number[];
}

/**
 * A TPM 2.0 command as data: its code, handles with their auth roles, parameters and response
 * parameters in wire order. The dispatcher does all parsing, authorization and response
 * assembly; the handler sees decoded values and returns decoded values.
 */
export interface CommandDef<P extends Fields = Fields, R extends Fields = Fields> {
  readonly cc: number;
  readonly name: string;
  readonly handles: readonly HandleSpec[];
  readonly params: P;
  /** A handle returned ahead of the response parameters (CreatePrimary, Load, HashSequenceStart…). */
  readonly responseHandle?: boolean;
  readonly response: R;
  /** The command takes no sessions at all (Startup, FlushContext, ContextSave/Load). */
  readonly noSessions?: boolean;
  /** TPMA_CC: may write NV. */
  readonly nv?: boolean;
  /** TPMA_CC: may flush many objects (Clear, ChangePPS…). */
  readonly extensive?: boolean;
  /** TPMA_CC: the context of the first handle is flushed when the command completes. */
  readonly flushed?: boolean;
  readonly handler: (ctx: CallContext, params: Values<P>) => Values<R> & { handle?: number };
}

export function command<P extends Fields, R extends Fields>(def: CommandDef<P, R>): CommandDef {
  return def as unknown as CommandDef;
}

/** TPMA_CC as GetCapability(TPM_CAP_COMMANDS) reports it. */
export function commandAttributes(def: CommandDef): number {
  let a = def.cc & 0xffff;
  if (def.nv) a |= 1 << 22;
  if (def.extensive) a |= 1 << 23;
  if (def.flushed) a |= 1 << 24;
  a |= (def.handles.length & 0x7) << 25;
  if (def.responseHandle) a |= 1 << 28;
  return a >>> 0;
}
