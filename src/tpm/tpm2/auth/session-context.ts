import { RH } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { openContext, sealContext } from '../objects/context-blob.ts';
import type { Context } from '../types/context.ts';

/**
 * Session contexts. A saved session leaves its slot but stays active: its handle is reserved
 * and only the context with the latest sequence number may bring it back, once — an older or
 * replayed blob is refused, as is any blob after a TPM Reset (the epoch is the reset count).
 * The session's state is parked in the engine and the blob carries an authenticated reference.
 */
export function saveSessionContext(tpm: Tpm2Engine, handle: number): Context {
  const session = tpm.sessions.get(handle);
  if (!session) throw TpmError.handle(RC.HANDLE, 1);
  const sequence = tpm.nextContextSequence();
  const plain = Buffer.alloc(8);
  plain.writeBigUInt64BE(sequence);
  const contextBlob = sealContext(tpm.proofOf(RH.NULL), sequence, handle, RH.NULL, tpm.nv.resetCount, plain);
  tpm.sessions.remove(handle);
  tpm.savedSessions.set(handle, { sequence, session });
  return { sequence, savedHandle: handle, hierarchy: RH.NULL, contextBlob };
}

export function loadSessionContext(tpm: Tpm2Engine, c: Context): number {
  const saved = tpm.savedSessions.get(c.savedHandle);
  if (!saved) throw TpmError.parameter(RC.HANDLE, 1);
  let plain: Buffer;
  try {
    plain = openContext(tpm.proofOf(RH.NULL), c.sequence, c.savedHandle, RH.NULL, tpm.nv.resetCount, c.contextBlob);
  } catch {
    throw TpmError.parameter(RC.INTEGRITY, 1);
  }
  if (plain.length !== 8 || plain.readBigUInt64BE(0) !== saved.sequence || c.sequence !== saved.sequence) {
    throw TpmError.parameter(RC.INTEGRITY, 1);
  }
  tpm.sessions.restore(saved.session);
  tpm.savedSessions.delete(c.savedHandle);
  return c.savedHandle;
}
