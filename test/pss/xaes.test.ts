import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { Xaes256Gcm } from '../../src/tpm/crypto/xaes.ts';

const NONCE = Buffer.from('ABCDEFGHIJKLMNOPQRSTUVWX', 'latin1');

describe('XAES-256-GCM (C2SP vectors)', () => {
  test('MSB(L) = 0: subkey, nonce and ciphertext || tag', () => {
    const x = new Xaes256Gcm(Buffer.alloc(32, 1));
    const { key, iv } = x.subkey(NONCE);
    assert.equal(key.toString('hex'), 'c8612c9ed53fe43e8e005b828a1631a0bbcb6ab2f46514ec4f439fcfd0fa969b');
    assert.equal(Buffer.from(iv).toString('hex'), '4d4e4f505152535455565758');
    const sealed = x.seal(NONCE, Buffer.from('XAES-256-GCM'), Buffer.alloc(0));
    assert.equal(sealed.toString('hex'), 'ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271');
    assert.equal(x.open(NONCE, sealed, Buffer.alloc(0))?.toString(), 'XAES-256-GCM');
  });

  test('MSB(L) = 1, with associated data', () => {
    const x = new Xaes256Gcm(Buffer.alloc(32, 3));
    assert.equal(x.subkey(NONCE).key.toString('hex'), 'e9c621d4cdd9b11b00a6427ad7e559aeedd66b3857646677748f8ca796cb3fd8');
    const aad = Buffer.from('c2sp.org/XAES-256-GCM');
    const sealed = x.seal(NONCE, Buffer.from('XAES-256-GCM'), aad);
    assert.equal(sealed.toString('hex'), '986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d');
    assert.equal(x.open(NONCE, sealed, Buffer.from('c2sp.org/XAES-256-GCN')), undefined, 'other associated data');
  });

  test('10,000 accumulated randomized vectors (SHAKE-128 stream in, SHAKE-128 of the ciphertexts out)', () => {
    // Each test reads key[32], nonce[24], plaintext<0..255>, aad<0..255> from one SHAKE-128 stream.
    const stream = createHash('shake128', { outputLength: 10_000 * (32 + 24 + 2 + 255 * 2) }).digest();
    let at = 0;
    const take = (n: number) => stream.subarray(at, (at += n));
    const out = createHash('shake128', { outputLength: 32 });
    for (let i = 0; i < 10_000; i++) {
      const key = take(32);
      const nonce = take(24);
      const plaintext = take(take(1)[0]!);
      const aad = take(take(1)[0]!);
      const x = new Xaes256Gcm(key);
      const sealed = x.seal(nonce, plaintext, aad);
      out.update(sealed);
      if (i % 997 === 0) assert.deepEqual(x.open(nonce, sealed, aad), Buffer.from(plaintext));
    }
    assert.equal(out.digest('hex'), 'e6b9edf2df6cec60c8cbd864e2211b597fb69a529160cd040d56c0c210081939');
  });

  test('the prefix lands in front of the ciphertext; a flipped bit or a short input does not open', () => {
    const x = new Xaes256Gcm(Buffer.alloc(32, 9));
    const prefix = Buffer.from('HDR');
    const sealed = x.seal(NONCE, Buffer.from('data'), prefix, prefix);
    assert.deepEqual(sealed.subarray(0, 3), prefix);
    const body = sealed.subarray(3);
    assert.equal(x.open(NONCE, body, prefix)?.toString(), 'data');
    for (let bit = 0; bit < body.length * 8; bit++) {
      const bad = Buffer.from(body);
      bad[bit >> 3]! ^= 1 << (bit & 7);
      assert.equal(x.open(NONCE, bad, prefix), undefined, `bit ${bit}`);
    }
    assert.equal(x.open(NONCE, body.subarray(0, 15), prefix), undefined);
    assert.throws(() => x.subkey(NONCE.subarray(0, 23)), RangeError);
    assert.throws(() => new Xaes256Gcm(Buffer.alloc(16)), RangeError);
  });
});
