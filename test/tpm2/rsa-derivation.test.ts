/**
 * RSA keys derived from a seed (primary keys): the same seed gives the same key in every version
 * — a vTPM's EK is derived again at each CreatePrimary and must stay the key its certificate
 * names — and what is derived is a working RSA key of the requested size.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, privateDecrypt, publicEncrypt, constants } from 'node:crypto';
import { toBigInt } from '../../src/tpm/crypto/bigint.ts';
import { SeededStream } from '../../src/tpm/crypto/drbg.ts';
import { deriveRsa, deriveRsaAsync } from '../../src/tpm/crypto/rsa.ts';

const derive = (seed: string, bits: number) => deriveRsa(new SeededStream(Buffer.from(seed), 'RSA', Buffer.from([bits >> 8])), bits, 65537);

/** SHA-256 of modulus ‖ prime, as the Miller–Rabin search in JavaScript derived them before the search moved to OpenSSL's test. */
const KNOWN: readonly (readonly [string, number, string])[] = [
  ['seed 0', 1024, '48a5afb1920214fc7bc3f1e9393d889cdec9fe92eb217b4a15b8bc270ca72239'],
  ['seed 0', 2048, '12181b7d5f51dbac9d383c70d118f1bbb581e4f68cbb49351229b67f77fdc669'],
  ['seed 1', 2048, '94715e5d02780dc684ccd1a83d36a75576f1f4564a43a469064a5856db774a50'],
  ['seed 2', 2048, '2fc4ef96fdabff63ff95b8ecea504032f3c8e91164b6c534334e090fa768229e'],
  ['seed 0', 3072, '11ccb030809ffce16ba88380581fa9299a7a94fd5c3fcea2bd3d2660daa96cbf'],
];

describe('RSA key derivation', () => {
  for (const [seed, bits, digest] of KNOWN) {
    test(`RSA-${bits} from "${seed}" is the key earlier versions derived`, () => {
      const key = derive(seed, bits);
      assert.equal(createHash('sha256').update(key.n).update(key.p).digest('hex'), digest);
    });
  }

  test('the search with its candidates tested off the main thread derives the same keys', async () => {
    for (const [seed, bits, digest] of KNOWN.slice(0, 3)) {
      const key = await deriveRsaAsync(new SeededStream(Buffer.from(seed), 'RSA', Buffer.from([bits >> 8])), bits, 65537);
      assert.equal(createHash('sha256').update(key.n).update(key.p).digest('hex'), digest);
    }
  });

  test('a derived key has the requested size, top-set primes coprime to e, and encrypts and decrypts', () => {
    for (const seed of ['a', 'b', 'c']) {
      const key = derive(seed, 2048);
      const n = toBigInt(key.n);
      const p = toBigInt(key.p);
      assert.equal(n.toString(2).length, 2048);
      assert.equal(n % p, 0n);
      const q = n / p;
      for (const prime of [p, q]) {
        assert.equal(prime >> 1022n, 3n, 'the top two bits are set');
        assert.notEqual((prime - 1n) % 65537n, 0n);
      }
      const message = Buffer.from(`message under ${seed}`);
      const sealed = publicEncrypt({ key: key.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, message);
      assert.deepEqual(privateDecrypt({ key: key.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, sealed), message);
    }
  });

  test('another seed gives another key', () => {
    assert.notDeepEqual(derive('seed 0', 2048).n, derive('seed 3', 2048).n);
  });
});
