import type { Codec, Decoded } from '../wire/codec.ts';
import type { CallContext } from './auth/context.ts';

type Fields = Record<string, Codec<any>>;
export type Values<F extends Fields> = { [K in keyof F]: Decoded<F[K]> };

/**
 * A TPM 1.2 command as data: its ordinal, the tags (numbers of authorization blocks) it accepts,
 * how many key handles precede its parameters (handles are not covered by the authorization
 * HMAC), its parameters and response parameters in wire order, and where it may run.
 */
export interface Command12Def<P extends Fields = Fields, R extends Fields = Fields> {
  readonly ord: number;
  readonly name: string;
  /** Accepted numbers of authorization blocks: 0 (RQU_COMMAND), 1 (AUTH1), 2 (AUTH2). */
  readonly auths: readonly (0 | 1 | 2)[];
  readonly handles?: number;
  readonly params: P;
  readonly response: R;
  /** A handle returned ahead of the response parameters, outside the response HMAC (LoadKey2). */
  readonly responseHandle?: boolean;
  /** May run before TPM_Startup (TPM_Startup itself, TSC_PhysicalPresence). */
  readonly preStartup?: boolean;
  /** May run while the TPM is disabled / deactivated. */
  readonly whenDisabled?: boolean;
  readonly whenDeactivated?: boolean;
  readonly handler: (ctx: CallContext, params: Values<P>) => Values<R> & { handle?: number };
}

export function command<P extends Fields, R extends Fields>(def: Command12Def<P, R>): Command12Def {
  return def as unknown as Command12Def;
}
