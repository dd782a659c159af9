/**
 * Fresh RSA keys made ahead off the main thread: the pool hands out working keys once each, keeps
 * sizes apart and tells waiters when its generator fails; an engine that has a pool waits for a
 * key instead of stopping the thread, and the command it ran for completes with that key.
 */
import assert from 'node:assert/strict';
import { constants, privateDecrypt, publicEncrypt, verify } from 'node:crypto';
import { describe, test } from 'node:test';
import { RsaKeyPool } from '../../src/tpm/crypto/rsa-key-pool.ts';
import type { RsaKey } from '../../src/tpm/crypto/rsa.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { ALG, CC, RH, ST } from '../../src/tpm/tpm2/constants.ts';
import { Tpm2Device } from '../../src/tpm/tpm2/device.ts';
import { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { OBJECT_ATTR as A } from '../../src/tpm/tpm2/types/public.ts';
import { nodeKey, rsaTemplate } from '../helpers/tpm2-keys.ts';

const works = (key: RsaKey) => {
  const message = Buffer.from('made off the main thread');
  const sealed = publicEncrypt({ key: key.publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING }, message);
  return privateDecrypt({ key: key.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING }, sealed).equals(message);
};

/** Turns of the event loop until `done`, at most `turns` of them 10 ms apart. */
async function until(done: () => boolean, turns = 1000): Promise<void> {
  for (let i = 0; i < turns && !done(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(done(), 'the condition came true');
}

describe('RSA key pool', () => {
  test('a first request finds it empty; it then fills to its depth, and hands out working keys once each', async () => {
    const pool = new RsaKeyPool({ depth: 2, parallel: 1 });
    assert.equal(pool.take(1024, 65537), undefined);
    const a = await pool.next(1024, 65537);
    await until(() => pool.size === 2);
    const b = pool.take(1024, 65537)!;
    const c = pool.take(1024, 65537)!;
    assert.equal(pool.size, 0);
    const moduli = new Set([a, b, c].map((k) => k.n.toString('hex')));
    assert.equal(moduli.size, 3, 'every key is a different key');
    for (const k of [a, b, c]) {
      assert.equal(k.n.length, 128);
      assert.ok(works(k));
    }
  });

  test('sizes are kept apart', async () => {
    const pool = new RsaKeyPool({ depth: 1 });
    const small = await pool.next(1024, 65537);
    const large = await pool.next(2048, 65537);
    assert.equal(small.n.length, 128);
    assert.equal(large.n.length, 256);
    await until(() => pool.size === 2);
    assert.equal(pool.take(2048, 65537)!.n.length, 256);
  });

  test('waiters are told when the generator fails, and takeOrMake makes a key inline when none is ready', async () => {
    const pool = new RsaKeyPool();
    // OpenSSL makes no 256-bit RSA keys.
    await assert.rejects(pool.next(256, 65537));
    const inline = new RsaKeyPool().takeOrMake(1024, 65537);
    assert.ok(works(inline));
  });

  test('an engine with a pool waits for a key instead of stopping the thread; the Create completes with it', async () => {
    const pool = new RsaKeyPool({ depth: 1 });
    const device = new Tpm2Device(new Tpm2Engine({ rsaKeys: pool }));
    const tpm = new Tpm2Client((c) => device.execute(c, 0));
    await tpm.startup();
    const srk = (await tpm.createPrimary(RH.OWNER, srkTemplate())).handle;
    const template = rsaTemplate(A.sign | A.userWithAuth | A.sensitiveDataOrigin, { scheme: ALG.RSASSA, hashAlg: ALG.SHA256 });
    // While the key is made elsewhere, the thread runs other work: timers fire before the Create returns.
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    const key = await tpm.create(srk, template);
    clearInterval(timer);
    assert.ok(ticks > 0, 'the event loop ran while the key was made');
    const { handle } = await tpm.load(srk, key.outPrivate, key.outPublic);
    const message = Buffer.from('signed with a pooled key');
    const digest = (await import('node:crypto')).createHash('sha256').update(message).digest();
    const signed = await tpm.call(CC.Sign, [handle], [{}], {
      digest,
      inScheme: { scheme: ALG.RSASSA, hashAlg: ALG.SHA256 },
      validation: { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: Buffer.alloc(0) },
    });
    assert.ok(verify('sha256', message, nodeKey(key.outPublic), (signed.params.signature as { sig: Buffer }).sig));
  });
});
