/**
 * Attestation and signing with Debian's tpm2-tools over both TCTIs: quotes that tpm2_checkquote
 * accepts (from AKs made by tpm2_create and by tpm2_createek + tpm2_createak), sign and verify,
 * HMAC (single command and sequence), certify, certifycreation, gettime, nvcertify and the
 * command-audit report — every signature also checked with node:crypto or openssl's view of it.
 *
 * The TPM has three transient object slots and tpm2-tools leaves what it loads in them, so every
 * tool step that loads objects is followed by `tpm2_flushcontext -t`.
 */
import assert from 'node:assert/strict';
import { createHmac, createPublicKey, randomBytes, verify as nodeVerify, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VtpmdServer, interopUnavailable, tempDir, type Tcti } from './harness.ts';
import { decode } from '../../src/tpm/wire/codec.ts';
import { attest } from '../../src/tpm/tpm2/types/attest.ts';
import { ST } from '../../src/tpm/tpm2/constants.ts';

for (const tcti of ['swtpm', 'mssim'] as Tcti[]) {
  const skip = interopUnavailable(tcti);

  describe(`attestation with tpm2-tools over the ${tcti} TCTI`, { skip }, () => {
    const state = tempDir(`vtpmd-attest-${tcti}-`);
    const files = tempDir(`vtpmd-attest-files-${tcti}-`);
    const f = (name: string) => join(files.path, name);
    let server: VtpmdServer;

    const tool = (cmd: string, ...args: string[]) => server.tool(cmd, args);
    const flush = async () => {
      await tool('tpm2_flushcontext', '-t');
      await tool('tpm2_flushcontext', '-s');
    };
    /** Runs a tool that loads objects, then empties the transient slots. */
    const step = async (cmd: string, ...args: string[]) => {
      try {
        return await tool(cmd, ...args);
      } finally {
        await flush();
      }
    };
    const pem = async (ctx: string): Promise<KeyObject> => {
      await step('tpm2_readpublic', '-c', f(ctx), '-o', f(`${ctx}.pem`), '-f', 'pem');
      return createPublicKey(readFileSync(f(`${ctx}.pem`)));
    };
    const nameOf = async (ctx: string): Promise<string> => {
      const out = await step('tpm2_readpublic', '-c', f(ctx));
      return /^name:\s*([0-9a-f]+)/m.exec(out)![1]!;
    };

    before(async () => {
      server = await VtpmdServer.start(tcti, state.path);
      await tool('tpm2_startup', '-c');
      await step('tpm2_createprimary', '-C', 'o', '-g', 'sha256', '-G', 'ecc', '-c', f('primary.ctx'));
      // Restricted signing keys need a NULL symmetric algorithm, hence the ':null'.
      for (const [name, alg] of [
        ['eccak', 'ecc256:ecdsa-sha256:null'],
        ['rsaak', 'rsa2048:rsassa-sha256:null'],
      ]) {
        await step('tpm2_create', '-C', f('primary.ctx'), '-G', alg!, '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign', '-u', f(`${name}.pub`), '-r', f(`${name}.priv`));
        await step('tpm2_load', '-C', f('primary.ctx'), '-u', f(`${name}.pub`), '-r', f(`${name}.priv`), '-c', f(`${name}.ctx`));
      }
    });
    after(async () => {
      await server?.stop();
      state.remove();
      files.remove();
    });

    it('tpm2_quote with restricted ECC and RSA keys: tpm2_checkquote verifies signature, nonce and PCRs', async () => {
      await tool('tpm2_pcrextend', [`16:sha256=${randomBytes(32).toString('hex')}`].join(''));
      for (const ak of ['eccak', 'rsaak']) {
        const nonce = randomBytes(16).toString('hex');
        await step('tpm2_quote', '-c', f(`${ak}.ctx`), '-l', 'sha256:0,1,2,16+sha1:0', '-q', nonce, '-m', f(`${ak}.msg`), '-s', f(`${ak}.sig`), '-o', f(`${ak}.pcrs`), '-g', 'sha256');
        await tool('tpm2_checkquote', '-u', f(`${ak}.pub`), '-m', f(`${ak}.msg`), '-s', f(`${ak}.sig`), '-f', f(`${ak}.pcrs`), '-g', 'sha256', '-q', nonce);
        // A different nonce must not pass.
        await assert.rejects(tool('tpm2_checkquote', '-u', f(`${ak}.pub`), '-m', f(`${ak}.msg`), '-s', f(`${ak}.sig`), '-f', f(`${ak}.pcrs`), '-g', 'sha256', '-q', '00'));
        const a = decode(attest, readFileSync(f(`${ak}.msg`)));
        assert.equal(a.type, ST.ATTEST_QUOTE);
        assert.equal(a.extraData.toString('hex'), nonce);
      }
    });

    it('tpm2_createek and tpm2_createak make an AK whose quote tpm2_checkquote verifies', async () => {
      await step('tpm2_createek', '-c', f('ek.ctx'), '-G', 'rsa', '-u', f('ek.pub'));
      await step('tpm2_createak', '-C', f('ek.ctx'), '-c', f('ak.ctx'), '-G', 'ecc', '-g', 'sha256', '-s', 'ecdsa', '-u', f('ak.pub'), '-n', f('ak.name'));
      await step('tpm2_quote', '-c', f('ak.ctx'), '-l', 'sha256:0,7', '-q', 'c0ffee', '-m', f('ak.msg'), '-s', f('ak.sig'), '-o', f('ak.pcrs'), '-g', 'sha256');
      await tool('tpm2_checkquote', '-u', f('ak.pub'), '-m', f('ak.msg'), '-s', f('ak.sig'), '-f', f('ak.pcrs'), '-g', 'sha256', '-q', 'c0ffee');
      // An endorsement-hierarchy AK reports the real reset count.
      const clock = await tool('tpm2_readclock');
      const resetCount = BigInt(/reset_count:\s*(\d+)/.exec(clock)![1]!);
      assert.equal(BigInt(decode(attest, readFileSync(f('ak.msg'))).clockInfo.resetCount), resetCount);
    });

    it('tpm2_sign and tpm2_verifysignature with an unrestricted ECC key; openssl’s view (node:crypto) agrees', async () => {
      await step('tpm2_create', '-C', f('primary.ctx'), '-G', 'ecc256', '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign', '-u', f('es.pub'), '-r', f('es.priv'));
      await step('tpm2_load', '-C', f('primary.ctx'), '-u', f('es.pub'), '-r', f('es.priv'), '-c', f('es.ctx'));
      const msg = randomBytes(200);
      writeFileSync(f('msg.dat'), msg);
      await step('tpm2_sign', '-c', f('es.ctx'), '-g', 'sha256', '-o', f('es.sig'), f('msg.dat'));
      await step('tpm2_verifysignature', '-c', f('es.ctx'), '-g', 'sha256', '-m', f('msg.dat'), '-s', f('es.sig'), '-t', f('es.tk'));
      const tk = readFileSync(f('es.tk'));
      assert.equal(tk.readUInt16BE(0), ST.VERIFIED);
      assert.equal(tk.readUInt32BE(2), 0x40000001, 'owner hierarchy ticket');
      await step('tpm2_sign', '-c', f('es.ctx'), '-g', 'sha256', '-f', 'plain', '-o', f('es.der'), f('msg.dat'));
      assert.ok(nodeVerify('sha256', msg, await pem('es.ctx'), readFileSync(f('es.der'))));
      // A signature over other data does not verify.
      writeFileSync(f('other.dat'), randomBytes(10));
      await assert.rejects(step('tpm2_verifysignature', '-c', f('es.ctx'), '-g', 'sha256', '-m', f('other.dat'), '-s', f('es.sig')));
    });

    it('tpm2_sign with a restricted RSA key signs what the TPM hashed, and refuses data that begins with TPM_GENERATED_VALUE', async () => {
      const msg = randomBytes(64);
      writeFileSync(f('rmsg.dat'), msg);
      await step('tpm2_sign', '-c', f('rsaak.ctx'), '-g', 'sha256', '-f', 'plain', '-o', f('rsa.sig'), f('rmsg.dat'));
      assert.ok(nodeVerify('sha256', msg, await pem('rsaak.ctx'), readFileSync(f('rsa.sig'))));
      writeFileSync(f('forged.dat'), Buffer.concat([Buffer.from('ff544347', 'hex'), randomBytes(40)]));
      await assert.rejects(step('tpm2_sign', '-c', f('rsaak.ctx'), '-g', 'sha256', '-o', f('forged.sig'), f('forged.dat')), /0x3e0|ticket/i);
    });

    it('tpm2_hmac matches node:crypto for short input (TPM2_HMAC) and long input (HMAC_Start and a sequence)', async () => {
      const key = randomBytes(32);
      writeFileSync(f('hkey.bin'), key);
      await step('tpm2_loadexternal', '-C', 'n', '-G', 'hmac', '-r', f('hkey.bin'), '-c', f('hk.ctx'));
      for (const size of [100, 3000]) {
        const data = randomBytes(size);
        writeFileSync(f(`h${size}.dat`), data);
        const out = (await step('tpm2_hmac', '-c', f('hk.ctx'), '-g', 'sha256', '--hex', f(`h${size}.dat`))).trim();
        assert.equal(out, createHmac('sha256', key).update(data).digest('hex'), `${size} bytes`);
      }
    });

    it('tpm2_certify: the attestation names the certified key and the signature verifies', async () => {
      await step('tpm2_certify', '-c', f('primary.ctx'), '-C', f('eccak.ctx'), '-g', 'sha256', '-o', f('cert.attest'), '-s', f('cert.sig'), '-f', 'plain');
      const bytes = readFileSync(f('cert.attest'));
      assert.ok(nodeVerify('sha256', bytes, await pem('eccak.ctx'), readFileSync(f('cert.sig'))));
      const a = decode(attest, bytes);
      assert.ok(a.type === ST.ATTEST_CERTIFY);
      assert.equal(a.attested.name.toString('hex'), await nameOf('primary.ctx'));
    });

    it('tpm2_certifycreation vouches for a primary key’s creation hash and ticket', async () => {
      await step('tpm2_createprimary', '-C', 'o', '-g', 'sha256', '-G', 'ecc', '-c', f('cprim.ctx'), '--creation-data', f('cd.bin'), '--creation-ticket', f('ct.bin'), '-d', f('ch.bin'));
      await step('tpm2_certifycreation', '-C', f('eccak.ctx'), '-c', f('cprim.ctx'), '-d', f('ch.bin'), '-t', f('ct.bin'), '-g', 'sha256', '-o', f('cc.sig'), '--attestation', f('cc.attest'), '-f', 'plain');
      const bytes = readFileSync(f('cc.attest'));
      assert.ok(nodeVerify('sha256', bytes, await pem('eccak.ctx'), readFileSync(f('cc.sig'))));
      const a = decode(attest, bytes);
      assert.ok(a.type === ST.ATTEST_CREATION);
      // tpm2-tools writes the creation hash as a TPM2B_DIGEST.
      assert.deepEqual(a.attested.creationHash, readFileSync(f('ch.bin')).subarray(2));
    });

    it('tpm2_gettime: the signed time attestation verifies', async () => {
      await step('tpm2_gettime', '-c', f('eccak.ctx'), '-q', 'abcd', '-o', f('time.sig'), '--attestation', f('time.attest'), '-f', 'plain');
      const bytes = readFileSync(f('time.attest'));
      assert.ok(nodeVerify('sha256', bytes, await pem('eccak.ctx'), readFileSync(f('time.sig'))));
      const a = decode(attest, bytes);
      assert.ok(a.type === ST.ATTEST_TIME);
      assert.equal(a.extraData.toString('hex'), 'abcd');
      assert.equal(a.attested.time.clockInfo.clock, a.clockInfo.clock);
    });

    it('tpm2_nvcertify attests a range of an NV index', async () => {
      const index = tcti === 'swtpm' ? '0x1500016' : '0x1500017';
      await tool('tpm2_nvdefine', index, '-C', 'o', '-s', '32', '-a', 'ownerread|ownerwrite|authread|authwrite');
      const data = randomBytes(32);
      writeFileSync(f('nv.dat'), data);
      await tool('tpm2_nvwrite', index, '-C', 'o', '-i', f('nv.dat'));
      await step('tpm2_nvcertify', '-C', f('eccak.ctx'), '-g', 'sha256', '-f', 'plain', '-o', f('nv.sig'), '--attestation', f('nv.attest'), '-q', '1234', '--size', '16', '--offset', '4', index);
      const bytes = readFileSync(f('nv.attest'));
      assert.ok(nodeVerify('sha256', bytes, await pem('eccak.ctx'), readFileSync(f('nv.sig'))));
      const a = decode(attest, bytes);
      assert.ok(a.type === ST.ATTEST_NV);
      assert.equal(a.attested.offset, 4);
      assert.deepEqual(a.attested.nvContents, data.subarray(4, 20));
    });

    it('tpm2_setcommandauditstatus and a signed tpm2_getcommandauditdigest', async () => {
      await tool('tpm2_setcommandauditstatus', '-C', 'o', 'TPM2_CC_GetRandom');
      await step('tpm2_getcommandauditdigest', '-c', f('eccak.ctx'), '-g', 'sha256', '-m', f('ca.msg'), '-s', f('ca.sig'), '-f', 'plain');
      const bytes = readFileSync(f('ca.msg'));
      assert.ok(nodeVerify('sha256', bytes, await pem('eccak.ctx'), readFileSync(f('ca.sig'))));
      const a = decode(attest, bytes);
      assert.ok(a.type === ST.ATTEST_COMMAND_AUDIT);
      assert.equal(a.attested.digestAlg, 0x000b);
      assert.equal(a.attested.commandDigest.length, 32);
    });
  });
}
