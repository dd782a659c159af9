/**
 * The host's side of a TPM 2.0: builds commands and parses responses with the engine's own
 * command table, so every wire type is still declared exactly once. The layers above the chip
 * (manufacturing, the host's boot, the PSS, the vMA) drive the chip through this client, never by
 * reaching into the engine.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { Reader, Writer, u32be } from '../tpm/wire/buffer.ts';
import { processEntropy } from '../tpm/crypto/random.ts';
import { ALG, CC, RH, SESSION_ATTR, ST, SU } from '../tpm/tpm2/constants.ts';
import { rcName } from '../tpm/tpm2/rc.ts';
import { SESSION_TYPE } from '../tpm/tpm2/auth/sessions.ts';
import type { CommandDef } from '../tpm/tpm2/command.ts';
import { COMMANDS } from '../tpm/tpm2/commands/index.ts';
import type { Public } from '../tpm/tpm2/types/public.ts';
import type { PcrSelection } from '../tpm/tpm2/types/pcr.ts';
import type { Signature, SigScheme } from '../tpm/tpm2/types/signature.ts';
import type { NvPublic } from '../tpm/tpm2/types/nv.ts';
import type { CapabilityData } from '../tpm/tpm2/types/capability.ts';
import { kdfa } from '../tpm/crypto/kdf.ts';
import { cryptParameter } from '../tpm/tpm2/auth/param-crypt.ts';
import { makeObject } from '../tpm/tpm2/objects/model.ts';
import { makeSecret } from '../tpm/tpm2/objects/secret.ts';
import type { SymDef } from '../tpm/tpm2/types/public-parms.ts';

export type Exec = (command: Uint8Array) => Promise<Uint8Array>;

/**
 * An unbound HMAC session the client holds: its handle, the TPM's latest nonce and, for a salted
 * session, the session key (empty unsalted) and the AES-CFB cipher that parameter encryption uses.
 */
export interface HmacSession {
  readonly handle: number;
  nonceTPM: Buffer;
  readonly sessionKey: Buffer;
  readonly symmetric: SymDef;
}

/** A key StartAuthSession can salt with: its handle in the TPM and its public area (RSA or ECC, decrypt set). */
export interface SaltKey {
  readonly handle: number;
  readonly public: Public;
}

const NO_SYMMETRIC: SymDef = { algorithm: ALG.NULL, keyBits: 0, mode: 0 };
const AES_128_CFB: SymDef = { algorithm: ALG.AES, keyBits: 128, mode: ALG.CFB };

/**
 * How one handle is authorized: a password (TPM_RS_PW), an already satisfied policy session, or
 * an HMAC session proving knowledge of `authValue` — over the command's parameters and `names`
 * (the Names of all the command's handles, in order), with the TPM's response checked the same
 * way. A salted session can also encrypt the command's first parameter (`decrypt`, when it is a
 * TPM2B) and have the TPM encrypt the response's first parameter (`encrypt`), so neither crosses
 * the bus in the clear.
 */
export type Authorization =
  | { password?: Uint8Array | string }
  | { policySession: number }
  | { hmacSession: HmacSession; authValue: Uint8Array; names: readonly Uint8Array[]; decrypt?: boolean; encrypt?: boolean };

const BY_CODE: ReadonlyMap<number, CommandDef> = new Map(COMMANDS.map((d) => [d.cc, d]));
const EMPTY = Buffer.alloc(0);
const RC_TESTING = 0x90a;
/** TPM_RC_RETRY, TPM_RC_YIELDED, TPM_RC_TESTING: not run, send again. */
const RESEND = new Set([0x922, 0x908, RC_TESTING]);
const MAX_SENDS = 100;
/** TPM_RC_NV_RATE, TPM_RC_NV_UNAVAILABLE: not run because the TPM's NV cannot be written now; send again once it can. */
const NV_BUSY = new Set([0x920, 0x923]);
/** How long a command waits for NV that stays busy, in all, before the TPM's answer stands. */
const NV_BUSY_PATIENCE_MS = 30_000;

/** A command the chip refused, with the response code it gave. */
export class Tpm2CommandError extends Error {
  constructor(
    readonly command: string,
    readonly rc: number,
  ) {
    const name = rcName(rc);
    super(`TPM2_${command} failed with response code 0x${rc.toString(16).padStart(3, '0')}${name ? ` (${name})` : ''}`);
    this.name = 'Tpm2CommandError';
  }
}

