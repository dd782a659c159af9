/**
 * What the layers above the chip (the PSS, the vMA, the GVTPM manager) ask of the host TPM,
 * whichever personality it speaks. Each operation is one exclusive turn on the chip: the keys it
 * loads are flushed before the next caller's turn, so a chip with three slots serves any number
 * of callers. Blobs are opaque and self-describing; they are safe to store outside the chip
 * because the chip's own storage key protects what is secret in them.
 */
import { createHash, verify, type KeyObject } from 'node:crypto';
import type { Personality } from './chip.ts';

/** A key made and protected by the chip; `blob` reloads it in any later turn. */
export interface ChipKey {
  readonly blob: Buffer;
  readonly publicKey: KeyObject;
}

export type SignatureScheme = 'ecdsa-sha256' | 'rsassa-sha256' | 'rsassa-sha1';

/** Something the chip signed about itself: a quote or a key certification. */
export interface Attestation {
  /** The exact bytes whose hash the chip signed (TPMS_ATTEST, or TPM_QUOTE_INFO / TPM_CERTIFY_INFO). */
  readonly signed: Buffer;
  /** DER (ECDSA) or PKCS#1 v1.5 (RSA) signature, as node:crypto and openssl verify it. */
  readonly signature: Buffer;
  readonly scheme: SignatureScheme;
  /** The caller's nonce as the chip embedded it. */
  readonly nonce: Buffer;
}

export interface Quote extends Attestation {
  /** The digest of the quoted PCR values as the chip computed it. */
  readonly pcrDigest: Buffer;
}

export interface KeyCertification extends Attestation {
  /** The certified key's public part as the chip identified it (its Name, or its pubkey digest). */
  readonly certifiedKeyId: Buffer;
}

/** The chip declined: the PCRs do not hold the values a blob was bound to, a blob is damaged… */
export class ChipRefusal extends Error {
  constructor(
    readonly reason: 'pcr-mismatch' | 'bad-blob' | 'auth' | 'no-owner' | 'resources' | 'untrusted-srk',
    message: string,
    readonly rc?: number,
  ) {
    super(message);
    this.name = 'ChipRefusal';
  }
}

export interface ChipClient {
  readonly personality: Personality;
  /** The PCR bank the operations below bind to and report: SHA-256 on TPM 2.0, SHA-1 on TPM 1.2. */
  readonly pcrHash: 'sha256' | 'sha1';

  /** Creates the storage root key (and owner) if the chip has none yet; a no-op otherwise. */
  takeOwnership(): Promise<void>;
  /** Extends `pcr` with the measurement (digest in the chip's PCR hash) of `data`. */
  measure(pcr: number, data: Uint8Array): Promise<void>;
  readPcrs(pcrs: readonly number[]): Promise<Buffer[]>;

  /**
   * Seals `secret` so that only this chip releases it, and only while `pcrs` hold their present
   * values — or, with `expected`, the values it gives for each of `pcrs` (in the chip's PCR hash):
   * what they will hold once other code is measured.
   */
  seal(secret: Uint8Array, pcrs: readonly number[], expected?: ReadonlyMap<number, Buffer>): Promise<Buffer>;
  unseal(blob: Buffer): Promise<Buffer>;

  /** A signing key the chip uses only while `pcrs` hold their present values. */
  createSigningKey(pcrs: readonly number[]): Promise<ChipKey>;
  /** Signs `data` (hashed by the chip's scheme) with a key from createSigningKey. */
  sign(key: ChipKey, data: Uint8Array): Promise<{ signature: Buffer; scheme: SignatureScheme }>;

  /** An attestation identity key: it signs only what the chip itself attests. */
  createIdentityKey(): Promise<ChipKey>;
  certifyKey(key: ChipKey, identity: ChipKey, nonce: Uint8Array): Promise<KeyCertification>;
  quote(identity: ChipKey, pcrs: readonly number[], nonce: Uint8Array): Promise<Quote>;

  /**
   * A new monotonic counter; returns its id and present value. With `auth`, only a caller giving
   * the same secret to incrementCounter moves it; without, anyone using the chip can.
   */
  createCounter(auth?: Uint8Array): Promise<{ id: number; value: bigint }>;
  /** A counter's value; with its `auth`, read with it where the counter lets its key read it (no owner authorization needed). */
  readCounter(id: number, auth?: Uint8Array): Promise<bigint>;
  incrementCounter(id: number, auth?: Uint8Array): Promise<bigint>;
}

const NODE_HASH: Record<SignatureScheme, string> = { 'ecdsa-sha256': 'sha256', 'rsassa-sha256': 'sha256', 'rsassa-sha1': 'sha1' };

/** Whether `signature` over `data` verifies under `publicKey` with `scheme`. */
export function verifySignature(publicKey: KeyObject, scheme: SignatureScheme, data: Uint8Array, signature: Uint8Array): boolean {
  try {
    return verify(NODE_HASH[scheme], data, publicKey, signature);
  } catch {
    return false;
  }
}

export function verifyAttestation(publicKey: KeyObject, a: Attestation): boolean {
  return verifySignature(publicKey, a.scheme, a.signed, a.signature);
}

/** The digest the chip's PCR hash gives `data`. */
export function pcrHashOf(hash: 'sha256' | 'sha1', ...parts: Uint8Array[]): Buffer {
  const h = createHash(hash);
  for (const p of parts) h.update(p);
  return h.digest();
}

/**
 * `pcrs` in ascending order (the order PCR composites and PolicyPCR digests take them) with the
 * values `expected` gives them; each must be a digest of the chip's PCR hash.
 */
export function expectedPcrValues(hash: 'sha256' | 'sha1', pcrs: readonly number[], expected: ReadonlyMap<number, Buffer>): { pcrs: number[]; values: Buffer[] } {
  const size = hash === 'sha256' ? 32 : 20;
  const sorted = [...new Set(pcrs)].sort((a, b) => a - b);
  const values = sorted.map((pcr) => {
    const value = expected.get(pcr);
    if (!value) throw new RangeError(`no expected value for PCR ${pcr}`);
    if (value.length !== size) throw new RangeError(`the expected value of PCR ${pcr} has ${value.length} bytes, not the ${size} of a ${hash} PCR`);
    return value;
  });
  return { pcrs: sorted, values };
}

/**
 * Unseals `current`; when the chip refuses it because the PCRs moved, `staged` — the same secret
 * sealed to the values an upgrade expected. Throws the refusal of `current` when neither opens.
 */
export async function unsealCurrentOrStaged(chip: ChipClient, current: Buffer, staged: Buffer | undefined): Promise<{ secret: Buffer; staged: boolean }> {
  try {
    return { secret: await chip.unseal(current), staged: false };
  } catch (e) {
    if (!staged || !(e instanceof ChipRefusal && e.reason === 'pcr-mismatch')) throw e;
    try {
      return { secret: await chip.unseal(staged), staged: true };
    } catch (f) {
      // A staged binding the chip refuses too leaves the current one's refusal to report.
      throw f instanceof ChipRefusal ? e : f;
    }
  }
}
