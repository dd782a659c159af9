/**
 * The key and session manager's work on the chip for hardware-backed vTPMs. Many vTPMs share a
 * chip with three object and three session slots:
 *
 * - Keys are swapped in for one operation (ContextLoad of the context saved last time, or Load of
 *   the key's blob under the hwSRK the first time) and out again (ContextSave, FlushContext)
 *   before the chip serves anyone else. A vTPM's primary has no blob: the chip derives it again
 *   (CreatePrimary in its storage hierarchy, with the empty owner authorization the manager
 *   relies on for the hwSRK too), and what it derives must be the key the vTPM reported. Keys sign,
 *   decrypt (RSA_Decrypt) and derive ECDH secrets (ECDH_ZGen) there — storage parents too, for
 *   the secrets guests share with them — HMAC keys compute HMACs (TPM2_HMAC, or a chip HMAC
 *   sequence for longer data), symmetric keys encrypt and decrypt (EncryptDecrypt2), and sealed
 *   data is unsealed there; a key the guest duplicates is handed out inner-wrapped (exportKey).
 * - Each vTPM has its own HMAC session on the chip, salted to the hwSRK, through which its keys
 *   are made and used with their chip-side authValue: rolling nonces make every authorization
 *   single-use, the chip's answers are accepted only with the session's HMAC, and what is secret
 *   travels encrypted (AES-128-CFB) — a new object's authValue and sealed data, and data to be
 *   encrypted or decrypted, on the way in; unsealed data, decrypted messages, ECDH secrets and
 *   EncryptDecrypt2 output on the way out. The session is swapped like the keys — ContextLoad
 *   before an operation, ContextSave after — so it holds a slot only while in use; saved, it
 *   still counts against the chip's active sessions (64), so at most SAVED_SESSIONS are kept —
 *   the rest are left to the chip's other users: the sessions that seal and unseal the PSS's
 *   keys, the PCR policy sessions of the vMA's keys — and beyond them, or when the chip has none
 *   left, the least recently used vTPM's session is flushed (it starts a new one when next
 *   needed). The hwSRK's public area is read from the chip the first time it is needed.
 */
import { createHash, randomBytes } from 'node:crypto';
import { tpm2Turn, type HostTpm } from '../hwtpm/host-tpm.ts';
import { Tpm2CommandError, handleName, type Tpm2Client, type Authorization, type HmacSession, type SaltKey } from '../hwtpm/tpm2-client.ts';
import { HANDLES } from '../hwtpm/tpm2-templates.ts';
import { readSrk } from '../hwtpm/tpm2-provisioning.ts';
import { ALG, CC, RH, ST } from '../tpm/tpm2/constants.ts';
import { SESSION_TYPE } from '../tpm/tpm2/auth/sessions.ts';
import { duplicateToSensitive } from '../tpm/tpm2/objects/wrap.ts';
import type { SymDef } from '../tpm/tpm2/types/public-parms.ts';
import type { ChipRefused, ChipRequest, KeyUse } from '../tpm/tpm2/hardware-keys.ts';
import { RC, unnumbered } from '../tpm/tpm2/rc.ts';
import { publicArea, type Public, type Sensitive } from '../tpm/tpm2/types/public.ts';
import { encode } from '../tpm/wire/codec.ts';
import { primaryChipTemplate, type ChipCreateResult } from './chip-key-backend.ts';

/**
 * Sessions kept saved on the chip at most: the 64 active sessions a PC Client TPM has at least
 * (TPM_PT_ACTIVE_SESSIONS_MAX; libtpms and the simulated chip have that), less room for the chip
 * client's own (chip-client-tpm2.ts), which would otherwise find none once 64 hardware-backed
 * vTPMs had run: staging an upgrade, or a vMA signing with a PCR-bound key, would then fail.
 */
const SAVED_SESSIONS = 56;

/** Bytes of a chip key's authValue: a SHA-256 digest's worth. */
const CHIP_AUTH_BYTES = 32;

