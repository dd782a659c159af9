/**
 * The chip client over the TPM 2.0 personality. Keys live under the SRK at 0x81000001; PCR
 * bindings are PolicyPCR over the SHA-256 bank; counters are NV counter indices in the owner's
 * range; quotes and certifications are signed by a restricted ECDSA P-256 key.
 *
 * On a discrete TPM whoever can touch the board can read the bus. So a secret being sealed, and
 * one unsealed — the PSS's storage key and the key-binding key, which a read bus would give away
 * at every start — cross it encrypted, by a session salted to the SRK (AES-128-CFB parameter
 * encryption), and so does a counter's key when its index is defined. Increments still send that
 * key as a password (incrementCounter says why).
 *
 * A salt is only as private as the key it is encrypted to, and the SRK's public area comes from
 * the chip: something answering in its place could name a key of its own. So the host pins the
 * SRK (pinStorageRoot) before the first secret crosses, and a chip naming another is refused.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { Reader, Writer } from '../tpm/wire/buffer.ts';
import { ALG, CAP, CC, RH, ST } from '../tpm/tpm2/constants.ts';
import { RC, unnumbered } from '../tpm/tpm2/rc.ts';
import { ecdsaSignatureDer } from '../tpm/crypto/ecdsa-der.ts';
import { ensurePersistent, readSrk } from './tpm2-provisioning.ts';
import { attest, type Attest } from '../tpm/tpm2/types/attest.ts';
import { privateBuf } from '../tpm/tpm2/types/creation.ts';
import { NT, NV_ATTR, nvName } from '../tpm/tpm2/types/nv.ts';
import { public2b, type Public } from '../tpm/tpm2/types/public.ts';
import type { Signature } from '../tpm/tpm2/types/signature.ts';
import { publicKeyOf } from '../tpm/tpm2/objects/model.ts';
import { decode } from '../tpm/wire/codec.ts';
import { tpm2Turn, type HostTpm } from './host-tpm.ts';
import { ChipRefusal, expectedPcrValues, pcrHashOf, type Attestation, type ChipClient, type ChipKey, type KeyCertification, type Quote, type SignatureScheme } from './chip-client.ts';
import { Tpm2Client, Tpm2CommandError, handleName, pcrSelection, type Authorization, type SaltKey } from './tpm2-client.ts';
import { HANDLES, eccSigningTemplate, sealedTemplate, srkTemplate } from './tpm2-templates.ts';

const BLOB_MAGIC = 0x5632; // "V2"
const BLOB_VERSION = 1;
const KIND = { sealed: 1, signing: 2, identity: 3 } as const;
/** Owner NV indices this client allocates counters from. */
const COUNTER_BASE = 0x01500000;
const COUNTER_LIMIT = 0x015000ff;

interface Blob {
  kind: number;
  pcrs: number[];
  inPrivate: Buffer;
  inPublic: Public;
}

export class Tpm2ChipClient implements ChipClient {
  readonly personality = 'tpm2' as const;
  readonly pcrHash = 'sha256' as const;

  /** Who may read each counter (its attributes say), and its Name, so that a commit's increment costs no NV_ReadPublic. */
  private readonly counterReaders = new Map<number, { readonly owner: boolean; readonly key: boolean; readonly name: Buffer }>();
  /** The SRK as sessions are salted to it, read from the chip once. */
  private srk: (SaltKey & { readonly name: Buffer }) | undefined;
  /** The SRK Name secrets may cross under, or why none may (pinStorageRoot). */
  private srkPin: Buffer | Error | undefined;

  constructor(readonly chip: HostTpm) {}

  private turn<T>(job: (tpm: Tpm2Client) => Promise<T>): Promise<T> {
    return tpm2Turn(this.chip, job).catch((e) => {
      throw refusal(e);
    });
  }

  /**
   * From now on, secrets cross the bus only under the SRK whose Name is `pin` (proven beside the
   * certified EK, or recorded at the host's first start); an Error says why no SRK can be
   * trusted, and every seal, unseal and counter definition is then refused as 'untrusted-srk'.
   */
  pinStorageRoot(pin: Buffer | Error): void {
    this.srkPin = pin;
    this.srk = undefined;
  }