export interface CallResult {
  handle?: number;
  params: Record<string, any>;
}

/** The Name of a permanent handle (a hierarchy) or a session: the handle itself. */
export function handleName(handle: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(handle >>> 0);
  return b;
}

const bytes = (v: Uint8Array | string): Buffer => (typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v));

/** A TPM's hierarchy authValues, where they are not empty. Never logged. */
export interface HierarchyAuth {
  readonly owner?: Uint8Array;
  readonly endorsement?: Uint8Array;
}

export class Tpm2Client {
  constructor(
    private readonly exec: Exec,
    private readonly hierarchies: HierarchyAuth = {},
  ) {}

  /** The authValue of a hierarchy handle as this client was given it (empty otherwise). */
  hierarchyAuthValue(handle: number): Buffer {
    const value = handle === RH.OWNER ? this.hierarchies.owner : handle === RH.ENDORSEMENT ? this.hierarchies.endorsement : undefined;
    return Buffer.from(value ?? EMPTY);
  }

  /** The password authorization of a hierarchy handle, with that authValue. */
  hierarchyAuth(handle: number): Authorization {
    const value = this.hierarchyAuthValue(handle);
    return value.length > 0 ? { password: value } : {};
  }

  /**
   * Runs `use` with an authorization of hierarchy `handle` that does not carry its authValue
   * across the bus, as a password session would: an unsalted HMAC session started for the one
   * command and flushed after it (an empty authValue needs none). `names` are the Names of the
   * command's handles, in order: a hierarchy's, or a session's, is its handle (handleName).
   */
  async withHierarchyAuth<T>(handle: number, names: readonly Uint8Array[], use: (auth: Authorization) => Promise<T>): Promise<T> {
    const authValue = this.hierarchyAuthValue(handle);
    if (authValue.length === 0) return use({});
    return this.withHmacSession(undefined, (session) => use({ hmacSession: session, authValue, names }));
  }

  /** Runs `use` with an HMAC session, salted to `salt` when given (so it can encrypt parameters), and flushes it after. */
  async withHmacSession<T>(salt: SaltKey | undefined, use: (session: HmacSession) => Promise<T>): Promise<T> {
    const session = await this.startHmacSession(salt);
    try {
      return await use(session);
    } finally {
      await this.flushContext(session.handle).catch(() => undefined);
    }
  }