interface SavedKey {
  readonly context: unknown;
  readonly name: Buffer;
}

interface SavedSession {
  readonly session: HmacSession;
  readonly context: unknown;
}

export class HardwareKeyService {
  /** Saved chip key contexts by key, least recently used first. */
  private readonly contexts = new Map<string, SavedKey>();
  /** Each vTPM's saved chip session, least recently used first. */
  private readonly sessions = new Map<string, SavedSession>();
  /** The hwSRK's public area and Name, read from the chip once: sessions are salted to it. */
  private srk: (SaltKey & { name: Buffer }) | undefined;

  private readonly maxContexts: number;
  private readonly expectedSrkName: Buffer | undefined;

  /**
   * `srkName`: the hwSRK's Name as the manager recorded it when it was set up; sessions are salted
   * only to a key with that Name (otherwise to whatever key the chip names, checked against its
   * public area).
   */
  constructor(
    private readonly chip: HostTpm,
    opts: { maxContexts?: number; srkName?: Buffer } = {},
  ) {
    this.maxContexts = opts.maxContexts ?? 4096;
    this.expectedSrkName = opts.srkName;
  }

  /** The service as one vTPM uses it: its operations go through its own chip session. */
  forVm(owner: string): { perform(request: ChipRequest): Promise<unknown> } {
    return { perform: (request) => this.perform(owner, request) };
  }

  perform(owner: string, request: ChipRequest): Promise<unknown> {
    return tpm2Turn(this.chip, async (tpm) => {
      if (request.kind === 'create') {
        const srk = await this.srkOf(tpm);
        const chipAuth = newChipAuth();
        const made = await this.inSession(tpm, owner, (session) =>
          tpm.call(CC.Create, [HANDLES.SRK], [{ hmacSession: session, authValue: Buffer.alloc(0), names: [srk.name], decrypt: true }], {
            inSensitive: { userAuth: chipAuth, data: request.data },
            inPublic: request.template,
            outsideInfo: Buffer.alloc(0),
            creationPCR: [],
          }),
        );
        return { outPrivate: made.params.outPrivate, outPublic: made.params.outPublic, chipAuth } satisfies ChipCreateResult;
      }
      if (request.kind === 'create-primary') {
        const id = keyId(Buffer.alloc(0), primaryUniqueOf(request.template));
        // A vTPM asks again once it is loaded again: its saved context spares the chip the
        // derivation (minutes of prime search for RSA on some chips).
        const saved = await this.loadSaved(tpm, id);
        const key = saved ?? (await this.makePrimary(tpm, owner, request.template, request.chipAuth));
        try {
          return { outPublic: 'outPublic' in key ? key.outPublic : (await tpm.readPublic(key.handle)).outPublic };
        } finally {
          // Saved now, it is not derived again for its first use.
          await this.swapOut(tpm, id, key);
        }
      }
      const id = keyId(request.innerPrivate, request.primaryUnique);
      const key = await this.swapIn(tpm, owner, id, request);
      try {
        if (request.kind === 'export') return await this.exportKey(tpm, key, request);
        // Signatures and HMACs are public; everything else the chip answers here is a secret, and
        // so is what the guest asks to have encrypted.
        const secretOut = request.kind !== 'sign' && request.kind !== 'hmac';
        return await this.inSession(tpm, owner, (session) =>
          use(tpm, key.handle, request, { hmacSession: session, authValue: request.chipAuth, names: [key.name], encrypt: secretOut, decrypt: request.kind === 'encrypt-decrypt' }),
        );
      } catch (e) {
        // The guest's input can make the chip refuse (a bad padding, a point off the curve).
        if (e instanceof Tpm2CommandError && REFUSABLE.has(request.kind)) return { refused: unnumbered(e.rc) } satisfies ChipRefused;
        throw e;
      } finally {
        await this.swapOut(tpm, id, key);
      }
    });
  }