  takeOwnership(): Promise<void> {
    return this.turn(async (tpm) => void (await ensurePersistent(tpm, RH.OWNER, HANDLES.SRK, srkTemplate())));
  }

  measure(pcr: number, data: Uint8Array): Promise<void> {
    return this.turn(async (tpm) => {
      // Every active bank gets the measurement in its own hash, as PCR_Event would do.
      await tpm.call(CC.PCR_Event, [pcr], [{}], { eventData: Buffer.from(data) });
    });
  }

  readPcrs(pcrs: readonly number[]): Promise<Buffer[]> {
    return this.turn((tpm) => tpm.pcrRead(ALG.SHA256, pcrs));
  }

  seal(secret: Uint8Array, pcrs: readonly number[], expected?: ReadonlyMap<number, Buffer>): Promise<Buffer> {
    return this.turn(async (tpm) => {
      const policy = await pcrPolicy(tpm, pcrs, expected && pcrHashOf('sha256', ...expectedPcrValues('sha256', pcrs, expected).values));
      const srk = await this.srkOf(tpm);
      const { outPrivate, outPublic } = await tpm.withHmacSession(srk, (session) =>
        tpm.create(HANDLES.SRK, sealedTemplate(policy), { data: Buffer.from(secret), parentAuth: { hmacSession: session, authValue: EMPTY, names: [srk.name], decrypt: true } }),
      );
      return encodeBlob({ kind: KIND.sealed, pcrs: [...pcrs], inPrivate: outPrivate, inPublic: outPublic });
    });
  }

  unseal(blob: Buffer): Promise<Buffer> {
    const b = decodeBlob(blob, KIND.sealed);
    return this.turn(async (tpm) => {
      const srk = await this.srkOf(tpm);
      return withLoaded(tpm, b, (handle, name) =>
        withPcrSession(tpm, b.pcrs, (auth) =>
          // The policy session authorizes; a second, salted one has the TPM encrypt the secret.
          tpm.withHmacSession(srk, async (session) => (await tpm.call(CC.Unseal, [handle], [auth, { hmacSession: session, authValue: EMPTY, names: [name], encrypt: true }])).params.outData as Buffer),
        ),
      );
    });
  }

  createSigningKey(pcrs: readonly number[]): Promise<ChipKey> {
    return this.turn(async (tpm) => {
      const policy = await pcrPolicy(tpm, pcrs);
      return this.createKey(tpm, { kind: KIND.signing, pcrs: [...pcrs] }, eccSigningTemplate(false, policy));
    });
  }

  sign(key: ChipKey, data: Uint8Array): Promise<{ signature: Buffer; scheme: SignatureScheme }> {
    const b = decodeBlob(key.blob, KIND.signing);
    return this.turn((tpm) =>
      withLoaded(tpm, b, (handle) =>
        withPcrSession(tpm, b.pcrs, async (auth) => {
          const digest = (await tpm.call(CC.Hash, [], [], { data: Buffer.from(data), hashAlg: ALG.SHA256, hierarchy: RH.NULL })).params.outHash as Buffer;
          const r = await tpm.call(CC.Sign, [handle], [auth], {
            digest,
            inScheme: { scheme: ALG.NULL, hashAlg: ALG.NULL },
            validation: { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: Buffer.alloc(0) },
          });
          return signatureOf(r.params.signature);
        }),
      ),
    );
  }

  createIdentityKey(): Promise<ChipKey> {
    return this.turn((tpm) => this.createKey(tpm, { kind: KIND.identity, pcrs: [] }, eccSigningTemplate(true)));
  }

  certifyKey(key: ChipKey, identity: ChipKey, nonce: Uint8Array): Promise<KeyCertification> {
    const k = decodeBlob(key.blob);
    const id = decodeBlob(identity.blob, KIND.identity);
    return this.turn((tpm) =>
      withLoaded(tpm, k, (keyHandle) =>
        withLoaded(tpm, id, async (idHandle) => {
          const r = await tpm.certify(keyHandle, idHandle, Buffer.from(nonce));
          const info = attestation(r.certifyInfo, r.signature, ST.ATTEST_CERTIFY);
          return { ...info.base, certifiedKeyId: (info.attest.attested as { name: Buffer }).name };
        }),
      ),
    );
  }