  /**
   * Sends one command described by the engine's table: `handles` in order, one authorization
   * per handle that needs one (in order), parameters by field name. Rejects with
   * Tpm2CommandError on a non-success response code.
   */
  async call(cc: number, handles: readonly number[], auths: readonly Authorization[], params: Record<string, unknown> = {}): Promise<CallResult> {
    const def = BY_CODE.get(cc);
    if (!def) throw new Error(`command 0x${cc.toString(16)} is not in the TPM 2.0 command table`);
    const pw = new Writer(256);
    for (const [field, c] of Object.entries(def.params)) c.encode(pw, params[field]);
    let parameters = pw.finish();
    const crypt = auths.find((a): a is Extract<Authorization, { hmacSession: HmacSession }> => 'hmacSession' in a && (a.decrypt === true || a.encrypt === true));
    // One nonceCaller per HMAC session, made up front: command encryption needs it before the cpHash.
    const nonces = auths.map((a) => ('hmacSession' in a ? processEntropy(32) : EMPTY));
    if (crypt?.decrypt) {
      if (Object.values(def.params)[0]?.sized !== true) throw new Error(`TPM2_${def.name}: its first parameter is not a TPM2B, so it cannot be encrypted`);
      const i = auths.indexOf(crypt);
      const size = parameters.readUInt16BE(0);
      const body = cryptParameter(crypt.hmacSession.symmetric, ALG.SHA256, cryptValue(crypt), nonces[i]!, crypt.hmacSession.nonceTPM, parameters.subarray(2, 2 + size), 'encrypt');
      parameters = Buffer.concat([parameters.subarray(0, 2), body, parameters.subarray(2 + size)]);
    }
    if (crypt?.encrypt && Object.values(def.response)[0]?.sized !== true) throw new Error(`TPM2_${def.name}: its first response parameter is not a TPM2B, so it cannot be encrypted`);
    const w = new Writer(256 + parameters.length);
    w.u16(auths.length > 0 ? ST.SESSIONS : ST.NO_SESSIONS);
    const sizeAt = w.reserveU32();
    w.u32(cc);
    for (const h of handles) w.u32(h);
    const hmacs: { session: HmacSession; key: Buffer; nonceCaller: Buffer }[] = [];
    if (auths.length > 0) {
      const at = w.reserveU32();
      const start = w.length;
      for (const [i, a] of auths.entries()) {
        if ('hmacSession' in a) {
          const nonceCaller = nonces[i]!;
          const key = Buffer.concat([a.hmacSession.sessionKey, hmacKey(a.authValue)]);
          const attributes = SESSION_ATTR.continueSession | (a.decrypt ? SESSION_ATTR.decrypt : 0) | (a.encrypt ? SESSION_ATTR.encrypt : 0);
          const cpHash = sha256(u32be(cc), ...a.names, parameters);
          const hmac = sessionHmac(key, cpHash, nonceCaller, a.hmacSession.nonceTPM, attributes);
          w.u32(a.hmacSession.handle).u16(nonceCaller.length).bytes(nonceCaller).u8(attributes).u16(hmac.length).bytes(hmac);
          hmacs.push({ session: a.hmacSession, key, nonceCaller });
        } else if ('policySession' in a) {
          const nonce = processEntropy(16);
          w.u32(a.policySession).u16(nonce.length).bytes(nonce).u8(0).u16(0);
        } else {
          const password = bytes(a.password ?? EMPTY);
          w.u32(RH.RS_PW).u16(0).u8(SESSION_ATTR.continueSession).u16(password.length).bytes(password);
        }
      }
      w.patchU32(at, w.length - start);
    }
    w.bytes(parameters);
    w.patchU32(sizeAt, w.length);
    const response = await this.send(Buffer.from(w.finish()));
    const { rpBytes, sessions, decode } = parseResponse(def, response);
    if (hmacs.length > 0) {
      // The TPM's answer is accepted only with its HMAC: nothing on the way may alter it.
      const rpHash = sha256(u32be(0), u32be(cc), rpBytes);
      auths.forEach((a, i) => {
        const h = hmacs.find((x) => 'hmacSession' in a && x.session === a.hmacSession);
        const s = sessions[i];
        if (!h) return;
        if (!s) throw new Error(`TPM2_${def.name}: the response carries no authorization for session 0x${h.session.handle.toString(16)}`);
        const expected = sessionHmac(h.key, rpHash, s.nonce, h.nonceCaller, s.attributes);
        if (s.hmac.length !== expected.length || !timingSafeEqual(s.hmac, expected)) {
          throw new Error(`TPM2_${def.name}: the response HMAC of session 0x${h.session.handle.toString(16)} does not verify`);
        }
        h.session.nonceTPM = s.nonce;
      });
    }
    if (crypt?.encrypt) {
      const h = hmacs.find((x) => x.session === crypt.hmacSession)!;
      const size = rpBytes.readUInt16BE(0);
      const plain = cryptParameter(crypt.hmacSession.symmetric, ALG.SHA256, cryptValue(crypt), crypt.hmacSession.nonceTPM, h.nonceCaller, rpBytes.subarray(2, 2 + size), 'decrypt');
      return decode(Buffer.concat([rpBytes.subarray(0, 2), plain, rpBytes.subarray(2 + size)]));
    }
    return decode(rpBytes);
  }

  /**
   * Sends `command` until the TPM runs it. TPM_RC_RETRY, TPM_RC_YIELDED and TPM_RC_TESTING say the
   * TPM did not start it (its sessions untouched), so the same bytes go again; real TPMs, and
   * libtpms, answer them under load or while self-testing. So do TPM_RC_NV_RATE and
   * TPM_RC_NV_UNAVAILABLE, which a discrete TPM gives when NV writes come faster than it lets
   * them (the PSS's counter moves with every commit).
   */
  private async send(command: Buffer): Promise<Buffer> {
    let nvWaited = 0;
    for (let attempt = 1; ; attempt++) {
      const response = Buffer.from(await this.exec(command));
      const rc = response.length >= 10 ? response.readUInt32BE(6) : 0;
      if (NV_BUSY.has(rc)) {
        // A TPM limiting NV writes against wear-out (or busy with its NV) asks for patience, not
        // a tight loop: waits from 10 ms, doubling up to a second.
        const wait = Math.min(10 * 2 ** Math.min(attempt - 1, 7), 1000);
        if (nvWaited + wait > NV_BUSY_PATIENCE_MS) return response;
        nvWaited += wait;
        await new Promise((wake) => setTimeout(wake, wait));
        continue;
      }
      if (!RESEND.has(rc) || attempt >= MAX_SENDS) return response;
      await new Promise((wake) => setTimeout(wake, rc === RC_TESTING ? 10 : 0));
    }
  }

