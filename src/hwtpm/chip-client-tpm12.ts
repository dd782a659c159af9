/**
 * The chip client over the TPM 1.2 personality. The host owns the chip with the well-known
 * secret (the lab-host convention TSS stacks use), keys are TPM_KEY12 blobs under the SRK with
 * their PCR binding in TPM_PCR_INFO_LONG, sealing is TPM_Seal, quotes are TPM_Quote over SHA-1
 * PCRs by an identity key from TPM_MakeIdentity, counters are the chip's monotonic counters.
 */
import { createHash } from 'node:crypto';
import { Reader, Writer, u32be } from '../tpm/wire/buffer.ts';
import { CAP, KEY_USAGE, KH } from '../tpm/tpm12/constants.ts';
import { RC } from '../tpm/tpm12/rc.ts';
import { Tpm12Client, Tpm12ResponseError } from '../tpm/tpm12/client/index.ts';
import { pcrInfoLongFor, publicKeyOf } from '../tpm/tpm12/client/helpers.ts';
import { certifyInfo, certifyInfo2, quoteInfo } from '../tpm/tpm12/structures/attest.ts';
import { key, type Key } from '../tpm/tpm12/structures/key.ts';
import { storedData } from '../tpm/tpm12/structures/stored-data.ts';
import type { HostTpm } from './host-tpm.ts';
import { ChipRefusal, expectedPcrValues, type ChipClient, type ChipKey, type KeyCertification, type Quote, type SignatureScheme } from './chip-client.ts';

/** The TCG well-known secret: twenty zero bytes. */
const WELL_KNOWN = Buffer.alloc(20);
const BLOB_MAGIC = 0x5631; // "V1"
const KIND = { sealed: 1, signing: 2, identity: 3 } as const;
const COUNTER_LABEL = Buffer.from('vtpd', 'latin1');
/** TPM_CAP_PROP_OWNER. */
const PROP_OWNER = 0x111;

const sha1 = (...parts: Uint8Array[]): Buffer => {
  const h = createHash('sha1');
  for (const p of parts) h.update(p);
  return h.digest();
};

/** A 1.2 nonce is exactly 20 bytes; longer or shorter ones are hashed to fit. */
const nonce20 = (n: Uint8Array): Buffer => (n.length === 20 ? Buffer.from(n) : sha1(n));

export class Tpm12ChipClient implements ChipClient {
  readonly personality = 'tpm12' as const;
  readonly pcrHash = 'sha1' as const;

  constructor(readonly chip: HostTpm) {}

  private turn<T>(job: (tpm: Tpm12Client) => Promise<T>): Promise<T> {
    return this.chip.exclusive((exec) => job(new Tpm12Client(exec))).catch((e) => {
      throw refusal(e);
    });
  }

  takeOwnership(): Promise<void> {
    return this.turn(async (tpm) => {
      const owned = await tpm.getCapability(CAP.PROPERTY, u32be(PROP_OWNER));
      if (owned[0] === 1) return;
      await tpm.takeOwnership(WELL_KNOWN, WELL_KNOWN);
    });
  }

  measure(pcr: number, data: Uint8Array): Promise<void> {
    return this.turn(async (tpm) => void (await tpm.extend(pcr, sha1(data))));
  }

  readPcrs(pcrs: readonly number[]): Promise<Buffer[]> {
    return this.turn((tpm) => readValues(tpm, pcrs));
  }

  seal(secret: Uint8Array, pcrs: readonly number[], expected?: ReadonlyMap<number, Buffer>): Promise<Buffer> {
    return this.turn(async (tpm) => {
      const bound = expected ? expectedPcrValues('sha1', pcrs, expected) : { pcrs: [...pcrs], values: await readValues(tpm, pcrs) };
      const info = pcrInfoLongFor(bound.pcrs, bound.values);
      const blob = await tpm.seal(KH.SRK, WELL_KNOWN, WELL_KNOWN, Buffer.from(secret), info);
      return encodeBlob(KIND.sealed, encodeWith(storedData, blob));
    });
  }

  unseal(blob: Buffer): Promise<Buffer> {
    const body = decodeBlob(blob, KIND.sealed);
    const stored = decodeWith(storedData, body);
    return this.turn((tpm) => tpm.unseal(KH.SRK, WELL_KNOWN, WELL_KNOWN, stored));
  }

  createSigningKey(pcrs: readonly number[]): Promise<ChipKey> {
    return this.turn(async (tpm) => {
      const pcrInfo = pcrInfoLongFor([...pcrs], await readValues(tpm, pcrs));
      const k = await tpm.createWrapKey(KH.SRK, WELL_KNOWN, { usage: KEY_USAGE.SIGNING, pcrInfo }, WELL_KNOWN);
      return chipKey(KIND.signing, k);
    });
  }

  sign(k: ChipKey, data: Uint8Array): Promise<{ signature: Buffer; scheme: SignatureScheme }> {
    const wrapped = decodeKey(k.blob, KIND.signing);
    return this.turn((tpm) =>
      withLoaded(tpm, wrapped, async (h) => ({ signature: await tpm.sign(h, WELL_KNOWN, sha1(data)), scheme: 'rsassa-sha1' as const })),
    );
  }

  createIdentityKey(): Promise<ChipKey> {
    return this.turn(async (tpm) => {
      const { idKey } = await tpm.makeIdentity(WELL_KNOWN, WELL_KNOWN, WELL_KNOWN, sha1(Buffer.from('vtpmd host identity')));
      return chipKey(KIND.identity, idKey);
    });
  }