  quote(identity: ChipKey, pcrs: readonly number[], nonce: Uint8Array): Promise<Quote> {
    const id = decodeBlob(identity.blob, KIND.identity);
    return this.turn((tpm) =>
      withLoaded(tpm, id, async (handle) => {
        const r = await tpm.quote(handle, Buffer.from(nonce), [pcrSelection(ALG.SHA256, pcrs)]);
        const info = attestation(r.quoted, r.signature, ST.ATTEST_QUOTE);
        return { ...info.base, pcrDigest: (info.attest.attested as { pcrDigest: Buffer }).pcrDigest };
      }),
    );
  }

  createCounter(auth?: Uint8Array): Promise<{ id: number; value: bigint }> {
    return this.turn(async (tpm) => {
      const taken = await definedIndices(tpm, COUNTER_BASE, COUNTER_LIMIT);
      let id = COUNTER_BASE;
      while (taken.has(id)) if (++id > COUNTER_LIMIT) throw counterRoomRefusal('every NV index of the range is in use');
      const publicInfo = {
        nvIndex: id,
        nameAlg: ALG.SHA256,
        // With a key, only its holder increments it; its value is no secret, so the owner reads it
        // too. The holder reads it with the key, which each increment sends anyway, rather than
        // with an owner authorization that would otherwise cross the bus with every commit.
        attributes: NV_ATTR.AUTHWRITE | NV_ATTR.AUTHREAD | (auth ? NV_ATTR.OWNERREAD : 0) | NV_ATTR.NO_DA | (NT.COUNTER << 4),
        authPolicy: Buffer.alloc(0),
        dataSize: 8,
      };
      const srk = await this.srkOf(tpm);
      await tpm.withHmacSession(srk, async (session) => {
        try {
          // The key goes in as the index's authValue, encrypted.
          await tpm.nvDefineSpace(RH.OWNER, publicInfo, { indexAuth: counterAuth(auth), auth: { hmacSession: session, authValue: tpm.hierarchyAuthValue(RH.OWNER), names: [handleName(RH.OWNER)], decrypt: true } });
        } catch (e) {
          if (e instanceof Tpm2CommandError && e.rc === RC.NV_SPACE) throw counterRoomRefusal('its NV memory is full (TPM_RC_NV_SPACE)');
          throw e;
        }
        // A TPM 2.0 counter has no value until its first increment; its Name changes with it.
        const unwritten = nvName(publicInfo);
        await tpm.nvIncrement(id, id, { hmacSession: session, authValue: counterAuth(auth), names: [unwritten, unwritten] });
      });
      return { id, value: await this.readCounterValue(tpm, id, auth) };
    });
  }

  readCounter(id: number, auth?: Uint8Array): Promise<bigint> {
    return this.turn((tpm) => this.readCounterValue(tpm, id, auth));
  }

  /**
   * By password, unlike the key's definition: an HMAC session would cost every commit two more
   * TPM commands (a lone vTPM lost a quarter of its rate), and what the counter key gives someone
   * reading the bus — moving the counter, so that the PSS refuses its database as rolled back —
   * is a denial of service that access to the board gives anyway.
   */
  incrementCounter(id: number, auth?: Uint8Array): Promise<bigint> {
    return this.turn(async (tpm) => {
      await tpm.nvIncrement(id, id, counterPassword(auth));
      return this.readCounterValue(tpm, id, auth);
    });
  }