  /**
   * An unbound HMAC session with SHA-256. Unsalted, its HMACs rest on the authValues used with it;
   * salted with `salt` (a secret only that key's holder recovers), it has a session key of its own
   * and encrypts parameters with AES-128-CFB. With `sessionType` POLICY, a policy session the
   * client computes HMACs for in the same way (a policy with TPM2_PolicyAuthValue needs them).
   */
  async startHmacSession(salt?: SaltKey, sessionType: number = SESSION_TYPE.HMAC): Promise<HmacSession> {
    const nonceCaller = randomBytes(32);
    const secret = salt ? makeSecret(makeObject(salt.public, undefined, RH.NULL, EMPTY), 'SECRET', randomBytes) : undefined;
    const symmetric = salt ? AES_128_CFB : NO_SYMMETRIC;
    const r = await this.call(CC.StartAuthSession, [salt?.handle ?? RH.NULL, RH.NULL], [], {
      nonceCaller,
      encryptedSalt: secret?.encryptedSecret ?? EMPTY,
      sessionType,
      symmetric,
      authHash: ALG.SHA256,
    });
    const nonceTPM: Buffer = r.params.nonceTPM;
    const sessionKey = secret ? kdfa(ALG.SHA256, secret.seed, 'ATH', nonceTPM, nonceCaller, 256) : EMPTY;
    secret?.seed.fill(0);
    return { handle: r.handle!, nonceTPM, sessionKey, symmetric };
  }

  startup(type: number = SU.CLEAR): Promise<CallResult> {
    return this.call(CC.Startup, [], [], { startupType: type });
  }

  shutdown(type: number = SU.STATE): Promise<CallResult> {
    return this.call(CC.Shutdown, [], [], { shutdownType: type });
  }

  async pcrExtend(pcr: number, digests: { hashAlg: number; digest: Buffer }[]): Promise<void> {
    await this.call(CC.PCR_Extend, [pcr], [{}], { digests });
  }

