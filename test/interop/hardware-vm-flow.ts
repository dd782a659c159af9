/**
 * What a guest does with a hardware-backed vTPM through tpm2-tools, checked step by step: keys
 * made in the host's TPM sign, change auth and quote, HMAC and encrypt; its storage keys parent
 * keys through sessions salted to them; its data unseals; its duplicable keys duplicate. Run
 * against the simulated chip (daemon.test.ts) and an attached swtpm (attached-host.test.ts).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { cli, http, tcti } from './daemon-harness.ts';
import { tool } from './harness.ts';

const run = promisify(execFile);

/** Creates hardware-backed VM `name` on the daemon of `stateDir`, runs the whole flow in it (files in `workDir`), and destroys it. */
export async function exerciseHardwareVm(stateDir: string, workDir: string, name: string): Promise<void> {
  const r = await cli(stateDir, ['vm', 'create', name, '--dm', 'hardware']);
  assert.equal(r.code, 0, r.stderr);
  const vm = JSON.parse(r.stdout);
  const t = tcti(vm);
  const w = (n: string) => join(workDir, `${name}-${n}`);
  const chipMade = (file: string) => readFileSync(file).subarray(2, 6).toString('latin1') === 'vHK3';
  // Without a resource manager every tool leaves its objects loaded: flush between tools (3 slots).
  const flush = () => tool(t, 'tpm2_flushcontext', ['-t']);
  await tool(t, 'tpm2_createprimary', ['-C', 'o', '-c', w('primary.ctx')]);
  await flush();
  await tool(t, 'tpm2_create', ['-C', w('primary.ctx'), '-G', 'ecc', '-p', 'signpin', '-u', w('sign.pub'), '-r', w('sign.priv')]);
  assert.ok(chipMade(w('sign.priv')), 'the signing key was made in the chip (the guest holds the double-wrapped blob)');
  await flush();
  await tool(t, 'tpm2_load', ['-C', w('primary.ctx'), '-u', w('sign.pub'), '-r', w('sign.priv'), '-c', w('sign.ctx')]);
  writeFileSync(w('msg'), 'signed in the host chip');
  await flush();
  await tool(t, 'tpm2_sign', ['-c', w('sign.ctx'), '-p', 'signpin', '-g', 'sha256', '-o', w('sig'), w('msg')]);
  await flush();
  await tool(t, 'tpm2_verifysignature', ['-c', w('sign.ctx'), '-g', 'sha256', '-m', w('msg'), '-s', w('sig')]);
  await flush();
  await tool(t, 'tpm2_changeauth', ['-c', w('sign.ctx'), '-C', w('primary.ctx'), '-p', 'signpin', '-r', w('sign2.priv'), 'newpin']);
  await flush();
  await tool(t, 'tpm2_load', ['-C', w('primary.ctx'), '-u', w('sign.pub'), '-r', w('sign2.priv'), '-c', w('sign2.ctx')]);
  await flush();
  await tool(t, 'tpm2_sign', ['-c', w('sign2.ctx'), '-p', 'newpin', '-g', 'sha256', '-o', w('sig2'), w('msg')]);
  await flush();
  await assert.rejects(tool(t, 'tpm2_sign', ['-c', w('sign2.ctx'), '-p', 'signpin', '-g', 'sha256', '-o', w('sig3'), w('msg')]));
  await flush();
  await tool(t, 'tpm2_create', ['-C', w('primary.ctx'), '-i', '-', '-u', w('seal.pub'), '-r', w('seal.priv')], Buffer.from('kept by the chip'));
  assert.ok(chipMade(w('seal.priv')), 'the sealed data was made in the chip');
  await flush();
  await tool(t, 'tpm2_load', ['-C', w('primary.ctx'), '-u', w('seal.pub'), '-r', w('seal.priv'), '-c', w('seal.ctx')]);
  await flush();
  assert.equal(await tool(t, 'tpm2_unseal', ['-c', w('seal.ctx')]), 'kept by the chip');
  await flush();
  // A storage key of the guest's own is made in the chip too; a key made under it signs, through
  // a session salted to it (the salt decrypted by the chip).
  await tool(t, 'tpm2_create', ['-C', w('primary.ctx'), '-G', 'rsa2048:null:aes128cfb', '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|decrypt', '-u', w('store.pub'), '-r', w('store.priv')]);
  assert.ok(chipMade(w('store.priv')), 'the storage key was made in the chip');
  await flush();
  await tool(t, 'tpm2_load', ['-C', w('primary.ctx'), '-u', w('store.pub'), '-r', w('store.priv'), '-c', w('store.ctx')]);
  await flush();
  await tool(t, 'tpm2_startauthsession', ['--hmac-session', '-c', w('store.ctx'), '-S', w('salted.ctx')]);
  await flush();
  await tool(t, 'tpm2_create', ['-C', w('store.ctx'), '-P', `session:${w('salted.ctx')}`, '-G', 'ecc', '-u', w('child.pub'), '-r', w('child.priv')]);
  await tool(t, 'tpm2_flushcontext', [w('salted.ctx')]);
  await flush();
  await tool(t, 'tpm2_load', ['-C', w('store.ctx'), '-u', w('child.pub'), '-r', w('child.priv'), '-c', w('child.ctx')]);
  await flush();
  await tool(t, 'tpm2_sign', ['-c', w('child.ctx'), '-g', 'sha256', '-o', w('child.sig'), w('msg')]);
  await flush();
  await tool(t, 'tpm2_verifysignature', ['-c', w('child.ctx'), '-g', 'sha256', '-m', w('msg'), '-s', w('child.sig')]);
  await flush();
  await tool(t, 'tpm2_createek', ['-c', w('ek.ctx'), '-G', 'ecc']);
  await flush();
  // The EK is a primary the chip derives: a session salted to it (the chip's ECDH_ZGen recovering
  // the salt) encrypts what tpm2_getrandom gets back.
  await tool(t, 'tpm2_startauthsession', ['--hmac-session', '-c', w('ek.ctx'), '-S', w('ek-salted.ctx')]);
  await flush();
  assert.match(await tool(t, 'tpm2_getrandom', ['--hex', '-S', w('ek-salted.ctx'), '16']), /^[0-9a-f]{32}$/);
  await tool(t, 'tpm2_flushcontext', [w('ek-salted.ctx')]);
  await flush();
  await tool(t, 'tpm2_createak', ['-C', w('ek.ctx'), '-c', w('ak.ctx'), '-G', 'ecc', '-u', w('ak.pub'), '-f', 'pem', '-r', w('ak.priv')]);
  assert.ok(chipMade(w('ak.priv')), 'the attestation key was made in the chip');
  await flush();
  await tool(t, 'tpm2_flushcontext', ['-s']);
  await tool(t, 'tpm2_quote', ['-c', w('ak.ctx'), '-l', 'sha256:0,16', '-q', '0badc0de', '-m', w('quote.msg'), '-s', w('quote.sig'), '-o', w('quote.pcrs'), '-g', 'sha256']);
  await run('tpm2_checkquote', ['-u', w('ak.pub'), '-m', w('quote.msg'), '-s', w('quote.sig'), '-f', w('quote.pcrs'), '-g', 'sha256', '-q', '0badc0de']);
  await tool(t, 'tpm2_flushcontext', ['-t']);
  await tool(t, 'tpm2_create', ['-C', w('primary.ctx'), '-G', 'hmac', '-u', w('hmac.pub'), '-r', w('hmac.priv')]);
  assert.ok(chipMade(w('hmac.priv')), 'the HMAC key was made in the chip');
  await flush();
  await tool(t, 'tpm2_load', ['-C', w('primary.ctx'), '-u', w('hmac.pub'), '-r', w('hmac.priv'), '-c', w('hmac.ctx')]);
  await flush();
  // Up to 1,024 bytes tpm2_hmac sends TPM2_HMAC; longer data goes through an HMAC sequence.
  const hmacOf = async (bytes: number) => {
    writeFileSync(w(`data${bytes}`), Buffer.from(Array.from({ length: bytes }, (_, i) => (i * 31) & 0xff)));
    const mac = await tool(t, 'tpm2_hmac', ['-c', w('hmac.ctx'), '--hex', w(`data${bytes}`)]);
    await flush();
    return mac.trim();
  };
  const short = await hmacOf(100);
  const long = await hmacOf(3000);
  assert.match(short, /^[0-9a-f]{64}$/);
  assert.match(long, /^[0-9a-f]{64}$/);
  assert.notEqual(short, long);
  assert.equal(await hmacOf(3000), long, 'the chip HMAC key gives the same HMAC for the same data');
  await tool(t, 'tpm2_create', ['-C', w('primary.ctx'), '-G', 'aes128cfb', '-u', w('aes.pub'), '-r', w('aes.priv')]);
  assert.ok(chipMade(w('aes.priv')), 'the AES key was made in the chip');
  await flush();
  await tool(t, 'tpm2_load', ['-C', w('primary.ctx'), '-u', w('aes.pub'), '-r', w('aes.priv'), '-c', w('aes.ctx')]);
  await flush();
  const plain = Buffer.from('a guest secret encrypted by the host chip, '.repeat(5));
  writeFileSync(w('plain'), plain);
  await tool(t, 'tpm2_encryptdecrypt', ['-c', w('aes.ctx'), '-o', w('cipher'), w('plain')]);
  await flush();
  const cipher = readFileSync(w('cipher'));
  assert.equal(cipher.length, plain.length);
  assert.notDeepEqual(cipher, plain);
  await tool(t, 'tpm2_encryptdecrypt', ['-d', '-c', w('aes.ctx'), '-o', w('back'), w('cipher')]);
  await flush();
  assert.deepEqual(readFileSync(w('back')), plain, 'decrypting in the chip gives the plaintext back');
  // A key the guest may duplicate is made in the chip too; tpm2_duplicate gets an ordinary
  // duplication blob (the chip hands the key out to the model inner-wrapped), which imports
  // under the guest's storage key, and the imported copy signs as the original.
  await tool(t, 'tpm2_startauthsession', ['-S', w('trial.ctx')]);
  await tool(t, 'tpm2_policycommandcode', ['-S', w('trial.ctx'), '-L', w('dup.policy'), 'TPM2_CC_Duplicate']);
  await tool(t, 'tpm2_flushcontext', [w('trial.ctx')]);
  await tool(t, 'tpm2_create', ['-C', w('primary.ctx'), '-G', 'ecc', '-L', w('dup.policy'), '-a', 'sensitivedataorigin|userwithauth|sign', '-u', w('dkey.pub'), '-r', w('dkey.priv')]);
  assert.ok(chipMade(w('dkey.priv')), 'the duplicable key was made in the chip');
  await flush();
  await tool(t, 'tpm2_loadexternal', ['-C', 'o', '-u', w('store.pub'), '-c', w('np.ctx')]);
  await flush();
  await tool(t, 'tpm2_load', ['-C', w('primary.ctx'), '-u', w('dkey.pub'), '-r', w('dkey.priv'), '-c', w('dkey.ctx')]);
  await flush();
  await tool(t, 'tpm2_startauthsession', ['--policy-session', '-S', w('dup.ctx')]);
  await tool(t, 'tpm2_policycommandcode', ['-S', w('dup.ctx'), 'TPM2_CC_Duplicate']);
  await tool(t, 'tpm2_duplicate', ['-C', w('np.ctx'), '-c', w('dkey.ctx'), '-G', 'aes', '-o', w('inner.key'), '-p', `session:${w('dup.ctx')}`, '-r', w('dup.priv'), '-s', w('dup.seed')]);
  await tool(t, 'tpm2_flushcontext', [w('dup.ctx')]);
  await flush();
  await tool(t, 'tpm2_import', ['-C', w('store.ctx'), '-G', 'aes', '-k', w('inner.key'), '-u', w('dkey.pub'), '-i', w('dup.priv'), '-r', w('dkey-imported.priv'), '-s', w('dup.seed')]);
  await flush();
  await tool(t, 'tpm2_load', ['-C', w('store.ctx'), '-u', w('dkey.pub'), '-r', w('dkey-imported.priv'), '-c', w('dkey2.ctx')]);
  await flush();
  await tool(t, 'tpm2_sign', ['-c', w('dkey2.ctx'), '-g', 'sha256', '-o', w('dsig'), w('msg')]);
  await flush();
  await tool(t, 'tpm2_verifysignature', ['-c', w('dkey.ctx'), '-g', 'sha256', '-m', w('msg'), '-s', w('dsig')]);
  await flush();
  const chipGauges = async () => {
    const m = (await http(join(stateDir, 'vtpmd.sock'), 'GET', '/metrics')).body;
    return { sessions: Number(/^vtpmd_chip_saved_sessions (\d+)$/m.exec(m)![1]), keys: Number(/^vtpmd_chip_saved_key_contexts (\d+)$/m.exec(m)![1]) };
  };
  const held = await chipGauges();
  assert.equal(held.sessions, 1, "the VM's chip session is saved between its operations");
  assert.ok(held.keys >= 2, 'and so are the contexts of its chip keys');
  assert.equal((await cli(stateDir, ['vm', 'destroy', name])).code, 0);
  assert.equal((await chipGauges()).sessions, 0, 'destroying the VM ends its chip session');
}
