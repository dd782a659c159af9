/**
 * Session audit through tpm2-tools: an audit session carries TPM2_GetRandom, and
 * tpm2_getsessionauditdigest returns a signed TPMS_ATTEST whose session digest equals the digest
 * computed here, independently, from the command and response the tools exchanged.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { execFile } from 'node:child_process';
import { VtpmdServer, interopUnavailable, tempDir } from './harness.ts';
import { decode } from '../../src/tpm/wire/codec.ts';
import { attest } from '../../src/tpm/tpm2/types/attest.ts';
import { CC, ST } from '../../src/tpm/tpm2/constants.ts';

const run = promisify(execFile);
const sha256 = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
const u16 = (v: number) => Buffer.from([v >> 8, v & 0xff]);
const u32 = (v: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v);
  return b;
};

describe('session audit with tpm2-tools over the swtpm TCTI', { skip: interopUnavailable('swtpm') }, () => {
  const state = tempDir('vtpmd-audit-');
  const files = tempDir('vtpmd-audit-files-');
  const f = (n: string) => join(files.path, n);
  let server: VtpmdServer;

  before(async () => {
    server = await VtpmdServer.start('swtpm', state.path);
    await server.tool('tpm2_startup', ['-c']);
  });
  after(async () => {
    await server?.stop();
    state.remove();
    files.remove();
  });

  test('tpm2_getsessionauditdigest signs the digest of exactly the commands the audit session carried', async () => {
    await server.tool('tpm2_createek', ['-c', f('ek.ctx'), '-G', 'ecc']);
    await server.tool('tpm2_createak', ['-C', f('ek.ctx'), '-c', f('ak.ctx'), '-G', 'ecc', '-s', 'ecdsa', '-g', 'sha256', '-u', f('ak.pem'), '-f', 'pem']);
    await server.tool('tpm2_flushcontext', ['-t']);
    await server.tool('tpm2_flushcontext', ['-s']);
    await server.tool('tpm2_startauthsession', ['-S', f('audit.ctx'), '--audit-session']);
    const random = Buffer.from((await server.tool('tpm2_getrandom', ['-S', f('audit.ctx'), '--hex', '8'])).trim(), 'hex');
    assert.equal(random.length, 8);
    await server.tool('tpm2_getsessionauditdigest', ['-S', f('audit.ctx'), '-c', f('ak.ctx'), '-m', f('attest.bin'), '-s', f('sig.bin'), '-g', 'sha256', '-q', '11223344', '-f', 'plain']);
    const verified = await run('openssl', ['dgst', '-sha256', '-verify', f('ak.pem'), '-signature', f('sig.bin'), f('attest.bin')]);
    assert.match(verified.stdout, /Verified OK/);

    const a = decode(attest, readFileSync(f('attest.bin')));
    assert.equal(a.type, ST.ATTEST_SESSION_AUDIT);
    assert.deepEqual(a.extraData, Buffer.from('11223344', 'hex'));
    // GetRandom(8): cpHash over the code and bytesRequested, rpHash over rc, code and the TPM2B returned.
    const cpHash = sha256(u32(CC.GetRandom), u16(8));
    const rpHash = sha256(u32(0), u32(CC.GetRandom), u16(random.length), random);
    const expected = sha256(Buffer.alloc(32), cpHash, rpHash);
    assert.deepEqual((a.attested as { sessionDigest: Buffer }).sessionDigest, expected);
  });
});