  /** Ends `owner`'s chip session (a vTPM destroyed). */
  forget(owner: string): Promise<void> {
    const saved = this.sessions.get(owner);
    if (!saved) return Promise.resolve();
    this.sessions.delete(owner);
    return tpm2Turn(this.chip, async (tpm) => {
      await tpm.flushContext(saved.session.handle).catch(() => undefined);
    });
  }

  /** Keys whose chip context is kept (for metrics and tests). */
  get savedContexts(): number {
    return this.contexts.size;
  }

  /** vTPMs holding a (saved) chip session (for metrics and tests). */
  get savedSessions(): number {
    return this.sessions.size;
  }

  /** The key saved as `id`, loaded; undefined when none is saved or a chip reset voided it. */
  private async loadSaved(tpm: Tpm2Client, id: string): Promise<{ handle: number; name: Buffer } | undefined> {
    const saved = this.contexts.get(id);
    if (!saved) return undefined;
    this.contexts.delete(id);
    try {
      return { handle: (await tpm.call(CC.ContextLoad, [], [], { context: saved.context })).handle!, name: saved.name };
    } catch (e) {
      if (!(e instanceof Tpm2CommandError)) throw e;
      return undefined;
    }
  }

  private async swapIn(tpm: Tpm2Client, owner: string, id: string, key: ChipKey): Promise<{ handle: number; name: Buffer }> {
    const saved = await this.loadSaved(tpm, id);
    if (saved) return saved;
    // Not saved, or voided by a chip reset: the blob still loads, the primary is derived again.
    if (key.primaryUnique.length === 0) return tpm.load(HANDLES.SRK, key.innerPrivate, key.innerPublic);
    const made = await this.makePrimary(tpm, owner, primaryChipTemplate(key.innerPublic, key.primaryUnique), key.chipAuth);
    if (!Buffer.from(encode(publicArea, made.outPublic)).equals(encode(publicArea, key.innerPublic))) {
      await tpm.flushContext(made.handle);
      throw new Error("the chip no longer derives this vTPM primary key (the seed of the chip's storage hierarchy changed): the key is gone");
    }
    return made;
  }

  /** A primary of the chip's storage hierarchy, its authValue sent encrypted through `owner`'s session. */
  private async makePrimary(tpm: Tpm2Client, owner: string, template: Public, chipAuth: Buffer): Promise<{ handle: number; name: Buffer; outPublic: Public }> {
    const made = await this.inSession(tpm, owner, (session) =>
      // A hierarchy's Name, like its qualified name, is its handle.
      tpm.call(CC.CreatePrimary, [RH.OWNER], [{ hmacSession: session, authValue: tpm.hierarchyAuthValue(RH.OWNER), names: [handleName(RH.OWNER)], decrypt: true }], {
        inSensitive: { userAuth: chipAuth, data: Buffer.alloc(0) },
        inPublic: template,
        outsideInfo: Buffer.alloc(0),
        creationPCR: [],
      }),
    );
    return { handle: made.handle!, name: made.params.name, outPublic: made.params.outPublic };
  }

  private async swapOut(tpm: Tpm2Client, id: string, key: { handle: number; name: Buffer }): Promise<void> {
    try {
      const context: unknown = (await tpm.call(CC.ContextSave, [key.handle], [])).params.context;
      this.contexts.set(id, { context, name: key.name });
      if (this.contexts.size > this.maxContexts) this.contexts.delete(this.contexts.keys().next().value!);
    } finally {
      await tpm.flushContext(key.handle);
    }
  }

  /** Runs `job` in `owner`'s chip session, swapped in for it and out after it. */
  private async inSession<T>(tpm: Tpm2Client, owner: string, job: (session: HmacSession) => Promise<T>): Promise<T> {
    const session = await this.sessionIn(tpm, owner);
    let done = false;
    try {
      const result = await job(session);
      done = true;
      return result;
    } finally {
      // A session whose command failed is not trusted to be in step with the chip: it goes.
      if (done) await this.sessionOut(tpm, owner, session);
      else await tpm.flushContext(session.handle).catch(() => undefined);
    }
  }

