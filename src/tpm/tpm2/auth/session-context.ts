import { RH } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { openContext, sealContext } from '../objects/context-blob.ts';
import type { Context } from '../types/context.ts';
import type { Session } from './sessions.ts';
import { decodeSession, encodeSession } from './session-codec.ts';

/**
 * Session contexts. A saved session leaves its slot but stays active: its handle is reserved
 * and only the context with the latest sequence number may bring it back, once — an older or
 * replayed blob is refused, as is any blob after a TPM Reset (the epoch is the reset count).
 * The session's state travels in the blob, encrypted and authenticated under the null proof;
 * the TPM keeps the saved handle and its latest sequence number, which survive TPM Resume and
 * Restart (Tpm2Engine.shutdown) and a vTPM's host process restarting (running-state.ts).
 */
export function saveSessionContext(tpm: Tpm2Engine, handle: number): Context {
  const session = tpm.sessions.get(handle);
  if (!session) throw TpmError.handle(RC.HANDLE, 1);
  const sequence = tpm.nextContextSequence();
  const plain = encodeSession(session, tpm.timeBase());
  const contextBlob = sealContext(tpm.proofOf(RH.NULL), sequence, handle, RH.NULL, tpm.nv.resetCount, plain);
  tpm.sessions.remove(handle);
  tpm.savedSessions.set(handle, sequence);
  return { sequence, savedHandle: handle, hierarchy: RH.NULL, contextBlob };
}

export function loadSessionContext(tpm: Tpm2Engine, c: Context): number {
  const sequence = tpm.savedSessions.get(c.savedHandle);
  if (sequence === undefined) throw TpmError.parameter(RC.HANDLE, 1);
  if (c.sequence !== sequence) throw TpmError.parameter(RC.INTEGRITY, 1);
  let session: Session;
  try {
    session = decodeSession(openContext(tpm.proofOf(RH.NULL), c.sequence, c.savedHandle, RH.NULL, tpm.nv.resetCount, c.contextBlob), tpm.timeBase());
  } catch {
    throw TpmError.parameter(RC.INTEGRITY, 1);
  }
  if (session.handle !== c.savedHandle) throw TpmError.parameter(RC.INTEGRITY, 1);
  tpm.sessions.restore(session);
  tpm.savedSessions.delete(c.savedHandle);
  return c.savedHandle;
}