  /**
   * A counter read with its key where its attributes let the key read it (`auth`, given), else by
   * the owner for a keyed counter (made before keys read, or read without the key) in an HMAC
   * session, else by the index itself with the empty authorization of an unkeyed one.
   */
  private async readCounterValue(tpm: Tpm2Client, id: number, auth?: Uint8Array): Promise<bigint> {
    let readers = this.counterReaders.get(id);
    if (readers === undefined) {
      const pub = await tpm.nvReadPublic(id);
      readers = { owner: (pub.attributes & NV_ATTR.OWNERREAD) !== 0, key: (pub.attributes & NV_ATTR.AUTHREAD) !== 0, name: nvName(pub) };
      this.counterReaders.set(id, readers);
    }
    if (readers.key && (auth !== undefined || !readers.owner)) return (await tpm.nvRead(id, id, 8, counterPassword(auth))).readBigUInt64BE(0);
    const { name } = readers;
    return (await tpm.withHierarchyAuth(RH.OWNER, [handleName(RH.OWNER), name], (owner) => tpm.nvRead(RH.OWNER, id, 8, owner))).readBigUInt64BE(0);
  }

  /** The SRK's public area and Name, which salted sessions use: the pinned one, or none. */
  private async srkOf(tpm: Tpm2Client): Promise<SaltKey & { readonly name: Buffer }> {
    const pin = this.srkPin;
    if (pin instanceof Error) throw new ChipRefusal('untrusted-srk', `no secret is sent under the chip's SRK: ${pin.message}`);
    if (!this.srk) {
      const { outPublic, name } = await readSrk(tpm);
      if (pin && !name.equals(pin)) {
        throw new ChipRefusal('untrusted-srk', `the chip's SRK (Name ${name.toString('hex')}) is not the one pinned for this host (${pin.toString('hex')}): the TPM was cleared or replaced, or something answers in its place`);
      }
      this.srk = { handle: HANDLES.SRK, public: outPublic, name };
    }
    return this.srk;
  }

  private async createKey(tpm: Tpm2Client, b: { kind: number; pcrs: number[] }, template: Public): Promise<ChipKey> {
    const { outPrivate, outPublic } = await tpm.create(HANDLES.SRK, template);
    return { blob: encodeBlob({ ...b, inPrivate: outPrivate, inPublic: outPublic }), publicKey: publicKeyOf(outPublic) };
  }
}

/** The NV indices defined in first…last, over as many GetCapability calls as the TPM needs to list them. */
async function definedIndices(tpm: Tpm2Client, first: number, last: number): Promise<Set<number>> {
  const taken = new Set<number>();
  for (let from = first; from <= last; ) {
    const cap = await tpm.getCapability(CAP.HANDLES, from, last - from + 1);
    const items = 'items' in cap.capabilityData ? cap.capabilityData.items.filter((h) => h >= from && h <= last) : [];
    for (const h of items) taken.add(h);
    if (!cap.moreData || items.length === 0) break;
    from = Math.max(...items) + 1;
  }
  return taken;
}

/**
 * No room for a new PSS's counter. Each PSS database made on a TPM holds one counter there for
 * good, so a TPM on which state directories were made and thrown away fills up.
 */
function counterRoomRefusal(why: string): ChipRefusal {
  return new ChipRefusal(
    'resources',
    `the host TPM has no room for another PSS counter: ${why}. Every PSS database made on this TPM holds a counter in 0x${COUNTER_BASE.toString(16).padStart(8, '0')}–0x${COUNTER_LIMIT.toString(16).padStart(8, '0')}; release those of state directories no longer used with tpm2_nvundefine -C o INDEX (a running vtpmd names its own in /health)`,
  );
}

/** A counter's index authValue: the secret's SHA-256 digest, the largest authValue a SHA-256 index takes. */
function counterAuth(auth: Uint8Array | undefined): Buffer {
  return auth ? createHash('sha256').update(auth).digest() : Buffer.alloc(0);
}

/** How an increment proves it: the index authValue in a password session. */
function counterPassword(auth: Uint8Array | undefined): { password?: Uint8Array } {
  return auth ? { password: counterAuth(auth) } : {};
}

/** The public key a key blob carries (no chip needed). */
export function tpm2KeyBlobPublicKey(blob: Buffer): KeyObject {
  return publicKeyOf(decodeBlob(blob).inPublic);
}

/**
 * The PolicyPCR digest of `pcrs`' SHA-256 values, computed by the chip in a trial session: of
 * their present values, or of those whose digest is `pcrDigest`.
 */
