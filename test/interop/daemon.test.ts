/**
 * `vtpmd serve` as an operator and a guest use it: VMs created through the CLI, each VM's vTPM
 * reached by tpm2-tools over its own swtpm endpoint, and a daemon restart that a guest does not
 * notice.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { cli, http, installChangedCopy, startDaemon, stopDaemon, tcti, type Daemon } from './daemon-harness.ts';
import { exerciseHardwareVm } from './hardware-vm-flow.ts';
import { interopUnavailable, parsePcrRead, tempDir, tool } from './harness.ts';

const run = promisify(execFile);
const skip = interopUnavailable('swtpm');

describe('vtpmd serve', { skip }, () => {
  const state = tempDir('vtpmd-serve-');
  const work = tempDir('vtpmd-serve-work-');
  let daemon: Daemon;

  before(async () => {
    daemon = await startDaemon(state.path);
  });
  after(async () => {
    if (daemon) await stopDaemon(daemon);
    state.remove();
    work.remove();
  });

  test('vm create prints the VM with its endpoint, and tpm2-tools reach that vTPM', async () => {
    const r = await cli(state.path, ['vm', 'create', 'web']);
    assert.equal(r.code, 0, r.stderr);
    const vm = JSON.parse(r.stdout);
    assert.equal(vm.name, 'web');
    assert.equal(vm.state, 'running');
    assert.match(vm.endpoints.swtpm.data, /^tcp:\/\/127\.0\.0\.1:\d+$/);
    assert.match(vm.endpoints.swtpm.ctrl, /^tcp:\/\/127\.0\.0\.1:\d+$/);
    await tool(tcti(vm), 'tpm2_pcrextend', ['16:sha256=' + '11'.repeat(32)]);
    const pcr = parsePcrRead(await tool(tcti(vm), 'tpm2_pcrread', ['sha256:16'])).get('sha256')!.get(16);
    assert.notEqual(pcr, '00'.repeat(32));
  });

  test("vm credentials writes the vTPM's EK credential chain, which openssl verifies and tpm2_getekcertificate finds in the guest", async () => {
    const out = tempDir('vtpmd-creds-');
    try {
      const r = await cli(state.path, ['vm', 'credentials', 'web', '--out', out.path]);
      assert.equal(r.code, 0, r.stderr);
      const f = (n: string) => join(out.path, n);
      const verified = await run('openssl', ['verify', '-CAfile', f('vmca-root.pem'), '-untrusted', f('chain.pem'), f('ek.pem'), f('platform.pem')]);
      assert.match(verified.stdout, /ek\.pem: OK/);
      assert.match(verified.stdout, /platform\.pem: OK/);
      const text = (await run('openssl', ['x509', '-in', f('ek.pem'), '-noout', '-text'])).stdout;
      assert.match(text, /2\.23\.133\.8\.1/);
      assert.match(text, /GVTPM/);
      const vm = JSON.parse((await cli(state.path, ['vm', 'show', 'web'])).stdout);
      await tool(tcti(vm), 'tpm2_getekcertificate', ['-o', f('guest-ek.der')]);
      const guestPem = (await run('openssl', ['x509', '-inform', 'der', '-in', f('guest-ek.der')])).stdout;
      const fileDer = (await run('openssl', ['x509', '-in', f('ek.pem'), '-outform', 'der'], { encoding: 'buffer' })).stdout;
      assert.ok(readFileSync(f('guest-ek.der')).equals(fileDer), 'the guest reads the certificate the vMA issued');
      assert.match(guestPem, /BEGIN CERTIFICATE/);
    } finally {
      out.remove();
    }
  });

  test("tpm2-tools extend, quote and seal against one VM's vTPM leave another VM's PCRs untouched", async () => {
    const db = JSON.parse((await cli(state.path, ['vm', 'create', 'db'])).stdout);
    const web = JSON.parse((await cli(state.path, ['vm', 'show', 'web'])).stdout);
    const w = (n: string) => join(work.path, n);
    await tool(tcti(web), 'tpm2_pcrextend', ['16:sha256=' + '22'.repeat(32)]);
    await tool(tcti(web), 'tpm2_createprimary', ['-C', 'o', '-c', w('primary.ctx')]);
    await tool(tcti(web), 'tpm2_create', ['-C', w('primary.ctx'), '-i', '-', '-u', w('seal.pub'), '-r', w('seal.priv')], Buffer.from('disk key of web'));
    await tool(tcti(web), 'tpm2_flushcontext', ['-t']);
    await tool(tcti(web), 'tpm2_createek', ['-c', w('ek.ctx'), '-G', 'ecc']);
    await tool(tcti(web), 'tpm2_createak', ['-C', w('ek.ctx'), '-c', w('ak.ctx'), '-G', 'ecc', '-u', w('ak.pub'), '-f', 'pem']);
    await tool(tcti(web), 'tpm2_flushcontext', ['-t']);
    await tool(tcti(web), 'tpm2_flushcontext', ['-s']);
    await tool(tcti(web), 'tpm2_quote', ['-c', w('ak.ctx'), '-l', 'sha256:16', '-q', 'abcdef0123456789', '-m', w('quote.msg'), '-s', w('quote.sig'), '-o', w('quote.pcrs'), '-g', 'sha256']);
    await tool(tcti(web), 'tpm2_flushcontext', ['-t']);
    await run('tpm2_checkquote', ['-u', w('ak.pub'), '-m', w('quote.msg'), '-s', w('quote.sig'), '-f', w('quote.pcrs'), '-g', 'sha256', '-q', 'abcdef0123456789']);
    const dbPcr = parsePcrRead(await tool(tcti(db), 'tpm2_pcrread', ['sha256:16'])).get('sha256')!.get(16);
    assert.equal(dbPcr, '00'.repeat(32), "VM2's PCR 16 is untouched");
  });

  test('a hardware-backed VM serves tpm2-tools as a chip would: its keys sign, change auth and quote, HMAC and encrypt, its storage keys parent keys through sessions salted to them, its data unseals and its duplicable keys duplicate, through the host chip', async () => {
    await exerciseHardwareVm(state.path, work.path, 'hsm');
  });

  test('bad requests get clear errors and change nothing', async () => {
    const dup = await cli(state.path, ['vm', 'create', 'web']);
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /already exists/);
    const unknown = await cli(state.path, ['vm', 'show', 'nobody']);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /no VM named 'nobody'/);
    const sock = join(state.path, 'vtpmd.sock');
    const malformed = await http(sock, 'POST', '/vms', '{"name": ');
    assert.equal(malformed.status, 400);
    assert.match(JSON.parse(malformed.body).error, /not valid JSON/);
    const badField = await http(sock, 'POST', '/vms', JSON.stringify({ name: 'x', dm: 'quantum' }));
    assert.equal(badField.status, 400);
    assert.equal((await http(sock, 'GET', '/nowhere')).status, 404);
    assert.equal((await http(sock, 'PUT', '/vms')).status, 405);
    // Upgrades: nothing staged until a vtpmd tree that measures differently is given.
    assert.equal((await http(sock, 'POST', '/upgrade', JSON.stringify({ code: 1 }))).status, 400);
    assert.equal((await http(sock, 'POST', '/upgrade', JSON.stringify({}))).status, 400, 'neither code nor a boot log');
    assert.equal((await http(sock, 'POST', '/upgrade', JSON.stringify({ code: 'relative/path' }))).status, 400);
    const nothing = await cli(state.path, ['upgrade', 'stage']);
    assert.equal(nothing.code, 1);
    assert.match(nothing.stderr, /give the new vtpmd code \(a folder\), --boot-log, or both/);
    const notALog = await cli(state.path, ['upgrade', 'stage', '--boot-log', join(work.path, 'missing.log')]);
    assert.equal(notALog.code, 1);
    assert.match(notALog.stderr, /missing\.log is not a readable TCG event log/);
    const notVtpmd = await cli(state.path, ['upgrade', 'stage', work.path]);
    assert.equal(notVtpmd.code, 1);
    assert.match(notVtpmd.stderr, /is not vtpmd code: it has no src\/vtpm folder/);
    const same = await cli(state.path, ['upgrade', 'stage', join(import.meta.dirname, '..', '..')]);
    assert.equal(same.code, 1);
    assert.match(same.stderr, /code under \S+ measures as the running host does: it opens the vTPMs as it is, with nothing staged/);
    assert.deepEqual(JSON.parse((await cli(state.path, ['upgrade', 'cancel'])).stdout), { cancelled: false });
    assert.equal((await http(sock, 'GET', '/upgrade')).status, 405);
    const list = JSON.parse((await cli(state.path, ['vm', 'list'])).stdout) as { name: string }[];
    assert.deepEqual(list.map((v) => v.name).sort(), ['db', 'web']);
  });

  test('health and metrics report the VMs and their commands', async () => {
    const sock = join(state.path, 'vtpmd.sock');
    const health = JSON.parse((await http(sock, 'GET', '/health')).body);
    assert.equal(health.status, 'ok');
    assert.equal(health.hostTpm, 'simulated lab chip');
    assert.equal(health.vms, 2);
    const shown = await cli(state.path, ['health']);
    assert.equal(shown.code, 0, shown.stderr);
    assert.deepEqual(JSON.parse(shown.stdout), health, '`vtpmd health` prints the same');
    const nobody = await cli(state.path, ['health', '--api', `unix://${join(state.path, 'nobody.sock')}`]);
    assert.equal(nobody.code, 1);
    assert.match(nobody.stderr, /^vtpmd: error: no vtpmd daemon answers at unix:\/\/\S+nobody\.sock \(ENOENT\)/);
    const metrics = (await http(sock, 'GET', '/metrics')).body;
    assert.match(metrics, /vtpmd_vm_queue_depth\{vm="web"\} 0/);
    // PCR_Extend is 0x00000182.
    assert.match(metrics, /vtpmd_vm_command_duration_ms_count\{vm="web",code="0x00000182"\} [1-9]/);
    const gauge = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(metrics)![1]);
    assert.ok(gauge('vtpmd_vms_loaded') >= 1);
    assert.equal(gauge('vtpmd_pss_vms_held'), gauge('vtpmd_vms_loaded'), 'the PSS holds in memory the state of loaded vTPMs only');
    assert.equal(gauge('vtpmd_pss_sealing_thread'), 0, 'a few VMs saving one at a time do not start the sealing thread');
  });

  test('a daemon restart is invisible to the guest: same endpoint, same PCRs, no Startup', async () => {
    const before = JSON.parse((await cli(state.path, ['vm', 'show', 'web'])).stdout);
    const pcr = parsePcrRead(await tool(tcti(before), 'tpm2_pcrread', ['sha256:16'])).get('sha256')!.get(16);
    await stopDaemon(daemon);
    daemon = await startDaemon(state.path);
    const after = JSON.parse((await cli(state.path, ['vm', 'show', 'web'])).stdout);
    assert.equal(after.endpoints.swtpm.data, before.endpoints.swtpm.data);
    assert.equal(parsePcrRead(await tool(tcti(after), 'tpm2_pcrread', ['sha256:16'])).get('sha256')!.get(16), pcr);
    // The owner seed and the sealed object came back with the vTPM.
    const w = (n: string) => join(work.path, n);
    await tool(tcti(after), 'tpm2_createprimary', ['-C', 'o', '-c', w('primary2.ctx')]);
    await tool(tcti(after), 'tpm2_flushcontext', ['-t']);
    await tool(tcti(after), 'tpm2_load', ['-C', w('primary2.ctx'), '-u', w('seal.pub'), '-r', w('seal.priv'), '-c', w('seal.ctx')]);
    await tool(tcti(after), 'tpm2_flushcontext', ['-t']);
    assert.equal(await tool(tcti(after), 'tpm2_unseal', ['-c', w('seal.ctx')]), 'disk key of web');
    await tool(tcti(after), 'tpm2_flushcontext', ['-t']);
    const db = JSON.parse((await cli(state.path, ['vm', 'show', 'db'])).stdout);
    assert.equal(db.state, 'running');
  });

  test("a policy session the guest saved outlives the daemon's SIGKILL and still unseals what its policy allows", async () => {
    const vm = JSON.parse((await cli(state.path, ['vm', 'show', 'web'])).stdout);
    const t = tcti(vm);
    const w = (n: string) => join(work.path, n);
    await tool(t, 'tpm2_startauthsession', ['-S', w('trial.ctx')]);
    await tool(t, 'tpm2_policycommandcode', ['-S', w('trial.ctx'), '-L', w('unseal.policy'), 'TPM2_CC_Unseal']);
    await tool(t, 'tpm2_flushcontext', [w('trial.ctx')]);
    await tool(t, 'tpm2_createprimary', ['-C', 'o', '-c', w('sp.ctx')]);
    await tool(t, 'tpm2_create', ['-C', w('sp.ctx'), '-L', w('unseal.policy'), '-i', '-', '-u', w('ps.pub'), '-r', w('ps.priv')], Buffer.from('policy-bound secret'));
    await tool(t, 'tpm2_flushcontext', ['-t']);
    // The guest's policy session, asserted and saved to a file by tpm2-tools, as a resource manager holds it.
    await tool(t, 'tpm2_startauthsession', ['--policy-session', '-S', w('policy.ctx')]);
    await tool(t, 'tpm2_policycommandcode', ['-S', w('policy.ctx'), 'TPM2_CC_Unseal']);

    const exited = new Promise((ok) => daemon.child.once('exit', ok));
    daemon.child.kill('SIGKILL');
    await exited;
    daemon = await startDaemon(state.path);

    await tool(t, 'tpm2_createprimary', ['-C', 'o', '-c', w('sp2.ctx')]);
    await tool(t, 'tpm2_load', ['-C', w('sp2.ctx'), '-u', w('ps.pub'), '-r', w('ps.priv'), '-c', w('ps.ctx')]);
    await tool(t, 'tpm2_flushcontext', ['-t']);
    assert.equal(await tool(t, 'tpm2_unseal', ['-c', w('ps.ctx'), '-p', `session:${w('policy.ctx')}`]), 'policy-bound secret');
    await tool(t, 'tpm2_flushcontext', ['-t']);
    // tpm2-tools saved the session again after the unseal; flushing it leaves nothing to load.
    await tool(t, 'tpm2_flushcontext', [w('policy.ctx')]);
    await assert.rejects(tool(t, 'tpm2_flushcontext', [w('policy.ctx')]), /handle is not correct/);
  });

  test('stop closes the endpoint, start reopens it, destroy removes the VM', async () => {
    const stopped = JSON.parse((await cli(state.path, ['vm', 'stop', 'web'])).stdout);
    assert.equal(stopped.state, 'stopped');
    assert.deepEqual(stopped.endpoints, {});
    const started = JSON.parse((await cli(state.path, ['vm', 'start', 'web'])).stdout);
    assert.equal(started.state, 'running');
    await tool(tcti(started), 'tpm2_pcrread', ['sha256:16']);
    assert.equal((await cli(state.path, ['vm', 'destroy', 'web'])).code, 0);
    assert.deepEqual((JSON.parse((await cli(state.path, ['vm', 'list'])).stdout) as { name: string }[]).map((v) => v.name), ['db']);
  });

  test('without a daemon the CLI says so', async () => {
    const empty = tempDir('vtpmd-nodaemon-');
    try {
      const r = await cli(empty.path, ['vm', 'list']);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /no vtpmd daemon answers at unix:\/\/.*vtpmd\.sock/);
    } finally {
      empty.remove();
    }
  });

  test('a TCP control API refuses requests without the right bearer token', async () => {
    const other = tempDir('vtpmd-serve-tcp-');
    const d = await startDaemon(other.path, ['--api', 'tcp://127.0.0.1:0'], { VTPMD_API_TOKEN: 'let-me-in' });
    try {
      assert.match(d.api, /^http:\/\/127\.0\.0\.1:\d+$/);
      const denied = await cli(other.path, ['vm', 'list', '--api', d.api], { VTPMD_API_TOKEN: 'wrong' });
      assert.equal(denied.code, 1);
      assert.match(denied.stderr, /bearer token/);
      const allowed = await cli(other.path, ['vm', '--api', d.api, 'list'], { VTPMD_API_TOKEN: 'let-me-in' });
      assert.equal(allowed.code, 0, allowed.stderr);
    } finally {
      await stopDaemon(d);
      other.remove();
    }
  });

  test('an upgrade staged with `vtpmd upgrade stage` is invisible to the guests: the new installation serves the same VMs, and the old one is refused them', async () => {
    const sock = join(state.path, 'vtpmd.sock');
    const db = JSON.parse((await cli(state.path, ['vm', 'show', 'db'])).stdout);
    const pcr = parsePcrRead(await tool(tcti(db), 'tpm2_pcrread', ['sha256:16'])).get('sha256')!.get(16);
    // A release that changed the PSS and the TPM 2.0 engine.
    const v2 = join(work.path, 'vtpmd-v2');
    const v2Bin = installChangedCopy(v2, ['src/pss', 'src/tpm/tpm2']);
    const staged = await cli(state.path, ['upgrade', 'stage', v2]);
    assert.equal(staged.code, 0, staged.stderr);
    const plan = JSON.parse(staged.stdout) as { pcrs: Record<string, string>; models: unknown[] };
    assert.deepEqual([Object.keys(plan.pcrs), plan.models.length], [['12'], 1]);
    await stopDaemon(daemon);

    daemon = await startDaemon(state.path, [], {}, v2Bin);
    assert.equal(JSON.parse((await http(sock, 'GET', '/health')).body).status, 'ok');
    const after = JSON.parse((await cli(state.path, ['vm', 'show', 'db'])).stdout);
    assert.equal(after.endpoints.swtpm.data, db.endpoints.swtpm.data);
    assert.notEqual(after.measurement, db.measurement, 'the VM runs the new model');
    assert.equal(parsePcrRead(await tool(tcti(after), 'tpm2_pcrread', ['sha256:16'])).get('sha256')!.get(16), pcr);
    await tool(tcti(after), 'tpm2_pcrextend', ['16:sha256=' + '77'.repeat(32)]);
    const fresh = await cli(state.path, ['vm', 'create', 'after-upgrade']);
    assert.equal(fresh.code, 0, fresh.stderr);
    const creds = await cli(state.path, ['vm', 'credentials', 'after-upgrade', '--out', join(work.path, 'creds-v2')]);
    assert.equal(creds.code, 0, creds.stderr);
    await stopDaemon(daemon);

    daemon = await startDaemon(state.path);
    const health = JSON.parse((await http(sock, 'GET', '/health')).body);
    assert.deepEqual([health.status, health.pss], ['degraded', 'refusing every vTPM (tcb-changed)'], 'the old installation is refused the upgraded state');
    assert.match(health.pssRefusal, /^the chip will not release the storage key: PCRs [\d,]+ no longer hold the values it was sealed to/, 'and says what it found');
  });
});
