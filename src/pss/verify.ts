/**
 * The checks a VM's stored chain — its whole image, then its deltas in version order — passes
 * before the NVM goes back to a vTPM, each blob in the order that names the most specific cause:
 * a blob that cannot be read at all is 'modified'; one that names another PSS is 'foreign' (its
 * tag could not verify here anyway); once the tag verifies, the header is exactly what this PSS
 * wrote, so a wrong VM, a wrong model or an old version is reported as such. The links (each
 * delta names its predecessor's blob id, the record names the last blob's) make a blob that was
 * replaced by an older one, or left out, 'not-latest'.
 */
import { constantTimeEqual } from '../tpm/crypto/hash.ts';
import { blobId, parseBlob, type BlobKey } from './blob.ts';
import { applyDelta } from '../tpm/state-delta.ts';
import { PssViolation } from './errors.ts';
import type { VmRecord } from './records.ts';

export interface RestoreRequest {
  readonly blobKey: BlobKey;
  readonly pssId: Buffer;
  readonly vmId: string;
  readonly measurement: Buffer;
  /** What the database says the VM's latest save is. */
  readonly record: VmRecord;
  /** The stored blobs of versions record.base … record.version, in order; undefined where missing. */
  readonly blobs: readonly (Buffer | undefined)[];
}

/** The VM's NVM, or a PssViolation naming the first condition its chain fails. */
export function verifyRestore(r: RestoreRequest): Buffer {
  const fail = (condition: ConstructorParameters<typeof PssViolation>[0], detail: string): never => {
    throw new PssViolation(condition, r.vmId, detail);
  };
  const { base, version } = r.record;
  if (r.blobs.length !== version - base + 1) return fail('modified', `its chain holds ${r.blobs.length} blobs where versions ${base}–${version} need ${version - base + 1}`);
  let image: Buffer | undefined;
  let previous: Buffer | undefined;
  for (let i = 0; i < r.blobs.length; i++) {
    const expected = base + i;
    const blob = r.blobs[i];
    const what = i === 0 ? 'its stored blob' : `its stored delta of version ${expected}`;
    if (blob === undefined) return fail('modified', `${what} (version ${expected}) is missing`);
    const parsed = parseBlob(blob);
    if (!parsed) return fail('modified', `${what} is truncated or malformed (${blob.length} bytes)`);
    const h = parsed.header;
    if (!h.pssId.equals(r.pssId)) return fail('foreign', `the blob was made by PSS ${h.pssId.toString('hex')}, not by this PSS (${r.pssId.toString('hex')})`);
    const plain = r.blobKey.open(parsed);
    if (!plain) return fail('modified', `${what} fails its authentication tag (altered or truncated)`);
    if (h.vmId !== r.vmId) return fail('wrong-owner', `${what} is VM ${JSON.stringify(h.vmId)}'s state (its version ${h.version})`);
    if (!h.measurement.equals(r.measurement)) {
      return fail('wrong-measurement', `the state was saved by a model measuring ${short(h.measurement)}, the requesting model measures ${short(r.measurement)}`);
    }
    if (h.version < expected) return fail('not-latest', `${what} is version ${h.version}, the latest save is version ${version}`);
    if (h.version > expected || (i === 0) !== (h.prevId === undefined)) return fail('modified', `${what} is version ${h.version} of the wrong kind or place in the chain`);
    if (i > 0 && !constantTimeEqual(h.prevId!, previous!)) return fail('not-latest', `the delta of version ${expected} does not follow the stored version ${expected - 1}`);
    image = i === 0 ? plain : applyDelta(image!, plain);
    if (!image) return fail('modified', `the delta of version ${expected} does not fit the image before it`);
    previous = blobId(blob);
  }
  if (!constantTimeEqual(previous!, r.record.blobId)) {
    return fail('not-latest', `the stored blob (version ${version}) is not the one the latest save (version ${version}) recorded`);
  }
  return image!;
}

/** Enough of a measurement to tell two apart in a message. */
function short(m: Buffer): string {
  return m.length === 0 ? '(empty)' : `${m.subarray(0, 8).toString('hex')}…`;
}
