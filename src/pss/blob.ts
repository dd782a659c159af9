/**
 * The envelope a vTPM's NVM is stored in. The header says, in the clear, whose state it is and
 * which save it came from, so a check can name what is wrong with a blob before or without
 * decrypting it; the whole header is the AEAD's associated data, so none of it can be changed
 * without the tag failing.
 *
 *   offset  size  field
 *   0       4     magic "VPSB"
 *   4       1     format: 1 a whole NVM image, 2 a delta
 *   5       1     protection: how the body is encrypted under the storage key of the PSS named
 *                 next (below)
 *   6       16    PSS id
 *   22      1+L   vmId: length L (1–255), UTF-8
 *   ·       1+M   model measurement: length M (0–64)
 *   ·       8     version, unsigned big-endian
 *   ·       32    nonce, fresh for every save
 *   ·       32    format 2 only: the blob id of the save this one changes (see below)
 *   ·       rest  ciphertext of the NVM, then the 16-byte GCM tag
 *
 * Format 1 holds a whole NVM image. Format 2 holds a delta (delta.ts) against the save whose
 * blob id it names, so a VM's state is a chain: one whole image, then deltas in version order,
 * each naming its predecessor; the VM's record names the last. Any blob of the chain that is
 * replaced, removed or reordered breaks a link.
 *
 * Protections. 2, what saves write: XAES-256-GCM (crypto/xaes.ts) under the storage key, with the
 * first 24 bytes of the nonce as its nonce. 1, what vtpmd 0.1 wrote and loads still open:
 * AES-256-GCM under a key and IV used for this blob only, HMAC-SHA256-derived from the storage
 * key over the label "VTPMD PSS BLOB v1", the PSS id and the nonce (oneTimeAeadKey). Both give each
 * blob its own GCM key; XAES does it with two AES blocks instead of two HMACs. The byte also
 * leaves room for migration: a blob re-encrypted to another PSS's key gets a protection of its own
 * without changing anything else.
 */
import { aesGcmOpen, AES_GCM_TAG_BYTES, oneTimeAeadKey } from '../tpm/crypto/aead.ts';
import { digest } from '../tpm/crypto/hash.ts';
import { Xaes256Gcm, XAES_NONCE_BYTES } from '../tpm/crypto/xaes.ts';
import { ALG } from '../tpm/tpm2/constants.ts';

const MAGIC = Buffer.from('VPSB', 'latin1');
export const BLOB_FORMAT = 1;
export const DELTA_BLOB_FORMAT = 2;
export const PROTECTION_HMAC_KEYED_AES_GCM = 1;
export const PROTECTION_XAES_256_GCM = 2;
export const PSS_ID_BYTES = 16;
export const NONCE_BYTES = 32;
export const BLOB_ID_BYTES = 32;
export const MAX_VM_ID_BYTES = 255;
export const MAX_MEASUREMENT_BYTES = 64;

export interface BlobHeader {
  readonly format: number;
  readonly protection: number;
  readonly pssId: Buffer;
  readonly vmId: string;
  readonly measurement: Buffer;
  readonly version: number;
  readonly nonce: Buffer;
  /** A delta's predecessor (its blob id); undefined for a whole image. */
  readonly prevId?: Buffer | undefined;
}

export interface ParsedBlob {
  readonly header: BlobHeader;
  /** The exact header bytes, as authenticated. */
  readonly headerBytes: Buffer;
  /** Ciphertext || tag. */
  readonly sealed: Buffer;
}

/** What a save knows of its blob's header before sealing it. */
export type HeaderFields = Omit<BlobHeader, 'format' | 'protection'>;

/** The length of `h` encoded. */
export function headerLength(h: HeaderFields): number {
  return 4 + 2 + PSS_ID_BYTES + 1 + Buffer.byteLength(h.vmId, 'utf8') + 1 + h.measurement.length + 8 + NONCE_BYTES + (h.prevId ? BLOB_ID_BYTES : 0);
}

/** The length of the blob sealing `bodyLength` bytes under header `h`. */
export function sealedLength(h: HeaderFields, bodyLength: number): number {
  return headerLength(h) + bodyLength + AES_GCM_TAG_BYTES;
}