  /** The values of `pcrs` in one bank, in index order (PCR_Read returns at most 8 per call). */
  async pcrRead(hashAlg: number, pcrs: readonly number[]): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for (let i = 0; i < pcrs.length; i += 8) {
      const chunk = pcrs.slice(i, i + 8);
      const r = await this.call(CC.PCR_Read, [], [], { pcrSelectionIn: [pcrSelection(hashAlg, chunk)] });
      const values = r.params.pcrValues as Buffer[];
      if (values.length !== chunk.length) throw new Error(`PCR_Read returned ${values.length} values for ${chunk.length} PCRs`);
      out.push(...values);
    }
    return out;
  }

  async createPrimary(hierarchy: number, template: Public, opts: { auth?: Authorization; userAuth?: Buffer } = {}): Promise<{ handle: number; outPublic: Public; name: Buffer }> {
    const r = await this.call(CC.CreatePrimary, [hierarchy], [opts.auth ?? this.hierarchyAuth(hierarchy)], {
      inSensitive: { userAuth: opts.userAuth ?? EMPTY, data: EMPTY },
      inPublic: template,
      outsideInfo: EMPTY,
      creationPCR: [],
    });
    return { handle: r.handle!, outPublic: r.params.outPublic, name: r.params.name };
  }

  async create(
    parent: number,
    template: Public,
    opts: { parentAuth?: Authorization; userAuth?: Buffer; data?: Buffer } = {},
  ): Promise<{ outPrivate: Buffer; outPublic: Public }> {
    const r = await this.call(CC.Create, [parent], [opts.parentAuth ?? {}], {
      inSensitive: { userAuth: opts.userAuth ?? EMPTY, data: opts.data ?? EMPTY },
      inPublic: template,
      outsideInfo: EMPTY,
      creationPCR: [],
    });
    return { outPrivate: r.params.outPrivate, outPublic: r.params.outPublic };
  }

  async load(parent: number, inPrivate: Buffer, inPublic: Public, parentAuth: Authorization = {}): Promise<{ handle: number; name: Buffer }> {
    const r = await this.call(CC.Load, [parent], [parentAuth], { inPrivate, inPublic });
    return { handle: r.handle!, name: r.params.name };
  }

  async readPublic(handle: number): Promise<{ outPublic: Public; name: Buffer }> {
    const r = await this.call(CC.ReadPublic, [handle], []);
    return { outPublic: r.params.outPublic, name: r.params.name };
  }

  async unseal(handle: number, auth: Authorization = {}): Promise<Buffer> {
    return (await this.call(CC.Unseal, [handle], [auth])).params.outData;
  }

  async evictControl(hierarchy: number, object: number, persistentHandle: number, auth: Authorization = this.hierarchyAuth(hierarchy)): Promise<void> {
    await this.call(CC.EvictControl, [hierarchy, object], [auth], { persistentHandle });
  }

  async flushContext(handle: number): Promise<void> {
    await this.call(CC.FlushContext, [], [], { flushHandle: handle });
  }

  async nvDefineSpace(authHandle: number, publicInfo: NvPublic, opts: { auth?: Authorization; indexAuth?: Buffer } = {}): Promise<void> {
    await this.call(CC.NV_DefineSpace, [authHandle], [opts.auth ?? this.hierarchyAuth(authHandle)], { auth: opts.indexAuth ?? EMPTY, publicInfo });
  }

  async nvReadPublic(index: number): Promise<NvPublic> {
    return (await this.call(CC.NV_ReadPublic, [index], [])).params.nvPublic;
  }

  /** Writes `data` at offset 0 in chunks the chip accepts. */
  async nvWrite(authHandle: number, index: number, data: Buffer, auth: Authorization = {}, chunk = 1024): Promise<void> {
    for (let offset = 0; offset < data.length || offset === 0; offset += chunk) {
      await this.call(CC.NV_Write, [authHandle, index], [auth], { data: data.subarray(offset, offset + chunk), offset });
      if (data.length === 0) break;
    }
  }

  async nvRead(authHandle: number, index: number, size: number, auth: Authorization = this.hierarchyAuth(authHandle), chunk = 1024): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (let offset = 0; offset < size; offset += chunk) {
      const r = await this.call(CC.NV_Read, [authHandle, index], [auth], { size: Math.min(chunk, size - offset), offset });
      parts.push(r.params.data);
    }
    return Buffer.concat(parts);
  }

  async nvIncrement(authHandle: number, index: number, auth: Authorization = {}): Promise<void> {
    await this.call(CC.NV_Increment, [authHandle, index], [auth]);
  }

  async quote(key: number, qualifyingData: Buffer, selections: PcrSelection[], opts: { auth?: Authorization; scheme?: SigScheme } = {}): Promise<{ quoted: Buffer; signature: Signature }> {
    const r = await this.call(CC.Quote, [key], [opts.auth ?? {}], {
      qualifyingData,
      inScheme: opts.scheme ?? { scheme: ALG.NULL, hashAlg: ALG.NULL },
      PCRselect: selections,
    });
    return { quoted: r.params.quoted, signature: r.params.signature };
  }

  async certify(
    object: number,
    signer: number,
    qualifyingData: Buffer,
    opts: { objectAuth?: Authorization; signerAuth?: Authorization; scheme?: SigScheme } = {},
  ): Promise<{ certifyInfo: Buffer; signature: Signature }> {
    const r = await this.call(CC.Certify, [object, signer], [opts.objectAuth ?? {}, opts.signerAuth ?? {}], {
      qualifyingData,
      inScheme: opts.scheme ?? { scheme: ALG.NULL, hashAlg: ALG.NULL },
    });
    return { certifyInfo: r.params.certifyInfo, signature: r.params.signature };
  }

  /** An unbound, unsalted policy session (trial sessions compute a policy without enforcing it). */
  async startPolicySession(trial = false, authHash: number = ALG.SHA256): Promise<number> {
    const r = await this.call(CC.StartAuthSession, [RH.NULL, RH.NULL], [], {
      nonceCaller: randomBytes(32),
      encryptedSalt: EMPTY,
      sessionType: trial ? SESSION_TYPE.TRIAL : SESSION_TYPE.POLICY,
      symmetric: { algorithm: ALG.NULL, keyBits: 0, mode: 0 },
      authHash,
    });
    return r.handle!;
  }

  async policyPcr(session: number, selections: PcrSelection[], pcrDigest: Buffer = EMPTY): Promise<void> {
    await this.call(CC.PolicyPCR, [session], [], { pcrDigest, pcrs: selections });
  }

  async policyGetDigest(session: number): Promise<Buffer> {
    return (await this.call(CC.PolicyGetDigest, [session], [])).params.policyDigest;
  }

  async getCapability(capability: number, property: number, propertyCount: number): Promise<{ moreData: boolean; capabilityData: CapabilityData }> {
    const r = await this.call(CC.GetCapability, [], [], { capability, property, propertyCount });
    return { moreData: r.params.moreData, capabilityData: r.params.capabilityData };
  }
}