  certifyKey(k: ChipKey, identity: ChipKey, nonce: Uint8Array): Promise<KeyCertification> {
    const certified = decodeKey(k.blob);
    const id = decodeKey(identity.blob, KIND.identity);
    return this.turn((tpm) =>
      withLoaded(tpm, id, (idHandle) =>
        withLoaded(tpm, certified, async (keyHandle) => {
          const r = await tpm.certifyKey(idHandle, WELL_KNOWN, keyHandle, WELL_KNOWN, nonce20(nonce));
          // TPM_CERTIFY_INFO starts with the version 1.1; TPM_CERTIFY_INFO2 with its tag.
          const info = r.certifyInfo[0] === 1 ? decodeWith(certifyInfo, r.certifyInfo) : decodeWith(certifyInfo2, r.certifyInfo);
          return { signed: r.certifyInfo, signature: r.sig, scheme: 'rsassa-sha1' as const, nonce: info.data, certifiedKeyId: info.pubkeyDigest };
        }),
      ),
    );
  }

  quote(identity: ChipKey, pcrs: readonly number[], nonce: Uint8Array): Promise<Quote> {
    const id = decodeKey(identity.blob, KIND.identity);
    return this.turn((tpm) =>
      withLoaded(tpm, id, async (h) => {
        const q = await tpm.quote(h, WELL_KNOWN, nonce20(nonce), pcrs);
        const info = decodeWith(quoteInfo, q.signed);
        return { signed: q.signed, signature: q.sig, scheme: 'rsassa-sha1' as const, nonce: info.externalData, pcrDigest: info.digestValue };
      }),
    );
  }

  createCounter(auth?: Uint8Array): Promise<{ id: number; value: bigint }> {
    return this.turn(async (tpm) => {
      const { countID, value } = await tpm.createCounter(WELL_KNOWN, counterAuth(auth), COUNTER_LABEL);
      return { id: countID, value: BigInt(value.counter) };
    });
  }

  readCounter(id: number): Promise<bigint> {
    return this.turn(async (tpm) => BigInt((await tpm.readCounter(id)).counter));
  }

  incrementCounter(id: number, auth?: Uint8Array): Promise<bigint> {
    return this.turn(async (tpm) => BigInt((await tpm.incrementCounter(id, counterAuth(auth))).counter));
  }
}

async function readValues(tpm: Tpm12Client, pcrs: readonly number[]): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (const p of pcrs) out.push(await tpm.pcrRead(p));
  return out;
}

async function withLoaded<T>(tpm: Tpm12Client, k: Key, use: (handle: number) => Promise<T>): Promise<T> {
  const h = await tpm.loadKey2(KH.SRK, WELL_KNOWN, k);
  try {
    return await use(h);
  } finally {
    await tpm.flushSpecific(h);
  }
}

function chipKey(kind: number, k: Key): ChipKey {
  return { blob: encodeBlob(kind, encodeWith(key, k)), publicKey: publicKeyOf({ algorithmParms: k.algorithmParms, pubKey: k.pubKey }) };
}

function encodeWith<T>(c: { encode(w: Writer, v: T): void }, v: T): Buffer {
  const w = new Writer(1024);
  c.encode(w, v);
  return Buffer.from(w.finish());
}

function decodeWith<T>(c: { decode(r: Reader): T }, b: Buffer): T {
  try {
    const r = new Reader(b);
    const v = c.decode(r);
    if (r.remaining !== 0) throw new Error('trailing bytes');
    return v;
  } catch {
    throw new ChipRefusal('bad-blob', 'not a well-formed TPM 1.2 structure (damaged blob or response)');
  }
}

function encodeBlob(kind: number, body: Buffer): Buffer {
  const h = Buffer.alloc(3);
  h.writeUInt16BE(BLOB_MAGIC);
  h[2] = kind;
  return Buffer.concat([h, body]);
}

function decodeBlob(blob: Buffer, kind?: number): Buffer {
  if (blob.length < 3 || blob.readUInt16BE(0) !== BLOB_MAGIC || (kind !== undefined && blob[2] !== kind)) {
    throw new ChipRefusal('bad-blob', 'not a TPM 1.2 chip blob of the expected kind (damaged, or made for another purpose)');
  }
  return blob.subarray(3);
}

function decodeKey(blob: Buffer, kind?: number): Key {
  return decodeWith(key, decodeBlob(blob, kind));
}

function refusal(e: unknown): unknown {
  if (!(e instanceof Tpm12ResponseError)) return e;
  if (e.rc === RC.WRONGPCRVAL) return new ChipRefusal('pcr-mismatch', 'the PCRs no longer hold the values this blob is bound to', e.rc);
  if (e.rc === RC.DECRYPT_ERROR || e.rc === RC.BAD_DATASIZE || e.rc === RC.INVALID_KEYUSAGE) {
    return new ChipRefusal('bad-blob', 'the chip rejected the blob (altered, or made by another chip)', e.rc);
  }
  if (e.rc === RC.AUTHFAIL) return new ChipRefusal('auth', 'the chip refused the authorization', e.rc);
  if (e.rc === RC.RESOURCES || e.rc === RC.NOSPACE) return new ChipRefusal('resources', 'the chip has no free slot', e.rc);
  return e;
}

/** A counter's 20-byte authData: the secret's SHA-1 digest, or the well-known secret without one. */
function counterAuth(auth: Uint8Array | undefined): Buffer {
  return auth ? createHash('sha1').update(auth).digest() : WELL_KNOWN;
}