  private async srkOf(tpm: Tpm2Client): Promise<SaltKey & { name: Buffer }> {
    if (!this.srk) {
      const { outPublic, name } = await readSrk(tpm);
      if (this.expectedSrkName && !name.equals(this.expectedSrkName)) {
        throw new Error(`the chip's hwSRK (Name ${name.toString('hex')}) is not the one this manager was set up with; hardware-backed vTPMs will not salt their sessions to it`);
      }
      this.srk = { handle: HANDLES.SRK, public: outPublic, name };
    }
    return this.srk;
  }

  private async sessionIn(tpm: Tpm2Client, owner: string): Promise<HmacSession> {
    const saved = this.sessions.get(owner);
    if (saved) {
      this.sessions.delete(owner);
      try {
        await tpm.call(CC.ContextLoad, [], [], { context: saved.context });
        return saved.session;
      } catch (e) {
        // A chip reset voids saved sessions (and a flushed one is gone): start another.
        if (!(e instanceof Tpm2CommandError)) throw e;
      }
    }
    return this.startSession(tpm, SESSION_TYPE.HMAC);
  }

  /** A session salted to the hwSRK; when the chip has no room for one, the least recently used vTPM's session goes. */
  private async startSession(tpm: Tpm2Client, type: number): Promise<HmacSession> {
    while (this.sessions.size >= SAVED_SESSIONS) await this.flushLeastRecent(tpm);
    for (;;) {
      try {
        return await tpm.startHmacSession(await this.srkOf(tpm), type);
      } catch (e) {
        if (!(e instanceof Tpm2CommandError && e.rc === RC.SESSION_HANDLES) || this.sessions.size === 0) throw e;
        await this.flushLeastRecent(tpm);
      }
    }
  }

  private async flushLeastRecent(tpm: Tpm2Client): Promise<void> {
    const [owner, victim] = this.sessions.entries().next().value!;
    this.sessions.delete(owner);
    await tpm.flushContext(victim.session.handle).catch(() => undefined);
  }

  /**
   * The sensitive area of a chip key the guest duplicates, taken out under the key's chip policy
   * (chip-key-backend.ts duplicationPolicy) in a policy session salted to the hwSRK. The chip
   * wraps it under an inner key that reaches the chip encrypted, so the private key crosses the
   * bus only as ciphertext.
   */
  private async exportKey(tpm: Tpm2Client, key: { handle: number; name: Buffer }, request: ChipKey): Promise<Sensitive> {
    const session = await this.startSession(tpm, SESSION_TYPE.POLICY);
    try {
      await tpm.call(CC.PolicyCommandCode, [session.handle], [], { code: CC.Duplicate });
      await tpm.call(CC.PolicyAuthValue, [session.handle], []);
      const inner = { sym: AES_128_CFB, key: randomBytes(AES_128_CFB.keyBits / 8) };
      const names = [key.name, handleName(RH.NULL)];
      const r = await tpm.call(CC.Duplicate, [key.handle, RH.NULL], [{ hmacSession: session, authValue: request.chipAuth, names, decrypt: true }], {
        encryptionKeyIn: inner.key,
        symmetricAlg: inner.sym,
      });
      return duplicateToSensitive(r.params.duplicate, key.name, request.innerPublic.nameAlg, undefined, inner);
    } finally {
      await tpm.flushContext(session.handle).catch(() => undefined);
    }
  }

  private async sessionOut(tpm: Tpm2Client, owner: string, session: HmacSession): Promise<void> {
    const context: unknown = (await tpm.call(CC.ContextSave, [session.handle], [])).params.context;
    this.sessions.set(owner, { session, context });
  }
}

/** What identifies a chip key among the saved contexts: its blob, or a primary's unique value. */
function keyId(innerPrivate: Buffer, primaryUnique: Buffer): string {
  return createHash('sha256').update(primaryUnique.length ? primaryUnique : innerPrivate).digest('hex');
}

