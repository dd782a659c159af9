/**
 * Objects driven by Debian's tpm2-tools over both TCTIs, without a resource manager: primary and
 * ordinary keys, a persistent key that outlives a server restart, and a sealed object under a
 * PolicyPCR policy. The TPM has three object slots, so loaded objects are flushed between steps.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VtpmdServer, interopUnavailable, tempDir, type Tcti } from './harness.ts';

/** nameAlg (SHA-256) || SHA-256(TPMT_PUBLIC), from a TPM2B_PUBLIC file as tpm2-tools writes it. */
function nameOfPublicFile(path: string): string {
  const b = readFileSync(path);
  const area = b.subarray(2, 2 + b.readUInt16BE(0));
  return '000b' + createHash('sha256').update(area).digest('hex');
}

function nameFromReadPublic(out: string): string {
  const name = /^name:\s*([0-9a-fA-F]+)/m.exec(out)?.[1];
  assert.ok(name, `unexpected tpm2_readpublic output:\n${out}`);
  return name.toLowerCase();
}

for (const tcti of ['swtpm', 'mssim'] as Tcti[]) {
  const skip = interopUnavailable(tcti);

  describe(`objects with tpm2-tools over the ${tcti} TCTI`, { skip }, () => {
    const state = tempDir(`vtpmd-objects-${tcti}-`);
    const files = tempDir(`vtpmd-objects-files-${tcti}-`);
    const f = (name: string) => join(files.path, name);
    let server: VtpmdServer;
    const flush = () => server.tool('tpm2_flushcontext', ['-t']);

    before(async () => {
      server = await VtpmdServer.start(tcti, state.path);
      await server.tool('tpm2_startup', ['-c']);
    });
    after(async () => {
      await server?.stop();
      state.remove();
      files.remove();
    });

    for (const alg of ['rsa2048', 'ecc256']) {
      it(`createprimary (${alg}) → create → load → readpublic agree on the Name`, async () => {
        await server.tool('tpm2_createprimary', ['-C', 'o', '-G', alg, '-c', f('p.ctx')]);
        await flush();
        await server.tool('tpm2_create', ['-C', f('p.ctx'), '-G', alg, '-u', f('k.pub'), '-r', f('k.priv')]);
        await flush();
        const loaded = await server.tool('tpm2_load', ['-C', f('p.ctx'), '-u', f('k.pub'), '-r', f('k.priv'), '-c', f('k.ctx')]);
        await flush();
        const expected = nameOfPublicFile(f('k.pub'));
        assert.match(loaded.toLowerCase(), new RegExp(expected));
        assert.equal(nameFromReadPublic(await server.tool('tpm2_readpublic', ['-c', f('k.ctx')])), expected);
        await flush();
      });
    }

    it('a key made persistent with evictcontrol survives a server restart and parents new keys', async () => {
      await server.tool('tpm2_createprimary', ['-C', 'o', '-G', 'ecc256', '-c', f('pp.ctx')]);
      await server.tool('tpm2_evictcontrol', ['-C', 'o', '-c', f('pp.ctx'), '0x81000001']);
      await flush();
      const before = nameFromReadPublic(await server.tool('tpm2_readpublic', ['-c', '0x81000001']));
      await server.tool('tpm2_shutdown', ['-c']);
      await server.stop();
      server = await VtpmdServer.start(tcti, state.path);
      await server.tool('tpm2_startup', ['-c']);
      assert.match(await server.tool('tpm2_getcap', ['handles-persistent']), /0x81000001/);
      assert.equal(nameFromReadPublic(await server.tool('tpm2_readpublic', ['-c', '0x81000001'])), before);
      await server.tool('tpm2_create', ['-C', '0x81000001', '-G', 'rsa2048', '-u', f('c.pub'), '-r', f('c.priv')]);
      await flush();
      await server.tool('tpm2_evictcontrol', ['-C', 'o', '-c', '0x81000001']);
      assert.doesNotMatch(await server.tool('tpm2_getcap', ['handles-persistent']), /0x81000001/);
    });

    it('an object sealed under PolicyPCR unseals until the PCR changes', async () => {
      await server.tool('tpm2_pcrreset', ['16']);
      await server.tool('tpm2_createpolicy', ['--policy-pcr', '-l', 'sha256:16', '-L', f('pcr.policy')]);
      await server.tool('tpm2_flushcontext', ['-l']);
      const secret = randomBytes(24).toString('hex');
      writeFileSync(f('secret.txt'), secret);
      await server.tool('tpm2_createprimary', ['-C', 'o', '-G', 'ecc256', '-c', f('sp.ctx')]);
      await flush();
      await server.tool('tpm2_create', ['-C', f('sp.ctx'), '-L', f('pcr.policy'), '-i', f('secret.txt'), '-u', f('s.pub'), '-r', f('s.priv')]);
      await flush();
      await server.tool('tpm2_load', ['-C', f('sp.ctx'), '-u', f('s.pub'), '-r', f('s.priv'), '-c', f('s.ctx')]);
      await flush();
      assert.equal(await server.tool('tpm2_unseal', ['-c', f('s.ctx'), '-p', 'pcr:sha256:16']), secret);
      await flush();
      await server.tool('tpm2_flushcontext', ['-l']);
      await server.tool('tpm2_pcrextend', [`16:sha256=${'ab'.repeat(32)}`]);
      await assert.rejects(server.tool('tpm2_unseal', ['-c', f('s.ctx'), '-p', 'pcr:sha256:16']), /0x99d|policy/i);
      await flush();
      await server.tool('tpm2_flushcontext', ['-l']);
    });
  });
}
