/**
 * The outer blob of a hardware-backed key: what the guest holds as the key's TPM2B_PRIVATE. It
 * carries the chip's own private blob for the key together with what the vTPM must enforce
 * itself — the key's authValue, the digest of its (virtual) public area and its virtual PCR
 * binding — and the chip-side authValue the manager uses the key with, all encrypted and
 * authenticated under the key-binding key (KBK). The chip cannot load it (it is not a
 * TPM2B_PRIVATE the chip made), the guest cannot alter it, and even the inner blob alone is of no
 * use without the chip-side authValue, which never leaves the manager.
 *
 * Format 'vHK2' carries the chip-side authValue; 'vHK1' (keys made by vtpmd 0.1) has none and
 * still opens, its chip key having an empty authValue.
 */
import { randomBytes } from 'node:crypto';
import { aesGcmOpen, aesGcmSeal, AES_GCM_IV_BYTES } from '../tpm/crypto/aead.ts';
import { Reader, Writer } from '../tpm/wire/buffer.ts';
import { privateBuf } from '../tpm/tpm2/types/creation.ts';
import { pcrSelectionList, type PcrSelection } from '../tpm/tpm2/types/pcr.ts';
import { public2b, type Public } from '../tpm/tpm2/types/public.ts';

const MAGIC_V1 = Buffer.from('vHK1', 'latin1');
const MAGIC = Buffer.from('vHK2', 'latin1');

export interface BoundKey {
  /** The chip's TPM2B_PRIVATE and TPM2B_PUBLIC for the key, under the hwSRK. */
  readonly innerPrivate: Buffer;
  readonly innerPublic: Public;
  readonly authValue: Buffer;
  /** The chip key's own authValue (random, made with the key); empty for a 'vHK1' key. */
  readonly chipAuth: Buffer;
  /** SHA-256 of the vTPM's TPMT_PUBLIC for the key. */
  readonly publicDigest: Buffer;
  /** The vTPM PCRs the key is bound to and their digest at creation; empty selection = unbound. */
  readonly pcrSelection: PcrSelection[];
  readonly pcrDigest: Buffer;
}

function magicOf(b: Buffer): Buffer | undefined {
  if (b.length <= MAGIC.length) return undefined;
  const m = b.subarray(0, MAGIC.length);
  return m.equals(MAGIC) ? MAGIC : m.equals(MAGIC_V1) ? MAGIC_V1 : undefined;
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
    const chipAuth = magic === MAGIC ? Buffer.from(r.bytes(r.u16())) : Buffer.alloc(0);
    const publicDigest = Buffer.from(r.bytes(r.u16()));
    const pcrSelection = pcrSelectionList.decode(r);
    const pcrDigest = Buffer.from(r.bytes(r.u16()));
    return r.remaining === 0 ? { innerPrivate, innerPublic, authValue, chipAuth, publicDigest, pcrSelection, pcrDigest } : undefined;
  } catch {
    return undefined;
  }
}