/** A TPMS_PCR_SELECTION of `pcrs` in one bank (three select bytes, as PC-Client TPMs use). */
export function pcrSelection(hash: number, pcrs: Iterable<number>, bytes = 3): PcrSelection {
  const select = Buffer.alloc(bytes);
  for (const p of pcrs) select[p >> 3]! |= 1 << (p & 7);
  return { hash, select };
}


function sha256(...parts: Uint8Array[]): Buffer {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest();
}

/** An unbound, unsalted session's HMAC key: the authValue without trailing zero octets (Part 1, 19.6.8). */
function hmacKey(authValue: Uint8Array): Buffer {
  let n = authValue.length;
  while (n > 0 && authValue[n - 1] === 0) n--;
  return Buffer.from(authValue.subarray(0, n));
}

/** What parameter encryption keys derive from: the session key and the authorized entity's authValue. */
function cryptValue(a: { hmacSession: HmacSession; authValue: Uint8Array }): Buffer {
  return Buffer.concat([a.hmacSession.sessionKey, Buffer.from(a.authValue)]);
}

function sessionHmac(key: Buffer, pHash: Buffer, nonceNewer: Buffer, nonceOlder: Buffer, attributes: number): Buffer {
  return createHmac('sha256', key).update(pHash).update(nonceNewer).update(nonceOlder).update(Buffer.from([attributes])).digest();
}

interface ResponseSession {
  readonly nonce: Buffer;
  readonly attributes: number;
  readonly hmac: Buffer;
}

/**
 * A response split into its parameter area and its authorizations; `decode` reads the parameters
 * (after the caller has checked the HMACs and decrypted what was encrypted).
 */
function parseResponse(def: CommandDef, raw: Buffer): { rpBytes: Buffer; sessions: ResponseSession[]; decode: (rp: Buffer) => CallResult } {
  if (raw.length < 10 || raw.readUInt32BE(2) !== raw.length) throw new Error(`TPM2_${def.name}: malformed response (${raw.length} bytes)`);
  const tag = raw.readUInt16BE(0);
  const rc = raw.readUInt32BE(6);
  if (rc !== 0) throw new Tpm2CommandError(def.name, rc);
  const r = new Reader(raw, 10);
  const result: CallResult = { params: {} };
  if (def.responseHandle) result.handle = r.u32();
  let end = raw.length;
  if (tag === ST.SESSIONS) {
    const size = r.u32();
    end = r.offset + size;
    if (end > raw.length) throw new Error(`TPM2_${def.name}: malformed response (parameter size ${size})`);
  }
  const rpStart = r.offset;
  const decode = (rp: Buffer): CallResult => {
    const pr = new Reader(rp);
    for (const [field, c] of Object.entries(def.response)) result.params[field] = c.decode(pr);
    if (pr.remaining !== 0) throw new Error(`TPM2_${def.name}: ${pr.remaining} unexpected bytes after the response parameters`);
    return result;
  };
  const sessions: ResponseSession[] = [];
  const ar = new Reader(raw, end);
  while (ar.remaining > 0) {
    const nonce = Buffer.from(ar.bytes(ar.u16()));
    const attributes = ar.u8();
    sessions.push({ nonce, attributes, hmac: Buffer.from(ar.bytes(ar.u16())) });
  }
  return { rpBytes: raw.subarray(rpStart, end), sessions, decode };
}
