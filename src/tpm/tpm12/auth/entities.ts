import { ET, KH } from '../constants.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { needsAuth, type KeyObject12 } from '../state/key-object.ts';
import type { CallContext } from './context.ts';

/** Passed as a block index where the command carries no authorization for the entity. */
export const NO_BLOCK = -1;

/** Verifies block i as the TPM Owner's authorization; without an owner, TPM_NOSRK. */
export function verifyOwner(ctx: CallContext, i: number, opts: { osapOnly?: boolean } = {}): Buffer {
  const owner = ctx.tpm.nv.owner;
  if (!owner) throw new Tpm12Error(RC.NOSRK);
  ctx.verify(i, owner.ownerAuth, { types: [ET.OWNER] }, opts);
  return owner.ownerAuth;
}

/** The OSAP entity types that may stand for a key handle. */
export function keyEntity(handle: number) {
  return handle === KH.SRK ? { types: [ET.SRK, ET.KEYHANDLE], value: handle } : { types: [ET.KEYHANDLE], value: handle };
}

/**
 * Authorizes use of a key by block i if the command carries it; a key whose authDataUsage is not
 * TPM_AUTH_NEVER must be authorized (TPM_AUTHFAIL otherwise).
 */
export function authorizeKey(ctx: CallContext, i: number, handle: number, k: KeyObject12, opts: { osapOnly?: boolean } = {}): void {
  if (i !== NO_BLOCK && i < ctx.authCount) {
    ctx.verify(i, k.usageAuth, keyEntity(handle), opts);
    return;
  }
  if (needsAuth(k)) throw new Tpm12Error(RC.AUTHFAIL);
}
