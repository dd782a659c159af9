import { adipXor } from '../auth/hmac.ts';

/**
 * A client's view of an OIAP or OSAP session: its handle, the TPM's rolling nonceEven and, for
 * OSAP, the shared secret. The nonceOdd of the next command can be drawn ahead (ADIP of a second
 * auth value needs it while the parameters are built).
 */
export class ClientSession {
  pendingNonceOdd: Buffer | undefined;
  /** False once the TPM has closed the session (continueAuthSession FALSE or an error). */
  open = true;

  constructor(
    readonly kind: 'oiap' | 'osap',
    readonly handle: number,
    public nonceEven: Buffer,
    readonly sharedSecret: Buffer | undefined,
    private readonly random: (n: number) => Buffer,
  ) {}

  /** The nonceOdd the next command will carry, drawn now. */
  nextNonceOdd(): Buffer {
    this.pendingNonceOdd ??= this.random(20);
    return this.pendingNonceOdd;
  }

  takeNonceOdd(): Buffer {
    const n = this.nextNonceOdd();
    this.pendingNonceOdd = undefined;
    return n;
  }

  /** ADIP: encrypts an auth value for the next command (the second one with `second`). */
  encryptAuth(auth: Buffer, second = false): Buffer {
    if (!this.sharedSecret) throw new Error('ADIP needs an OSAP session');
    return adipXor(this.sharedSecret, second ? this.nextNonceOdd() : this.nonceEven, auth);
  }

  /** The HMAC key: the OSAP shared secret, or for OIAP the entity's auth value. */
  hmacKey(entityAuth: Buffer): Buffer {
    return this.sharedSecret ?? entityAuth;
  }
}
