/**
 * The outer blob of a hardware-backed key: what the guest holds as the key's TPM2B_PRIVATE. It
 * carries the chip's own private blob for the key together with what the vTPM must enforce
 * itself — the key's authValue, the digest of its (virtual) public area and its virtual PCR
 * binding — and the chip-side authValue the manager uses the key with, all encrypted and
 * authenticated under the key-binding key (KBK). The chip cannot load it (it is not a
 * TPM2B_PRIVATE the chip made), the guest cannot alter it, and even the inner blob alone is of no
 * use without the chip-side authValue, which never leaves the manager.
 *
 * A storage parent's outer blob also carries its seedValue: the chip holds the parent's private
 * key, which recovers the secrets guests share with it, but the children are the vTPM's, wrapped
 * by the model under this seed as a TPM wraps them under its storage key's.
 *
 * A primary key's chip key is not a blob under the hwSRK but a primary of the chip's storage
 * hierarchy, which the chip derives again from its template whenever it is needed: the blob then
 * carries no inner private part but the unique value the vTPM's seed put into that template. (The
 * guest never holds a primary's blob; the vTPM keeps it with the object, in contexts and in NV.)
 *
 * Format 'vHK3' carries the chip-side authValue, the seed and the primary's unique value, each
 * empty where it does not apply; 'vHK2' (keys made before storage parents and primaries lived in
 * the chip) has neither seed nor unique value, and 'vHK1' (keys made by vtpmd 0.1) not even a
 * chip-side authValue, its chip key having an empty one. Both still open.
 */
import { randomBytes } from 'node:crypto';
import { aesGcmOpen, aesGcmSeal, AES_GCM_IV_BYTES } from '../tpm/crypto/aead.ts';
import { Reader, Writer } from '../tpm/wire/buffer.ts';
import { privateBuf } from '../tpm/tpm2/types/creation.ts';
import { pcrSelectionList, type PcrSelection } from '../tpm/tpm2/types/pcr.ts';
import { public2b, type Public } from '../tpm/tpm2/types/public.ts';

const MAGIC_V1 = Buffer.from('vHK1', 'latin1');
const MAGIC_V2 = Buffer.from('vHK2', 'latin1');
const MAGIC = Buffer.from('vHK3', 'latin1');
const KNOWN_MAGICS = [MAGIC, MAGIC_V2, MAGIC_V1];

export interface BoundKey {
  /** The chip's TPM2B_PRIVATE (empty for a primary) and TPM2B_PUBLIC for the key. */
  readonly innerPrivate: Buffer;
  readonly innerPublic: Public;
  readonly authValue: Buffer;
  /** The chip key's own authValue (random, made with the key); empty for a 'vHK1' key. */
  readonly chipAuth: Buffer;
  /** A storage parent's seedValue, which its children are wrapped under; empty for other keys. */
  readonly seedValue: Buffer;
  /**
   * A primary's contribution to its chip template's unique field, from which the chip derives it
   * again (`innerPrivate` is then empty); empty for keys made under the hwSRK.
   */
  readonly primaryUnique: Buffer;
  /** SHA-256 of the vTPM's TPMT_PUBLIC for the key. */
  readonly publicDigest: Buffer;
  /** The vTPM PCRs the key is bound to and their digest at creation; empty selection = unbound. */
  readonly pcrSelection: PcrSelection[];
  readonly pcrDigest: Buffer;
}

function magicOf(b: Buffer): Buffer | undefined {
  if (b.length <= MAGIC.length) return undefined;
  const m = b.subarray(0, MAGIC.length);
  return KNOWN_MAGICS.find((known) => m.equals(known));
}

export function isOuterBlob(b: Buffer): boolean {
  return magicOf(b) !== undefined;
}

export function wrapBoundKey(kbk: Buffer, k: BoundKey): Buffer {
  const w = new Writer(1024);
  privateBuf.encode(w, k.innerPrivate);
  public2b.encode(w, k.innerPublic);
  w.u16(k.authValue.length).bytes(k.authValue);
  w.u16(k.chipAuth.length).bytes(k.chipAuth);
  w.u16(k.seedValue.length).bytes(k.seedValue);
  w.u16(k.primaryUnique.length).bytes(k.primaryUnique);
  w.u16(k.publicDigest.length).bytes(k.publicDigest);
  pcrSelectionList.encode(w, k.pcrSelection);
  w.u16(k.pcrDigest.length).bytes(k.pcrDigest);
  const iv = randomBytes(AES_GCM_IV_BYTES);
  return Buffer.concat([MAGIC, iv, aesGcmSeal(kbk, iv, w.finish(), MAGIC)]);
}

/** The bound key, or undefined if the blob was not made under this KBK or was altered. */
export function unwrapBoundKey(kbk: Buffer, outer: Buffer): BoundKey | undefined {
  const magic = magicOf(outer);
  if (!magic || outer.length < MAGIC.length + AES_GCM_IV_BYTES) return undefined;
  const iv = outer.subarray(MAGIC.length, MAGIC.length + AES_GCM_IV_BYTES);
  const plain = aesGcmOpen(kbk, iv, outer.subarray(MAGIC.length + AES_GCM_IV_BYTES), magic);
  if (!plain) return undefined;
  try {
    const r = new Reader(plain);
    const innerPrivate = privateBuf.decode(r);
    const innerPublic = public2b.decode(r);
    const authValue = Buffer.from(r.bytes(r.u16()));
    const chipAuth = magic === MAGIC_V1 ? Buffer.alloc(0) : Buffer.from(r.bytes(r.u16()));
    const seedValue = magic === MAGIC ? Buffer.from(r.bytes(r.u16())) : Buffer.alloc(0);
    const primaryUnique = magic === MAGIC ? Buffer.from(r.bytes(r.u16())) : Buffer.alloc(0);
    const publicDigest = Buffer.from(r.bytes(r.u16()));
    const pcrSelection = pcrSelectionList.decode(r);
    const pcrDigest = Buffer.from(r.bytes(r.u16()));
    return r.remaining === 0 ? { innerPrivate, innerPublic, authValue, chipAuth, seedValue, primaryUnique, publicDigest, pcrSelection, pcrDigest } : undefined;
  } catch {
    return undefined;
  }
}
