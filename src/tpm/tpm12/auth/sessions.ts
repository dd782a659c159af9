import { RC, Tpm12Error } from '../rc.ts';

export interface OiapSession {
  readonly kind: 'oiap';
  nonceEven: Buffer;
}

export interface OsapSession {
  readonly kind: 'osap';
  nonceEven: Buffer;
  /** TPM_ENTITY_TYPE low byte and the ADIP scheme from the high byte. */
  readonly entityType: number;
  readonly adipScheme: number;
  readonly entityValue: number;
  readonly sharedSecret: Buffer;
}

export type Session = OiapSession | OsapSession;

/**
 * The TPM's authorization session slots. Handles come from a counter so an engine given the
 * same inputs hands out the same handles.
 */
export class SessionSlots {
  private readonly sessions = new Map<number, Session>();
  private next = 1;

  constructor(readonly capacity: number) {}

  get free(): number {
    return this.capacity - this.sessions.size;
  }

  get handles(): number[] {
    return [...this.sessions.keys()];
  }

  add(s: Session): number {
    if (this.sessions.size >= this.capacity) throw new Tpm12Error(RC.RESOURCES);
    let h: number;
    do {
      h = (0x02000000 | (this.next++ & 0xffffff)) >>> 0;
    } while (this.sessions.has(h));
    this.sessions.set(h, s);
    return h;
  }

  get(handle: number): Session | undefined {
    return this.sessions.get(handle);
  }

  delete(handle: number): boolean {
    return this.sessions.delete(handle);
  }

  clear(): void {
    this.sessions.clear();
  }
}
