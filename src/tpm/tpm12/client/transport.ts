import { Reader, Writer } from '../../wire/buffer.ts';
import { constantTimeEqual } from '../../crypto/hash.ts';
import { AUTH_OUT_SIZE, TAG } from '../constants.ts';
import { authHmac, commandDigest, responseDigest } from '../auth/hmac.ts';
import type { ClientSession } from './session.ts';

export type Exec = (command: Uint8Array) => Promise<Uint8Array>;

/** A TPM 1.2 command the TPM answered with a non-zero return code. */
export class Tpm12ResponseError extends Error {
  constructor(
    readonly rc: number,
    readonly command: string,
  ) {
    super(`${command} failed with TPM 1.2 return code ${rc} (0x${rc.toString(16)})`);
    this.name = 'Tpm12ResponseError';
  }
}

/** One authorization the client attaches: a session and the auth value of the entity it authorizes. */
export interface AuthUse {
  session: ClientSession;
  /** The entity's auth value (OIAP HMAC key; ignored for OSAP, which uses the shared secret). */
  auth: Buffer;
  continueSession?: boolean;
}

export interface CommandSpec {
  name: string;
  ordinal: number;
  /** Key handles ahead of the parameters, outside the HMAC. */
  handles?: number[];
  params?: Uint8Array;
  auths?: AuthUse[];
  /** The response carries a handle ahead of its parameters (LoadKey2). */
  responseHandle?: boolean;
}

export interface CommandResult {
  handle?: number;
  /** The response parameters (after any handle, before the authorization blocks). */
  params: Buffer;
  reader: Reader;
}

/**
 * Frames a command with its authorization blocks, sends it, checks the return code and the
 * response HMACs, and rolls each session's nonceEven. A session whose command fails, or that the
 * caller did not continue, is marked closed, as the TPM closes it.
 */
export async function transmit(exec: Exec, spec: CommandSpec): Promise<CommandResult> {
  const auths = spec.auths ?? [];
  const params = Buffer.from(spec.params ?? new Uint8Array());
  const w = new Writer(64 + params.length + 45 * auths.length);
  w.u16(TAG.RQU_COMMAND + auths.length).u32(0).u32(spec.ordinal);
  for (const h of spec.handles ?? []) w.u32(h);
  w.bytes(params);
  const inDigest = auths.length ? commandDigest(spec.ordinal, params) : Buffer.alloc(0);
  const used = auths.map((a) => {
    const nonceOdd = a.session.takeNonceOdd();
    const cont = a.continueSession ?? false;
    const key = a.session.hmacKey(a.auth);
    w.u32(a.session.handle).bytes(nonceOdd).u8(cont ? 1 : 0).bytes(authHmac(key, inDigest, a.session.nonceEven, nonceOdd, cont));
    return { ...a, nonceOdd, cont, key };
  });
  w.patchU32(2, w.length);
  const rsp = Buffer.from(await exec(w.finish()));
  if (rsp.length < 10 || rsp.readUInt32BE(2) !== rsp.length) throw new Error(`${spec.name}: malformed response of ${rsp.length} bytes`);
  const rc = rsp.readUInt32BE(6);
  if (rc !== 0) {
    for (const a of used) a.session.open = false;
    throw new Tpm12ResponseError(rc, spec.name);
  }
  if (rsp.readUInt16BE(0) !== TAG.RSP_COMMAND + auths.length) throw new Error(`${spec.name}: response tag does not match the command's`);
  let start = 10;
  let handle: number | undefined;
  if (spec.responseHandle) {
    handle = rsp.readUInt32BE(10);
    start = 14;
  }
  const authStart = rsp.length - AUTH_OUT_SIZE * auths.length;
  if (authStart < start) throw new Error(`${spec.name}: response too short for its authorization`);
  const out = rsp.subarray(start, authStart);
  if (auths.length) {
    const outDigest = responseDigest(0, spec.ordinal, out);
    const ar = new Reader(rsp, authStart);
    for (const a of used) {
      const nonceEven = Buffer.from(ar.bytes(20));
      const cont = ar.u8() === 1;
      const mac = ar.bytes(20);
      if (!constantTimeEqual(mac, authHmac(a.key, outDigest, nonceEven, a.nonceOdd, cont))) {
        a.session.open = false;
        throw new Error(`${spec.name}: the response HMAC does not verify`);
      }
      a.session.nonceEven = nonceEven;
      a.session.open = cont && a.cont;
    }
  }
  return { handle, params: Buffer.from(out), reader: new Reader(Buffer.from(out)) };
}