async function pcrPolicy(tpm: Tpm2Client, pcrs: readonly number[], pcrDigest?: Buffer): Promise<Buffer> {
  const session = await tpm.startPolicySession(true);
  try {
    await tpm.policyPcr(session, [pcrSelection(ALG.SHA256, pcrs)], pcrDigest);
    return await tpm.policyGetDigest(session);
  } finally {
    await tpm.flushContext(session);
  }
}

const EMPTY = Buffer.alloc(0);

async function withPcrSession<T>(tpm: Tpm2Client, pcrs: readonly number[], use: (auth: Authorization) => Promise<T>): Promise<T> {
  const session = await tpm.startPolicySession(false);
  try {
    await tpm.policyPcr(session, [pcrSelection(ALG.SHA256, pcrs)]);
    return await use({ policySession: session });
  } finally {
    await tpm.flushContext(session).catch(() => undefined);
  }
}

async function withLoaded<T>(tpm: Tpm2Client, b: Blob, use: (handle: number, name: Buffer) => Promise<T>): Promise<T> {
  const { handle, name } = await tpm.load(HANDLES.SRK, b.inPrivate, b.inPublic);
  try {
    return await use(handle, name);
  } finally {
    await tpm.flushContext(handle);
  }
}

function signatureOf(sig: Signature): { signature: Buffer; scheme: SignatureScheme } {
  if (sig.sigAlg === ALG.ECDSA) return { signature: ecdsaSignatureDer(sig.r, sig.s), scheme: 'ecdsa-sha256' };
  if (sig.sigAlg === ALG.RSASSA) return { signature: sig.sig, scheme: 'rsassa-sha256' };
  throw new Error(`unexpected signature algorithm 0x${sig.sigAlg.toString(16)}`);
}

function attestation(signed: Buffer, sig: Signature, type: number): { base: Attestation; attest: Attest } {
  const a = decode(attest, signed);
  if (a.type !== type) throw new Error(`the chip attested type 0x${a.type.toString(16)} where 0x${type.toString(16)} was asked for`);
  return { base: { signed, ...signatureOf(sig), nonce: a.extraData }, attest: a };
}

function encodeBlob(b: Blob): Buffer {
  const w = new Writer(512);
  w.u16(BLOB_MAGIC).u8(BLOB_VERSION).u8(b.kind).u8(b.pcrs.length);
  for (const p of b.pcrs) w.u8(p);
  privateBuf.encode(w, b.inPrivate);
  public2b.encode(w, b.inPublic);
  return Buffer.from(w.finish());
}

function decodeBlob(blob: Buffer, kind?: number): Blob {
  try {
    const r = new Reader(blob);
    if (r.u16() !== BLOB_MAGIC || r.u8() !== BLOB_VERSION) throw new Error('header');
    const k = r.u8();
    if (kind !== undefined && k !== kind) throw new Error('kind');
    const pcrs: number[] = [];
    for (let n = r.u8(); n > 0; n--) pcrs.push(r.u8());
    const inPrivate = privateBuf.decode(r);
    const inPublic = public2b.decode(r);
    if (r.remaining !== 0) throw new Error('trailing bytes');
    return { kind: k, pcrs, inPrivate, inPublic };
  } catch {
    throw new ChipRefusal('bad-blob', 'not a TPM 2.0 chip blob of the expected kind (damaged, or made for another purpose)');
  }
}

/** A chip response code, translated into why the chip refused. */
function refusal(e: unknown): unknown {
  if (!(e instanceof Tpm2CommandError)) return e;
  const base = unnumbered(e.rc);
  if (base === RC.POLICY_FAIL || base === RC.PCR_CHANGED) {
    return new ChipRefusal('pcr-mismatch', 'the PCRs no longer hold the values this blob is bound to', e.rc);
  }
  if (base === RC.INTEGRITY) return new ChipRefusal('bad-blob', 'the chip rejected the blob (altered, or made by another chip)', e.rc);
  if (base === RC.AUTH_FAIL || base === RC.BAD_AUTH) return new ChipRefusal('auth', 'the chip refused the authorization', e.rc);
  if (base === RC.OBJECT_MEMORY || base === RC.SESSION_MEMORY) return new ChipRefusal('resources', 'the chip has no free slot', e.rc);
  return e;
}

