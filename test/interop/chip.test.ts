/**
 * `vtpmd socket --tpm2 --chip` serves a booted lab host's TPM; tpm2-tools and openssl, unmodified,
 * find what they find on a real machine: EK certificates chaining to the manufacturer's root at
 * the standard NV indices, EKs at the standard handles that `tpm2_createek` regenerates, and an
 * event log that `tpm2_eventlog` replays to the chip's PCRs.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { hasCommand, interopUnavailable, parsePcrRead, skipUnlessRequired, tempDir, VtpmdServer } from './harness.ts';

const run = promisify(execFile);
const skip = interopUnavailable('swtpm') ?? (hasCommand('openssl') ? undefined : skipUnlessRequired('the chip interop tests need openssl'));

describe('the lab host chip through tpm2-tools and openssl', { skip }, () => {
  const state = tempDir('vtpmd-chip-interop-');
  const work = tempDir('vtpmd-chip-work-');
  let server: VtpmdServer;
  const file = (name: string) => join(work.path, name);

  before(async () => {
    server = await VtpmdServer.start('swtpm', state.path, ['--chip']);
  });
  after(async () => {
    await server?.stop();
    state.remove();
    work.remove();
  });

  test('tpm2_getekcertificate reads both EK certificates and openssl verifies them against the manufacturer root', async () => {
    await server.tool('tpm2_getekcertificate', ['-o', file('ek-rsa.der'), '-o', file('ek-ecc.der')]);
    const root = join(state.path, 'manufacturer-ca.pem');
    for (const [der, algorithm] of [['ek-rsa.der', 'rsaEncryption'], ['ek-ecc.der', 'id-ecPublicKey']] as const) {
      const pem = file(`${der}.pem`);
      await run('openssl', ['x509', '-inform', 'der', '-in', file(der), '-out', pem]);
      const { stdout } = await run('openssl', ['verify', '-CAfile', root, pem]);
      assert.match(stdout, /: OK/);
      const text = (await run('openssl', ['x509', '-in', pem, '-noout', '-text'])).stdout;
      assert.match(text, new RegExp(`Public Key Algorithm: ${algorithm}`));
      assert.match(text, /2\.23\.133\.8\.1/, 'the EK certificate extended key usage');
      assert.match(text, /X509v3 Subject Alternative Name: critical/);
    }
  });

  test('the certified EK is the one tpm2_createek derives from the standard template', async () => {
    await server.tool('tpm2_getekcertificate', ['-o', file('ek-rsa.der'), '-o', file('ek-ecc.der')]);
    await run('openssl', ['x509', '-inform', 'der', '-in', file('ek-rsa.der'), '-pubkey', '-noout', '-out', file('cert-ek.pem')]);
    await server.tool('tpm2_createek', ['-c', file('ek.ctx'), '-G', 'rsa', '-u', file('created-ek.pem'), '-f', 'pem']);
    await server.tool('tpm2_flushcontext', ['-t']);
    await server.tool('tpm2_readpublic', ['-c', '0x81010001', '-f', 'pem', '-o', file('persistent-ek.pem')]);
    const certified = readFileSync(file('cert-ek.pem'), 'utf8');
    assert.equal(readFileSync(file('created-ek.pem'), 'utf8'), certified);
    assert.equal(readFileSync(file('persistent-ek.pem'), 'utf8'), certified);
  });

  test('tpm2_eventlog replays the host boot log to the PCR values the chip holds, in every bank', async () => {
    const log = await run('tpm2_eventlog', [join(state.path, 'eventlog.bin')], { maxBuffer: 16 << 20 });
    const replayed = parsePcrRead(log.stdout.slice(log.stdout.indexOf('\npcrs:')));
    assert.ok(replayed.size >= 2, 'the log covers the active banks');
    for (const [bank, pcrs] of replayed) {
      const indices = [...pcrs.keys()];
      assert.ok(indices.includes(0) && indices.includes(4) && indices.includes(11), `${bank}: firmware, boot loader and GVTPM manager PCRs are measured`);
      const chip = parsePcrRead(await server.tool('tpm2_pcrread', [`${bank}:${indices.join(',')}`])).get(bank)!;
      for (const [pcr, value] of pcrs) assert.equal(chip.get(pcr), value, `${bank} PCR ${pcr}`);
    }
    assert.match(log.stdout, /EV_S_CRTM_VERSION/);
    assert.match(log.stdout, /EV_SEPARATOR/);
  });

  test('a restarted host keeps its EKs and certificates and measures the same boot again', async () => {
    const before = parsePcrRead(await server.tool('tpm2_pcrread', ['sha256:0,4,8,9,11,12,13']));
    const certBefore = readFileSync(file('ek-ecc.der'));
    await server.stop();
    server = await VtpmdServer.start('swtpm', state.path, ['--chip']);
    await server.tool('tpm2_getekcertificate', ['-o', file('again-rsa.der'), '-o', file('again-ecc.der')]);
    assert.deepEqual(readFileSync(file('again-ecc.der')), certBefore);
    assert.deepEqual(parsePcrRead(await server.tool('tpm2_pcrread', ['sha256:0,4,8,9,11,12,13'])), before);
  });
});
