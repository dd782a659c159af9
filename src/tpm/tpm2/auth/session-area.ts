import type { Reader, Writer } from '../../wire/buffer.ts';
import { MAX_DIGEST_SIZE } from '../../crypto/hash.ts';
import { HT, RH, SESSION_ATTR } from '../constants.ts';
import { RC, TpmError, atSession } from '../rc.ts';

/** One TPMS_AUTH_COMMAND from a command's authorization area. */
export interface AuthCommand {
  handle: number;
  nonce: Buffer;
  attributes: number;
  hmac: Buffer;
}

/** One TPMS_AUTH_RESPONSE. */
export interface AuthResponse {
  nonce: Buffer;
  attributes: number;
  hmac: Buffer;
}

export const MAX_SESSIONS_PER_COMMAND = 3;
/** Smallest TPMS_AUTH_COMMAND: handle, two empty TPM2Bs and the attributes byte. */
const MIN_AUTH_COMMAND = 4 + 2 + 1 + 2;
const RESERVED_SESSION_BITS = 0x18;

function isSessionHandle(h: number): boolean {
  if (h === RH.RS_PW) return true;
  const ht = h >>> 24;
  return ht === HT.HMAC_SESSION || ht === HT.POLICY_SESSION;
}

const EMPTY = Buffer.alloc(0);

/** A TPM2B as a view into the command: session values are consumed before the command returns. */
function sized(r: Reader, max: number): Buffer {
  const n = r.u16();
  if (n > max) throw new TpmError(RC.SIZE);
  return n === 0 ? EMPTY : r.bytes(n);
}

/**
 * Parses the authorization area (authorizationSize and the sessions it holds). Errors carry the
 * session number; a size that does not add up is TPM_RC_AUTHSIZE.
 */
export function parseAuthArea(r: Reader): AuthCommand[] {
  const size = r.u32();
  if (size < MIN_AUTH_COMMAND || size > r.remaining) throw new TpmError(RC.AUTHSIZE);
  const area = r.sub(size);
  const out: AuthCommand[] = [];
  while (area.remaining > 0) {
    const n = out.length + 1;
    if (n > MAX_SESSIONS_PER_COMMAND) throw new TpmError(RC.AUTHSIZE);
    try {
      const handle = area.u32();
      if (!isSessionHandle(handle)) throw new TpmError(RC.VALUE);
      const nonce = sized(area, MAX_DIGEST_SIZE);
      const attributes = area.u8();
      if (attributes & RESERVED_SESSION_BITS) throw new TpmError(RC.RESERVED_BITS);
      const hmac = sized(area, MAX_DIGEST_SIZE);
      out.push({ handle, nonce, attributes, hmac });
    } catch (e) {
      if (e instanceof TpmError) {
        if (e.rc === RC.INSUFFICIENT) throw new TpmError(RC.AUTHSIZE);
        throw new TpmError(atSession(e.rc, n));
      }
      throw e;
    }
  }
  return out;
}

export function writeAuthResponse(w: Writer, a: AuthResponse): void {
  w.u16(a.nonce.length).bytes(a.nonce).u8(a.attributes).u16(a.hmac.length).bytes(a.hmac);
}

/** The response a password session gets: empty nonce and HMAC, continueSession set. */
export const PASSWORD_RESPONSE: AuthResponse = {
  nonce: Buffer.alloc(0),
  attributes: SESSION_ATTR.continueSession,
  hmac: Buffer.alloc(0),
};
