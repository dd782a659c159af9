/**
 * ECDSA nonces computed ahead: the signatures they make verify under the key, each nonce is used
 * once, and the pool refills itself in idle turns of the event loop.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createECDH, createHash, randomBytes, verify } from 'node:crypto';
import { toBigInt } from '../../src/tpm/crypto/bigint.ts';
import { curve, eccFromScalar } from '../../src/tpm/crypto/ecc.ts';
import { EcdsaNoncePool } from '../../src/tpm/crypto/ecdsa-nonces.ts';
import { ECC_CURVE } from '../../src/tpm/tpm2/constants.ts';

const cases = [
  { id: ECC_CURVE.NIST_P256, openssl: 'prime256v1', jwk: 'P-256', hash: 'sha256' },
  { id: ECC_CURVE.NIST_P384, openssl: 'secp384r1', jwk: 'P-384', hash: 'sha384' },
];

function idle(turns: number): Promise<void> {
  return turns === 0 ? Promise.resolve() : new Promise((ok) => setImmediate(() => ok(idle(turns - 1))));
}

describe('ECDSA nonce pool', () => {
  for (const c of cases) {
    test(`${c.jwk}: signatures from precomputed nonces verify with node:crypto, and r never repeats`, () => {
      const cv = curve(c.id);
      const scalar = Buffer.from(((toBigInt(randomBytes(cv.bytes + 8)) % (cv.order - 1n)) + 1n).toString(16).padStart(cv.bytes * 2, '0'), 'hex');
      const { publicKey } = eccFromScalar(cv, scalar);
      const d = toBigInt(scalar);
      const pool = new EcdsaNoncePool(cv, createECDH(c.openssl));
      const seen = new Set<bigint>();
      for (let i = 0; i < 10; i++) {
        pool.fill();
        const nonce = pool.take()!;
        assert.ok(nonce, 'a filled pool gives a nonce');
        assert.ok(!seen.has(nonce.r), 'a nonce is never handed out twice');
        seen.add(nonce.r);
        const message = Buffer.from(`message ${i}`);
        const e = toBigInt(createHash(c.hash).update(message).digest().subarray(0, cv.bytes));
        const s = pool.sign(nonce, e, d);
        const sig = Buffer.from(nonce.r.toString(16).padStart(cv.bytes * 2, '0') + s.toString(16).padStart(cv.bytes * 2, '0'), 'hex');
        assert.ok(verify(c.hash, message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, sig), `signature ${i}`);
        const tampered = Buffer.from(sig);
        tampered[tampered.length - 1]! ^= 1;
        assert.ok(!verify(c.hash, message, { key: publicKey, dsaEncoding: 'ieee-p1363' }, tampered));
      }
    });
  }

  test('an empty pool gives nothing at once, then refills in idle turns up to its capacity', async () => {
    const pool = new EcdsaNoncePool(curve(ECC_CURVE.NIST_P256), createECDH('prime256v1'));
    assert.equal(pool.take(), undefined);
    await idle(20);
    const refilled = pool.size;
    assert.ok(refilled > 0, 'the refill ran while the loop was idle');
    await idle(20);
    assert.equal(pool.size, refilled, 'a full pool stops refilling');
    const rs = new Set<bigint>();
    for (let i = 0; i < refilled; i++) rs.add(pool.take()!.r);
    assert.equal(rs.size, refilled);
  });
});
