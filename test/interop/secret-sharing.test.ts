/**
 * Secret sharing driven by Debian's tpm2-tools over both TCTIs: EK/AK credential activation (RSA
 * and ECC EKs, credentials made by the TPM and offline by tpm2-tools), RSA encryption with labels,
 * symmetric encryption with IV chaining, ECDH, salted encrypted sessions, and duplication with
 * import. Where a result can be checked outside the TPM it is, with node:crypto. The TPM has three
 * object slots and tpm2-tools leaves objects loaded, so every step is followed by a flush.
 */
import assert from 'node:assert/strict';
import { constants, createECDH, createPrivateKey, publicEncrypt, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VtpmdServer, interopUnavailable, tempDir, type Tcti } from './harness.ts';

for (const tcti of ['swtpm', 'mssim'] as Tcti[]) {
  const skip = interopUnavailable(tcti);

  describe(`secret sharing with tpm2-tools over the ${tcti} TCTI`, { skip }, () => {
    const state = tempDir(`vtpmd-secret-${tcti}-`);
    const files = tempDir(`vtpmd-secret-files-${tcti}-`);
    let server: VtpmdServer;
    const f = (name: string) => join(files.path, name);
    /** Runs a tool, then flushes the transient objects it left loaded. */
    const step = async (cmd: string, args: string[]) => {
      try {
        return await server.tool(cmd, args);
      } finally {
        await server.tool('tpm2_flushcontext', ['-t']);
      }
    };

    before(async () => {
      server = await VtpmdServer.start(tcti, state.path);
      await server.tool('tpm2_startup', ['-c']);
      await step('tpm2_createprimary', ['-C', 'o', '-g', 'sha256', '-G', 'rsa', '-c', f('rsa-primary.ctx')]);
      await step('tpm2_createprimary', ['-C', 'o', '-g', 'sha256', '-G', 'ecc', '-c', f('ecc-primary.ctx')]);
    });
    after(async () => {
      await server?.stop();
      state.remove();
      files.remove();
    });

    /** tpm2_activatecredential with the EK's policy (PolicySecret on the endorsement hierarchy). */
    const activate = async (ak: string, ek: string, cred: string, out: string) => {
      await server.tool('tpm2_startauthsession', ['--policy-session', '-S', f('ek-session.ctx')]);
      try {
        await server.tool('tpm2_policysecret', ['-S', f('ek-session.ctx'), '-c', 'e']);
        await step('tpm2_activatecredential', ['-c', ak, '-C', ek, '-i', cred, '-o', out, '-P', `session:${f('ek-session.ctx')}`]);
      } finally {
        await server.tool('tpm2_flushcontext', [f('ek-session.ctx')]);
      }
      return readFileSync(out);
    };

    for (const alg of ['rsa', 'ecc'] as const) {
      it(`${alg.toUpperCase()} EK: tpm2_createek, tpm2_createak, tpm2_makecredential (offline -T none and with the TPM), tpm2_activatecredential recovers the secret`, async () => {
        const ek = f(`ek-${alg}.ctx`);
        const ak = f(`ak-${alg}.ctx`);
        await step('tpm2_createek', ['-c', ek, '-G', alg, '-u', f(`ek-${alg}.pub`)]);
        await step('tpm2_createak', ['-C', ek, '-c', ak, '-G', alg, '-g', 'sha256', '-s', alg === 'rsa' ? 'rsassa' : 'ecdsa', '-u', f(`ak-${alg}.pub`), '-n', f(`ak-${alg}.name`)]);
        const name = readFileSync(f(`ak-${alg}.name`)).toString('hex');
        const secret = randomBytes(32);
        writeFileSync(f('secret.bin'), secret);

        await server.tool('tpm2_makecredential', ['-T', 'none', '-e', f(`ek-${alg}.pub`), '-s', f('secret.bin'), '-n', name, '-o', f('cred-offline.out')]);
        assert.deepEqual(await activate(ak, ek, f('cred-offline.out'), f('act-offline.out')), secret);

        await step('tpm2_makecredential', ['-e', f(`ek-${alg}.pub`), '-s', f('secret.bin'), '-n', name, '-o', f('cred-tpm.out')]);
        assert.deepEqual(await activate(ak, ek, f('cred-tpm.out'), f('act-tpm.out')), secret);

        // A credential for another Name does not activate.
        await server.tool('tpm2_makecredential', ['-T', 'none', '-e', f(`ek-${alg}.pub`), '-s', f('secret.bin'), '-n', `000b${'11'.repeat(32)}`, '-o', f('cred-other.out')]);
        await assert.rejects(activate(ak, ek, f('cred-other.out'), f('act-other.out')), /0x1df|integrity/i);
      });
    }

    it('tpm2_rsaencrypt / tpm2_rsadecrypt round trip with OAEP (and a label), RSAES and the key default; node:crypto encrypts for the TPM too', async () => {
      await step('tpm2_create', ['-C', f('rsa-primary.ctx'), '-G', 'rsa2048', '-u', f('rsa.pub'), '-r', f('rsa.priv'), '-a', 'decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth']);
      await step('tpm2_load', ['-C', f('rsa-primary.ctx'), '-u', f('rsa.pub'), '-r', f('rsa.priv'), '-c', f('rsa.ctx')]);
      const message = randomBytes(64);
      writeFileSync(f('msg.bin'), message);
      for (const args of [[], ['-s', 'oaep', '-l', 'vtpmd-label'], ['-s', 'rsaes']]) {
        await step('tpm2_rsaencrypt', ['-c', f('rsa.ctx'), ...args, '-o', f('msg.enc'), f('msg.bin')]);
        assert.equal(readFileSync(f('msg.enc')).length, 256);
        await step('tpm2_rsadecrypt', ['-c', f('rsa.ctx'), ...args, '-o', f('msg.dec'), f('msg.enc')]);
        assert.deepEqual(readFileSync(f('msg.dec')), message, args.join(' '));
      }
      await step('tpm2_readpublic', ['-c', f('rsa.ctx'), '-f', 'pem', '-o', f('rsa.pem')]);
      const c = publicEncrypt(
        { key: readFileSync(f('rsa.pem')), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: Buffer.from('vtpmd-label\0') },
        message,
      );
      writeFileSync(f('node.enc'), c);
      await step('tpm2_rsadecrypt', ['-c', f('rsa.ctx'), '-s', 'oaep', '-l', 'vtpmd-label', '-o', f('node.dec'), f('node.enc')]);
      assert.deepEqual(readFileSync(f('node.dec')), message);
      await assert.rejects(step('tpm2_rsadecrypt', ['-c', f('rsa.ctx'), '-s', 'oaep', '-l', 'other', '-o', f('x.dec'), f('node.enc')]), /0x84|value/i);
    });

    it('tpm2_encryptdecrypt round trips in CFB and CBC; two calls chained by the output IV equal one call', async () => {
      await step('tpm2_create', ['-C', f('rsa-primary.ctx'), '-G', 'aes128', '-u', f('aes.pub'), '-r', f('aes.priv')]);
      await step('tpm2_load', ['-C', f('rsa-primary.ctx'), '-u', f('aes.pub'), '-r', f('aes.priv'), '-c', f('aes.ctx')]);
      const plain = randomBytes(96);
      const iv = randomBytes(16);
      writeFileSync(f('plain.bin'), plain);
      writeFileSync(f('iv.bin'), iv);
      for (const mode of ['cfb', 'cbc']) {
        await step('tpm2_encryptdecrypt', ['-c', f('aes.ctx'), '-G', mode, '--iv', f('iv.bin'), '-o', f('enc.bin'), f('plain.bin')]);
        const enc = readFileSync(f('enc.bin'));
        assert.equal(enc.length, plain.length);
        assert.notDeepEqual(enc, plain);
        await step('tpm2_encryptdecrypt', ['-d', '-c', f('aes.ctx'), '-G', mode, '--iv', f('iv.bin'), '-o', f('dec.bin'), f('enc.bin')]);
        assert.deepEqual(readFileSync(f('dec.bin')), plain, mode);
        writeFileSync(f('half1.bin'), plain.subarray(0, 48));
        writeFileSync(f('half2.bin'), plain.subarray(48));
        await step('tpm2_encryptdecrypt', ['-c', f('aes.ctx'), '-G', mode, '--iv', `${f('iv.bin')}:${f('iv2.bin')}`, '-o', f('enc1.bin'), f('half1.bin')]);
        await step('tpm2_encryptdecrypt', ['-c', f('aes.ctx'), '-G', mode, '--iv', f('iv2.bin'), '-o', f('enc2.bin'), f('half2.bin')]);
        assert.deepEqual(Buffer.concat([readFileSync(f('enc1.bin')), readFileSync(f('enc2.bin'))]), enc, `${mode} chained`);
      }
    });

    it('tpm2_ecdhkeygen / tpm2_ecdhzgen agree; ZGen with an external key equals ECDH computed by node:crypto', async () => {
      await step('tpm2_create', ['-C', f('ecc-primary.ctx'), '-G', 'ecc256:ecdh', '-u', f('ecdh.pub'), '-r', f('ecdh.priv'), '-a', 'decrypt|fixedtpm|fixedparent|sensitivedataorigin|userwithauth']);
      await step('tpm2_load', ['-C', f('ecc-primary.ctx'), '-u', f('ecdh.pub'), '-r', f('ecdh.priv'), '-c', f('ecdh.ctx')]);
      await step('tpm2_ecdhkeygen', ['-c', f('ecdh.ctx'), '-u', f('eph.point'), '-o', f('z.point')]);
      await step('tpm2_ecdhzgen', ['-c', f('ecdh.ctx'), '-u', f('eph.point'), '-o', f('z2.point')]);
      assert.deepEqual(readFileSync(f('z2.point')), readFileSync(f('z.point')));

      // An external P-256 key whose scalar node:crypto knows.
      const ecdh = createECDH('prime256v1');
      ecdh.generateKeys();
      const d = ecdh.getPrivateKey();
      const pub = ecdh.getPublicKey();
      const jwk = { kty: 'EC', crv: 'P-256', d: d.toString('base64url'), x: pub.subarray(1, 33).toString('base64url'), y: pub.subarray(33).toString('base64url') };
      writeFileSync(f('ext.pem'), createPrivateKey({ key: jwk, format: 'jwk' }).export({ format: 'pem', type: 'sec1' }));
      await step('tpm2_loadexternal', ['-C', 'n', '-G', 'ecc', '-r', f('ext.pem'), '-c', f('ext.ctx')]);
      const peer = createECDH('prime256v1');
      peer.generateKeys();
      const p = peer.getPublicKey();
      // TPM2B_ECC_POINT: size, then TPM2B x and TPM2B y.
      writeFileSync(f('peer.point'), Buffer.concat([Buffer.from([0, 68, 0, 32]), p.subarray(1, 33), Buffer.from([0, 32]), p.subarray(33)]));
      await step('tpm2_ecdhzgen', ['-c', f('ext.ctx'), '-u', f('peer.point'), '-o', f('zext.point')]);
      const z = readFileSync(f('zext.point'));
      assert.deepEqual(z.subarray(4, 36), ecdh.computeSecret(p));
    });

    for (const primary of ['rsa', 'ecc'] as const) {
      it(`a salted (${primary.toUpperCase()} tpmKey), encrypted HMAC session: tpm2_getrandom -S and tpm2_unseal -p session:…+password`, async () => {
        const sealed = randomBytes(24);
        writeFileSync(f('seal.dat'), sealed);
        await step('tpm2_create', ['-C', f(`${primary}-primary.ctx`), '-i', f('seal.dat'), '-u', f('seal.pub'), '-r', f('seal.priv'), '-p', 'sealpw']);
        await step('tpm2_load', ['-C', f(`${primary}-primary.ctx`), '-u', f('seal.pub'), '-r', f('seal.priv'), '-c', f('seal.ctx')]);
        await step('tpm2_startauthsession', ['--hmac-session', '-S', f('salted.ctx'), '-c', f(`${primary}-primary.ctx`)]);
        try {
          assert.match((await step('tpm2_getrandom', ['-S', f('salted.ctx'), '--hex', '16'])).trim(), /^[0-9a-f]{32}$/);
          await step('tpm2_unseal', ['-c', f('seal.ctx'), '-p', `session:${f('salted.ctx')}+sealpw`, '-o', f('unsealed.bin')]);
          assert.deepEqual(readFileSync(f('unsealed.bin')), sealed);
          await assert.rejects(step('tpm2_unseal', ['-c', f('seal.ctx'), '-p', `session:${f('salted.ctx')}+wrong`]), /0x98e|0x9a2|HMAC check failed/i);
        } finally {
          await server.tool('tpm2_flushcontext', [f('salted.ctx')]).catch(() => undefined);
        }
      });
    }

    for (const wrapper of ['null', 'aes'] as const) {
      it(`tpm2_duplicate (policy PolicyCommandCode(Duplicate), inner wrapper ${wrapper}) to a new parent, tpm2_import under it, tpm2_load`, async () => {
        const parent = f('rsa-primary.ctx');
        await step('tpm2_create', ['-C', parent, '-g', 'sha256', '-G', 'rsa', '-r', f('np.priv'), '-u', f('np.pub'), '-a', 'restricted|sensitivedataorigin|decrypt|userwithauth']);
        await server.tool('tpm2_startauthsession', ['-S', f('trial.ctx')]);
        await server.tool('tpm2_policycommandcode', ['-S', f('trial.ctx'), '-L', f('dup.policy'), 'TPM2_CC_Duplicate']);
        await server.tool('tpm2_flushcontext', [f('trial.ctx')]);
        await step('tpm2_create', ['-C', parent, '-g', 'sha256', '-G', 'rsa', '-r', f('key.priv'), '-u', f('key.pub'), '-L', f('dup.policy'), '-a', 'sensitivedataorigin|userwithauth|decrypt|sign']);

        await step('tpm2_loadexternal', ['-C', 'o', '-u', f('np.pub'), '-c', f('np-ext.ctx')]);
        await step('tpm2_load', ['-C', parent, '-r', f('key.priv'), '-u', f('key.pub'), '-c', f('key.ctx')]);
        await server.tool('tpm2_startauthsession', ['--policy-session', '-S', f('dup.ctx')]);
        try {
          await server.tool('tpm2_policycommandcode', ['-S', f('dup.ctx'), 'TPM2_CC_Duplicate']);
          const inner = wrapper === 'aes' ? ['-G', 'aes', '-o', f('inner.key')] : ['-G', 'null'];
          await step('tpm2_duplicate', ['-C', f('np-ext.ctx'), '-c', f('key.ctx'), ...inner, '-p', `session:${f('dup.ctx')}`, '-r', f('dup.priv'), '-s', f('dup.seed')]);
        } finally {
          await server.tool('tpm2_flushcontext', [f('dup.ctx')]).catch(() => undefined);
        }
        if (wrapper === 'aes') assert.equal(readFileSync(f('inner.key')).length, 16);

        await step('tpm2_load', ['-C', parent, '-u', f('np.pub'), '-r', f('np.priv'), '-c', f('np.ctx')]);
        const innerIn = wrapper === 'aes' ? ['-G', 'aes', '-k', f('inner.key')] : [];
        await step('tpm2_import', ['-C', f('np.ctx'), ...innerIn, '-u', f('key.pub'), '-i', f('dup.priv'), '-r', f('key-imported.priv'), '-s', f('dup.seed')]);
        const out = await step('tpm2_load', ['-C', f('np.ctx'), '-u', f('key.pub'), '-r', f('key-imported.priv'), '-c', f('key-imported.ctx')]);
        assert.match(out, /name:\s*000b[0-9a-f]{64}/i);
      });
    }
  });
}
