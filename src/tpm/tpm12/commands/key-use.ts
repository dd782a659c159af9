import { AUTH_USAGE, KEY_FLAG, KEY_USAGE } from '../constants.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { authorizeKey } from '../auth/entities.ts';
import type { CallContext } from '../auth/context.ts';
import { checkSchemes, rsaParmsOf, type KeyObject12 } from '../state/key-object.ts';
import { checkBinding, parsePcrInfo } from '../state/pcr-binding.ts';
import type { Key } from '../structures/key.ts';

/** Authorizes use of a loaded key by block i (if the command carries one) and checks its PCR binding. */
export function useKey(ctx: CallContext, i: number, handle: number): KeyObject12 {
  const k = ctx.tpm.key(handle);
  authorizeKey(ctx, i, handle, k);
  checkBinding(parsePcrInfo(k.pcrInfo, k.key12), ctx.tpm.pcrs, ctx.locality);
  return k;
}

/** Checks a key description a caller supplies (CreateWrapKey template, LoadKey2 blob). */
export function checkKeyDescription(k: Key, opts: { allowIdentity: boolean }): { keyLength: number; exponent: number } {
  if (k.keyUsage === KEY_USAGE.IDENTITY && !opts.allowIdentity) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
  if (k.keyUsage === KEY_USAGE.AUTHCHANGE || k.keyUsage === KEY_USAGE.MIGRATE) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
  checkSchemes(k.keyUsage, k.algorithmParms.encScheme, k.algorithmParms.sigScheme);
  const rp = rsaParmsOf(k.algorithmParms);
  if (![512, 1024, 2048].includes(rp.keyLength)) throw new Tpm12Error(RC.BAD_KEY_PROPERTY);
  if (k.keyUsage === KEY_USAGE.STORAGE && rp.keyLength !== 2048) throw new Tpm12Error(RC.BAD_KEY_PROPERTY);
  if (k.authDataUsage !== AUTH_USAGE.NEVER && k.authDataUsage !== AUTH_USAGE.ALWAYS && k.authDataUsage !== AUTH_USAGE.PRIV_USE_ONLY) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
  if ((k.keyFlags & ~(KEY_FLAG.MIGRATABLE | KEY_FLAG.IS_VOLATILE | KEY_FLAG.PCR_IGNORED_ON_READ)) !== 0) throw new Tpm12Error(RC.BAD_KEY_PROPERTY);
  if (k.pcrInfo.length) parsePcrInfo(k.pcrInfo, k.key12);
  return rp;
}