export function encodeHeader(h: HeaderFields): Buffer {
  if (h.pssId.length !== PSS_ID_BYTES) throw new RangeError(`a PSS id is ${PSS_ID_BYTES} bytes`);
  if (h.nonce.length !== NONCE_BYTES) throw new RangeError(`a blob nonce is ${NONCE_BYTES} bytes`);
  if (h.prevId && h.prevId.length !== BLOB_ID_BYTES) throw new RangeError(`a blob id is ${BLOB_ID_BYTES} bytes`);
  const vmIdBytes = Buffer.byteLength(h.vmId, 'utf8');
  const out = Buffer.allocUnsafe(headerLength(h));
  let at = MAGIC.copy(out, 0);
  out[at++] = h.prevId ? DELTA_BLOB_FORMAT : BLOB_FORMAT;
  out[at++] = PROTECTION_XAES_256_GCM;
  at += h.pssId.copy(out, at);
  out[at++] = vmIdBytes;
  at += out.write(h.vmId, at, 'utf8');
  out[at++] = h.measurement.length;
  at += h.measurement.copy(out, at);
  at = out.writeBigUInt64BE(BigInt(h.version), at);
  at += h.nonce.copy(out, at);
  if (h.prevId) h.prevId.copy(out, at);
  return out;
}

/** The header and sealed body of `blob`, or undefined when it is not a whole blob of a known format. */
export function parseBlob(blob: Buffer): ParsedBlob | undefined {
  let at = 0;
  const take = (n: number): Buffer | undefined => {
    if (at + n > blob.length) return undefined;
    const out = blob.subarray(at, at + n);
    at += n;
    return out;
  };
  const magic = take(4);
  const kind = take(2);
  if (!magic || !magic.equals(MAGIC) || !kind || (kind[0] !== BLOB_FORMAT && kind[0] !== DELTA_BLOB_FORMAT)) return undefined;
  if (kind[1] !== PROTECTION_XAES_256_GCM && kind[1] !== PROTECTION_HMAC_KEYED_AES_GCM) return undefined;
  const pssId = take(PSS_ID_BYTES);
  const vmIdLen = take(1);
  const vmId = vmIdLen && take(vmIdLen[0]!);
  const mLen = take(1);
  const measurement = mLen && take(mLen[0]!);
  const version = take(8);
  const nonce = take(NONCE_BYTES);
  const prevId = kind[0] === DELTA_BLOB_FORMAT ? take(BLOB_ID_BYTES) : undefined;
  if (!pssId || !vmId || !measurement || !version || !nonce || (kind[0] === DELTA_BLOB_FORMAT && !prevId)) return undefined;
  const sealed = blob.subarray(at);
  if (sealed.length < AES_GCM_TAG_BYTES) return undefined;
  const v = version.readBigUInt64BE(0);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) return undefined;
  return {
    header: {
      format: kind[0]!,
      protection: kind[1]!,
      pssId: Buffer.from(pssId),
      vmId: vmId.toString('utf8'),
      measurement: Buffer.from(measurement),
      version: Number(v),
      nonce: Buffer.from(nonce),
      prevId: prevId && Buffer.from(prevId),
    },
    headerBytes: blob.subarray(0, at),
    sealed,
  };
}

/** A PSS storage key, ready to seal and open blobs (XAES's per-key set-up done once). */
export class BlobKey {
  private readonly xaes: Xaes256Gcm;

  constructor(private readonly storageKey: Buffer) {
    this.xaes = new Xaes256Gcm(storageKey);
  }

  /** Encrypts `nvm` under this key and the header's nonce, the header as associated data. */
  seal(header: HeaderFields, nvm: Uint8Array): Buffer {
    return this.sealEncoded(encodeHeader(header), nvm);
  }

  /** `seal` for a header already encoded (by encodeHeader): what a sealing thread receives. */
  sealEncoded(headerBytes: Buffer, nvm: Uint8Array): Buffer {
    // The nonce ends the header, or precedes the predecessor's id in a delta's.
    const end = headerBytes.length - (headerBytes[4] === DELTA_BLOB_FORMAT ? BLOB_ID_BYTES : 0);
    const nonce = headerBytes.subarray(end - NONCE_BYTES, end - NONCE_BYTES + XAES_NONCE_BYTES);
    return this.xaes.seal(nonce, nvm, headerBytes, headerBytes);
  }

  /** The NVM inside a parsed blob, or undefined when its tag does not verify under this key. */
  open(parsed: ParsedBlob): Buffer | undefined {
    const h = parsed.header;
    if (h.protection === PROTECTION_XAES_256_GCM) return this.xaes.open(h.nonce.subarray(0, XAES_NONCE_BYTES), parsed.sealed, parsed.headerBytes);
    const { key, iv } = oneTimeAeadKey(this.storageKey, 'VTPMD PSS BLOB v1', Buffer.concat([h.pssId, h.nonce]));
    return aesGcmOpen(key, iv, parsed.sealed, parsed.headerBytes);
  }
}

/** The blob id a record names: SHA-256 of the whole blob. */
export function blobId(blob: Uint8Array): Buffer {
  return digest(ALG.SHA256, blob);
}