function primaryUniqueOf(template: Public): Buffer {
  return 'rsa' in template.unique ? template.unique.rsa : 'ecc' in template.unique ? template.unique.ecc.x : Buffer.alloc(0);
}

/** A chip key as a use names it. */
type ChipKey = Extract<ChipRequest, { innerPrivate: Buffer }>;

/** A chip key's authValue; its last octet is never zero, which the HMAC key would drop. */
function newChipAuth(): Buffer {
  const auth = randomBytes(CHIP_AUTH_BYTES);
  auth[CHIP_AUTH_BYTES - 1]! |= 1;
  return auth;
}

const AES_128_CFB: SymDef = { algorithm: ALG.AES, keyBits: 128, mode: ALG.CFB };

/** Uses whose chip errors the guest's input can cause, and which the vTPM answers as the chip did. */
const REFUSABLE = new Set<KeyUse['kind']>(['rsa-decrypt', 'ecdh-zgen', 'encrypt-decrypt']);

/** What TPM2_HMAC and SequenceUpdate take at once (MAX_DIGEST_BUFFER). */
const MAX_DIGEST_BUFFER = 1024;

async function use(tpm: Tpm2Client, handle: number, u: KeyUse, auth: Authorization): Promise<unknown> {
  switch (u.kind) {
    case 'sign':
      return (
        await tpm.call(CC.Sign, [handle], [auth], {
          digest: u.digest,
          inScheme: u.scheme,
          validation: { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: Buffer.alloc(0) },
        })
      ).params.signature;
    case 'rsa-decrypt':
      return (await tpm.call(CC.RSA_Decrypt, [handle], [auth], { cipherText: u.cipherText, inScheme: u.scheme, label: u.label })).params.message;
    case 'ecdh-zgen':
      return (await tpm.call(CC.ECDH_ZGen, [handle], [auth], { inPoint: u.point })).params.outPoint;
    case 'unseal':
      return (await tpm.call(CC.Unseal, [handle], [auth])).params.outData;
    case 'hmac':
      return hmacInChip(tpm, handle, u.hashAlg, u.data, auth);
    case 'encrypt-decrypt': {
      const r = await tpm.call(CC.EncryptDecrypt2, [handle], [auth], { inData: u.data, decrypt: u.decrypt, mode: u.mode, ivIn: u.ivIn });
      return { outData: r.params.outData, ivOut: r.params.ivOut };
    }
  }
}

/**
 * TPM2_HMAC for what fits one command; longer data through an HMAC sequence on the chip, started,
 * fed and completed while this operation holds the chip.
 */
async function hmacInChip(tpm: Tpm2Client, handle: number, hashAlg: number, data: Buffer, auth: Authorization): Promise<Buffer> {
  if (data.length <= MAX_DIGEST_BUFFER) return (await tpm.call(CC.HMAC, [handle], [auth], { buffer: data, hashAlg })).params.outHMAC as Buffer;
  const seqAuth = newChipAuth();
  const seq = (await tpm.call(CC.HMAC_Start, [handle], [auth], { auth: seqAuth, hashAlg })).handle!;
  const seqAuthorization: Authorization = 'hmacSession' in auth ? { hmacSession: auth.hmacSession, authValue: seqAuth, names: [Buffer.alloc(0)] } : { password: seqAuth };
  try {
    let at = 0;
    for (; data.length - at > MAX_DIGEST_BUFFER; at += MAX_DIGEST_BUFFER) {
      await tpm.call(CC.SequenceUpdate, [seq], [seqAuthorization], { buffer: data.subarray(at, at + MAX_DIGEST_BUFFER) });
    }
    return (await tpm.call(CC.SequenceComplete, [seq], [seqAuthorization], { buffer: data.subarray(at), hierarchy: RH.NULL })).params.result as Buffer;
  } catch (e) {
    // A completed sequence is gone from the chip; one that failed on the way is flushed here.
    await tpm.flushContext(seq).catch(() => undefined);
    throw e;
  }
}
