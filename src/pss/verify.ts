/**
 * The checks a blob passes before its NVM goes back to a vTPM, in the order that names the most
 * specific cause: a blob that cannot be read at all is 'modified'; one that names another PSS is
 * 'foreign' (its tag could not verify here anyway); once the tag verifies, the header is exactly
 * what this PSS wrote, so a wrong VM, a wrong model or an old version is reported as such.
 */
import { constantTimeEqual } from '../tpm/crypto/hash.ts';
import { blobId, openBlob, parseBlob } from './blob.ts';
import { PssViolation } from './errors.ts';
import type { VmRecord } from './records.ts';

export interface RestoreRequest {
  readonly storageKey: Buffer;
  readonly pssId: Buffer;
  readonly vmId: string;
  readonly measurement: Buffer;
  /** What the database says the VM's latest save is. */
  readonly record: VmRecord;
  /** The stored blob, or undefined when the record has none. */
  readonly blob: Buffer | undefined;
}

/** The VM's NVM, or a PssViolation naming the first condition the blob fails. */
export function verifyRestore(r: RestoreRequest): Buffer {
  const fail = (condition: ConstructorParameters<typeof PssViolation>[0], detail: string): never => {
    throw new PssViolation(condition, r.vmId, detail);
  };
  if (r.blob === undefined) return fail('modified', `its stored blob (version ${r.record.version}) is missing`);
  const parsed = parseBlob(r.blob);
  if (!parsed) return fail('modified', `its stored blob is truncated or malformed (${r.blob.length} bytes)`);
  const h = parsed.header;
  if (!h.pssId.equals(r.pssId)) return fail('foreign', `the blob was made by PSS ${h.pssId.toString('hex')}, not by this PSS (${r.pssId.toString('hex')})`);
  const nvm = openBlob(r.storageKey, parsed);
  if (!nvm) return fail('modified', 'the blob fails its authentication tag (altered or truncated)');
  if (h.vmId !== r.vmId) return fail('wrong-owner', `the stored blob is VM ${JSON.stringify(h.vmId)}'s state (its version ${h.version})`);
  if (!h.measurement.equals(r.measurement)) {
    return fail('wrong-measurement', `the state was saved by a model measuring ${short(h.measurement)}, the requesting model measures ${short(r.measurement)}`);
  }
  if (h.version < r.record.version) return fail('not-latest', `the stored blob is version ${h.version}, the latest save is version ${r.record.version}`);
  if (!constantTimeEqual(blobId(r.blob), r.record.blobId)) {
    return fail('not-latest', `the stored blob (version ${h.version}) is not the one the latest save (version ${r.record.version}) recorded`);
  }
  return nvm;
}

/** Enough of a measurement to tell two apart in a message. */
function short(m: Buffer): string {
  return m.length === 0 ? '(empty)' : `${m.subarray(0, 8).toString('hex')}…`;
}
