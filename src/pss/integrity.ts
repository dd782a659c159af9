/**
 * What makes the database as a whole tamper-evident. The chip counter alone says how many durable
 * commits happened; it cannot say which records they left behind. So the head carries a keyed
 * set digest of all records — the XOR of an HMAC of each record, as in an MSet-XOR hash, which
 * a commit updates in O(records changed) — plus the epoch, record count, PSS id and counter id,
 * all under an HMAC. Without the storage key nobody can make a head that matches a database in
 * which one record was rolled back, dropped or added, nor point the PSS at another counter.
 */
import { hmac, constantTimeEqual } from '../tpm/crypto/hash.ts';
import { kdfa } from '../tpm/crypto/kdf.ts';
import { ALG } from '../tpm/tpm2/constants.ts';

export const DIGEST_BYTES = 32;

export interface IntegrityKeys {
  readonly record: Buffer;
  readonly head: Buffer;
  /** What moves the PSS's chip counter: without it nobody else using the chip can push the counter ahead of the database (which would read as a rollback). */
  readonly counter: Buffer;
}

export function integrityKeys(storageKey: Buffer, pssId: Buffer): IntegrityKeys {
  return {
    record: kdfa(ALG.SHA256, storageKey, 'VTPMD PSS RECORD', pssId, Buffer.alloc(0), 256),
    head: kdfa(ALG.SHA256, storageKey, 'VTPMD PSS HEAD', pssId, Buffer.alloc(0), 256),
    counter: kdfa(ALG.SHA256, storageKey, 'VTPMD PSS COUNTER', pssId, Buffer.alloc(0), 256),
  };
}

/** A record's contribution to the set digest; the level key is bound so a record cannot move. */
export function recordDigest(recordKey: Buffer, levelKey: string, value: Buffer): Buffer {
  return hmac(ALG.SHA256, recordKey, Buffer.from(levelKey, 'utf8'), Buffer.from([0]), value);
}

/** Adds or removes (the same operation) a digest from an aggregate, in place. */
export function xorInto(aggregate: Buffer, d: Buffer): void {
  for (let i = 0; i < DIGEST_BYTES; i++) aggregate[i]! ^= d[i]!;
}

export interface HeadFields {
  readonly pssId: Buffer;
  readonly counterId: number;
  readonly epoch: bigint;
  readonly count: number;
  readonly aggregate: Buffer;
}

export function headMac(keys: IntegrityKeys, f: HeadFields): Buffer {
  const fixed = Buffer.alloc(16);
  fixed.writeUInt32BE(f.counterId >>> 0, 0);
  fixed.writeBigUInt64BE(f.epoch, 4);
  fixed.writeUInt32BE(f.count, 12);
  return hmac(ALG.SHA256, keys.head, Buffer.from('head v1', 'latin1'), f.pssId, fixed, f.aggregate);
}

export function headMacValid(keys: IntegrityKeys, f: HeadFields, mac: Buffer): boolean {
  const expected = headMac(keys, f);
  return mac.length === expected.length && constantTimeEqual(mac, expected);
}

/** Model code digests an upgrade authorized to continue from an earlier code's state: earlier → later. */
export type CodeTransition = readonly [Buffer, Buffer];

/** Binds the list of authorized code transitions to the storage key, so nobody else adds one. */
export function codeTransitionsMac(keys: IntegrityKeys, pairs: readonly CodeTransition[]): Buffer {
  const parts: Buffer[] = [Buffer.from('code transitions v1', 'latin1')];
  for (const [from, to] of pairs) {
    for (const d of [from, to]) {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(d.length);
      parts.push(len, d);
    }
  }
  return hmac(ALG.SHA256, keys.head, ...parts);
}
