import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { aesGcmOpen, aesGcmSeal } from '../../src/tpm/crypto/aead.ts';
import { BlobKey, blobId, parseBlob, PROTECTION_HMAC_KEYED_AES_GCM, PROTECTION_XAES_256_GCM } from '../../src/pss/blob.ts';
import { PssError, PssViolation } from '../../src/pss/errors.ts';
import { decodeHead, decodeMeta, decodeRecord, encodeHead, encodeMeta, encodeRecord } from '../../src/pss/records.ts';
import { verifyRestore } from '../../src/pss/verify.ts';

const RAW_KEY = Buffer.alloc(32, 7);
const KEY32 = new BlobKey(RAW_KEY);
const PSS_ID = Buffer.alloc(16, 1);

function header(over: Partial<{ vmId: string; version: number; measurement: Buffer; pssId: Buffer }> = {}) {
  return { pssId: PSS_ID, vmId: 'vm-a', measurement: Buffer.alloc(32, 9), version: 3, nonce: randomBytes(32), ...over };
}

describe('AES-256-GCM helpers', () => {
  test('open returns the plaintext only with the same key, IV and associated data', () => {
    const iv = Buffer.alloc(12, 2);
    const sealed = aesGcmSeal(RAW_KEY, iv, Buffer.from('nvm'), Buffer.from('header'));
    assert.equal(aesGcmOpen(RAW_KEY, iv, sealed, Buffer.from('header'))?.toString(), 'nvm');
    assert.equal(aesGcmOpen(RAW_KEY, iv, sealed, Buffer.from('headex')), undefined);
    assert.equal(aesGcmOpen(Buffer.alloc(32, 8), iv, sealed, Buffer.from('header')), undefined);
    assert.equal(aesGcmOpen(RAW_KEY, Buffer.alloc(12, 3), sealed, Buffer.from('header')), undefined);
    assert.equal(aesGcmOpen(RAW_KEY, iv, sealed.subarray(0, 10), Buffer.from('header')), undefined);
  });

  test('keys and IVs of the wrong size are rejected rather than used', () => {
    assert.throws(() => aesGcmSeal(Buffer.alloc(16), Buffer.alloc(12), Buffer.alloc(1), Buffer.alloc(0)), RangeError);
    assert.throws(() => aesGcmSeal(RAW_KEY, Buffer.alloc(16), Buffer.alloc(1), Buffer.alloc(0)), RangeError);
  });
});

describe('PSS blob envelope', () => {
  test('a sealed blob parses to its header and opens to its NVM', () => {
    const h = header();
    const blob = KEY32.seal(h, Buffer.from('the nvm'));
    const parsed = parseBlob(blob)!;
    assert.equal(parsed.header.vmId, 'vm-a');
    assert.equal(parsed.header.version, 3);
    assert.deepEqual(parsed.header.pssId, PSS_ID);
    assert.deepEqual(parsed.header.nonce, h.nonce);
    assert.equal(KEY32.open(parsed)?.toString(), 'the nvm');
    assert.equal(new BlobKey(Buffer.alloc(32, 6)).open(parsed), undefined, 'another storage key does not open it');
    assert.equal(parsed.header.protection, PROTECTION_XAES_256_GCM);
  });

  test('a blob vtpmd 0.1 sealed (HMAC-derived AES-GCM key, protection 1) still opens, and only under its key', () => {
    const legacy = Buffer.from(
      '5650534201010101010101010101010101010101010104766d2d6120090909090909090909090909090909090909090909090909090909090909090900000000000000034e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4e4ea9c5b71ac1e2180966d1c4cdbc2da74e440931ccdfb6d721a771fa68f16e53f172afa88196a199e7b31ed9491ebc042899192be730daa1ac6c',
      'hex',
    );
    const parsed = parseBlob(legacy)!;
    assert.equal(parsed.header.protection, PROTECTION_HMAC_KEYED_AES_GCM);
    assert.equal(KEY32.open(parsed)?.toString(), 'an NVM sealed by vtpmd 0.1 (protection 1)');
    assert.equal(new BlobKey(Buffer.alloc(32, 6)).open(parsed), undefined);
    const flipped = Buffer.from(legacy);
    flipped[flipped.length - 20]! ^= 1;
    assert.equal(KEY32.open(parseBlob(flipped)!), undefined);
    const otherProtection = Buffer.from(legacy);
    otherProtection[5] = 3;
    assert.equal(parseBlob(otherProtection), undefined, 'an unknown protection is not parsed');
  });

  test('the same NVM sealed twice gives different blobs (fresh nonce) with different ids', () => {
    const a = KEY32.seal(header(), Buffer.from('same'));
    const b = KEY32.seal(header(), Buffer.from('same'));
    assert.notDeepEqual(a, b);
    assert.notDeepEqual(blobId(a), blobId(b));
  });

  test('every single flipped byte of a blob makes it unparsable or fail its tag', () => {
    const blob = KEY32.seal(header(), Buffer.from('nvm bytes'));
    for (let i = 0; i < blob.length; i++) {
      const bad = Buffer.from(blob);
      bad[i]! ^= 0x01;
      const p = parseBlob(bad);
      assert.ok(!p || KEY32.open(p) === undefined, `byte ${i} flipped still opened`);
    }
  });

  test('every truncation of a blob makes it unparsable or fail its tag', () => {
    const blob = KEY32.seal(header(), Buffer.from('nvm bytes'));
    for (let n = 0; n < blob.length; n++) {
      const p = parseBlob(blob.subarray(0, n));
      assert.ok(!p || KEY32.open(p) === undefined, `truncated to ${n} still opened`);
    }
  });

  test('parseBlob never throws on arbitrary bytes (fuzz)', () => {
    const valid = KEY32.seal(header(), Buffer.from('x'));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(valid.length), (junk, cut) => {
        parseBlob(Buffer.from(junk));
        const spliced = Buffer.concat([valid.subarray(0, cut), Buffer.from(junk)]);
        const p = parseBlob(spliced);
        if (p) KEY32.open(p);
      }),
    );
  });
});

