import { constantTimeEqual } from '../../crypto/hash.ts';
import { ET } from '../constants.ts';
import { RC, Tpm12Error } from '../rc.ts';
import type { Tpm12Engine } from '../engine.ts';
import { adipXor, authHmac } from './hmac.ts';
import type { OsapSession, Session } from './sessions.ts';

/** One authorization block as the command carries it. */
export interface AuthBlock {
  readonly handle: number;
  readonly nonceOdd: Buffer;
  readonly continueSession: boolean;
  readonly hmac: Buffer;
}

/** The entity an OSAP session must have been opened for: entity types and, if it matters, the value. */
export interface EntitySpec {
  readonly types: readonly number[];
  readonly value?: number;
}

interface Verified {
  session: Session;
  /** The nonceEven the command's HMAC used (the one the TPM sent last). */
  lastNonceEven: Buffer;
  key: Buffer;
}

/**
 * What a handler knows of the call: the engine, locality, key handles, and the authorization
 * blocks, which the handler verifies against the secret of the entity it resolved. The
 * dispatcher refuses to answer with success unless every block was verified.
 */
export class CallContext {
  private readonly verified: (Verified | undefined)[];

  constructor(
    readonly tpm: Tpm12Engine,
    readonly locality: number,
    readonly ordinal: number,
    readonly handles: readonly number[],
    readonly paramDigest: Buffer,
    readonly blocks: readonly AuthBlock[],
  ) {
    this.verified = blocks.map(() => undefined);
  }

  get authCount(): number {
    return this.blocks.length;
  }

  /** The session behind block i; an unknown handle is TPM_INVALID_AUTHHANDLE. */
  session(i: number): Session {
    const b = this.blocks[i];
    if (!b) throw new Tpm12Error(RC.AUTHFAIL);
    const s = this.tpm.sessions.get(b.handle);
    if (!s) throw new Tpm12Error(RC.INVALID_AUTHHANDLE);
    return s;
  }

  /** The session behind block i, which must be OSAP (ADIP needs its shared secret). */
  osap(i: number): OsapSession {
    const s = this.session(i);
    if (s.kind !== 'osap') throw new Tpm12Error(RC.BAD_MODE);
    return s;
  }

  /**
   * Checks block i against `secret` (the entity's usage auth): an OIAP session HMACs with the
   * secret itself, an OSAP session with its shared secret and only for the entity it was opened
   * for. A wrong HMAC is TPM_AUTHFAIL for the first block and TPM_AUTH2FAIL for the second.
   */
  verify(i: number, secret: Buffer, entity?: EntitySpec, opts: { osapOnly?: boolean; oiapOnly?: boolean } = {}): void {
    const s = this.session(i);
    const failRc = i === 0 ? RC.AUTHFAIL : RC.AUTH2FAIL;
    if (opts.osapOnly && s.kind !== 'osap') throw new Tpm12Error(RC.BAD_MODE);
    if (opts.oiapOnly && s.kind !== 'oiap') throw new Tpm12Error(RC.BAD_MODE);
    let key = secret;
    if (s.kind === 'osap') {
      if (entity && !osapMatches(s, entity)) throw new Tpm12Error(failRc);
      key = s.sharedSecret;
    }
    const b = this.blocks[i]!;
    const expected = authHmac(key, this.paramDigest, s.nonceEven, b.nonceOdd, b.continueSession);
    if (!constantTimeEqual(expected, b.hmac)) throw new Tpm12Error(failRc);
    this.verified[i] = { session: s, lastNonceEven: s.nonceEven, key };
  }

  /** Decrypts an ADIP-encrypted auth value carried under the OSAP session of block i. */
  adip(i: number, encAuth: Buffer, second = false): Buffer {
    const s = this.osap(i);
    return adipXor(s.sharedSecret, second ? this.blocks[i]!.nonceOdd : s.nonceEven, encAuth);
  }

  /** Whether block i was verified; the dispatcher asks before it answers. */
  isVerified(i: number): boolean {
    return this.verified[i] !== undefined;
  }

  verification(i: number): Verified | undefined {
    return this.verified[i];
  }
}

function osapMatches(s: OsapSession, e: EntitySpec): boolean {
  if (!e.types.includes(s.entityType)) return false;
  if (e.value === undefined || s.entityType === ET.OWNER || s.entityType === ET.SRK) return true;
  return s.entityValue === e.value;
}