describe('PSS records', () => {
  test('meta, head and VM records round-trip through their encodings', () => {
    const meta = { pssId: PSS_ID, counterId: 0x01500003, sealedKey: randomBytes(200), bindPcrs: [0, 1, 11, 12], counterAuth: true };
    assert.deepEqual(decodeMeta(encodeMeta(meta)), meta);
    // A database made before counters had an authorization has no such field, and reads as false.
    const older = { ...meta, counterAuth: false };
    assert.doesNotMatch(encodeMeta(older).toString(), /counterAuth/);
    assert.deepEqual(decodeMeta(encodeMeta(older)), older);
    const head = { epoch: 2n ** 40n + 5n, count: 3, aggregate: randomBytes(32), mac: randomBytes(32) };
    assert.deepEqual(decodeHead(encodeHead(head)), head);
    const rec = { vmId: 'vm-ü', measurement: randomBytes(32), version: 12, base: 9, blobId: randomBytes(32), nonce: randomBytes(32) };
    assert.deepEqual(decodeRecord(encodeRecord(rec)), rec);
  });

  test('a format 1 record (written before deltas) reads as a chain of one whole image', () => {
    const rec = JSON.parse(encodeRecord({ vmId: 'a', measurement: Buffer.alloc(0), version: 7, base: 7, blobId: Buffer.alloc(32), nonce: Buffer.alloc(32) }).toString());
    delete rec.base;
    rec.format = 1;
    assert.equal(decodeRecord(Buffer.from(JSON.stringify(rec))).base, 7);
    rec.format = 2;
    assert.throws(() => decodeRecord(Buffer.from(JSON.stringify(rec))), (e: unknown) => e instanceof PssViolation && e.condition === 'modified');
  });

  test('an entry of a newer format is a PssError that says which vtpmd reads it', () => {
    const rec = JSON.parse(encodeRecord({ vmId: 'a', measurement: Buffer.alloc(0), version: 1, base: 1, blobId: Buffer.alloc(32), nonce: Buffer.alloc(32) }).toString());
    rec.format = 3;
    assert.throws(() => decodeRecord(Buffer.from(JSON.stringify(rec))), (e: unknown) => e instanceof PssError && e.code === 'bad-database' && /newer/.test(e.message));
  });

  test('decoders refuse arbitrary bytes with a typed error, never anything else (fuzz)', () => {
    const typed = (e: unknown) => e instanceof PssViolation || e instanceof PssError;
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)), fc.json().map((j) => Buffer.from(j))), (bytes) => {
        for (const decode of [decodeMeta, decodeHead, decodeRecord]) {
          try {
            decode(bytes);
          } catch (e) {
            assert.ok(typed(e), String(e));
          }
        }
      }),
    );
  });
});

describe('restore checks', () => {
  const measurement = Buffer.alloc(32, 9);
  function request(blob: Buffer | undefined, over: { vmId?: string; version?: number; id?: Buffer } = {}) {
    return {
      blobKey: KEY32,
      pssId: PSS_ID,
      vmId: over.vmId ?? 'vm-a',
      measurement,
      record: { vmId: 'vm-a', measurement, version: over.version ?? 3, base: over.version ?? 3, blobId: over.id ?? (blob ? blobId(blob) : Buffer.alloc(32)), nonce: Buffer.alloc(32) },
      blobs: [blob],
    };
  }
  const condition = (c: string) => (e: unknown) => e instanceof PssViolation && e.condition === c;

  test('a blob with the same version but not the recorded id is not-latest', () => {
    const blob = KEY32.seal(header(), Buffer.from('nvm'));
    assert.throws(() => verifyRestore(request(blob, { id: Buffer.alloc(32, 1) })), condition('not-latest'));
  });

  test('a blob whose header names another PSS is foreign even before its tag is checked', () => {
    const blob = new BlobKey(Buffer.alloc(32, 5)).seal(header({ pssId: Buffer.alloc(16, 2) }), Buffer.from('nvm'));
    assert.throws(() => verifyRestore(request(blob)), condition('foreign'));
  });

  test('the recorded blob of the requesting VM and model restores', () => {
    const blob = KEY32.seal(header(), Buffer.from('nvm'));
    assert.equal(verifyRestore(request(blob)).toString(), 'nvm');
  });
});
