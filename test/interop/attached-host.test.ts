/**
 * `vtpmd serve --host-tpm`: vtpmd on a host TPM it did not make. swtpm (libtpms) plays the host's
 * TPM, provisioned by swtpm_setup with EK certificates from swtpm's local CA, and vtpmd reaches it
 * over the swtpm socket interface as tpm2-tools do, or as a character device (a pseudo-terminal
 * relaying to it). Restarting that swtpm is a host reboot: its PCRs start from zero again.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import { ALG, CAP, RH } from '../../src/tpm/tpm2/constants.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { eccSigningTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { SocketReader } from '../../src/transport/socket-io.ts';
import { EventLogBuilder } from '../../src/hwtpm/event-log.ts';
import { EV } from '../../src/hwtpm/event-types.ts';
import { dmiPlatformIdentity } from '../../src/hwtpm/platform-identity.ts';
import { cli, http, installChangedCopy, startDaemon, stopDaemon, tcti, type Daemon } from './daemon-harness.ts';
import { exerciseHardwareVm } from './hardware-vm-flow.ts';
import { hasCommand, interopUnavailable, parsePcrRead, skipUnlessRequired, tempDir, tool } from './harness.ts';

const run = promisify(execFile);
const skip =
  interopUnavailable('swtpm') ??
  (['swtpm', 'swtpm_setup', 'swtpm_localca', 'openssl', 'python3'].every(hasCommand) ? undefined : skipUnlessRequired('the attached host TPM tests need swtpm, swtpm_setup, openssl and python3 (apt-get install swtpm swtpm-tools openssl python3)'));

const COMPONENT_PCRS = [11, 12, 13];

/** A swtpm as the host's TPM, on a Unix socket (its ctrl channel beside it, as the swtpm TCTI expects). */
class HostSwtpm {
  private child: ChildProcess | undefined;
  readonly socket: string;

  constructor(private readonly dir: string) {
    this.socket = join(dir, 'tpm.sock');
  }

  get tcti(): string {
    return `swtpm:path=${this.socket}`;
  }

  /** Provisions the TPM as a manufacturer would: EKs and their certificates from swtpm's local CA. */
  async manufacture(): Promise<string> {
    const ca = join(this.dir, 'ca');
    mkdirSync(join(this.dir, 'state'));
    writeFileSync(join(this.dir, 'localca.conf'), [`statedir = ${ca}`, `signingkey = ${ca}/signkey.pem`, `issuercert = ${ca}/issuercert.pem`, `certserial = ${ca}/certserial`, ''].join('\n'));
    writeFileSync(
      join(this.dir, 'setup.conf'),
      [`create_certs_tool = /usr/bin/swtpm_localca`, `create_certs_tool_config = ${this.dir}/localca.conf`, `create_certs_tool_options = /etc/swtpm-localca.options`, 'active_pcr_banks = sha256', ''].join('\n'),
    );
    await run('swtpm_setup', ['--tpm2', '--tpmstate', join(this.dir, 'state'), '--create-ek-cert', '--lock-nvram', '--config', join(this.dir, 'setup.conf'), '--overwrite']);
    return join(ca, 'issuercert.pem');
  }

  /** Powers the TPM on (Startup(CLEAR) done, as firmware leaves it): every PCR starts at zero. */
  async start(): Promise<void> {
    const child = spawn(
      'swtpm',
      ['socket', '--tpm2', '--tpmstate', `dir=${join(this.dir, 'state')}`, '--server', `type=unixio,path=${this.socket}`, '--ctrl', `type=unixio,path=${this.socket}.ctrl`, '--flags', 'not-need-init,startup-clear'],
      { stdio: 'ignore' },
    );
    this.child = child;
    for (let i = 0; i < 200 && !(existsSync(this.socket) && existsSync(`${this.socket}.ctrl`)); i++) {
      if (child.exitCode !== null) throw new Error(`swtpm exited (${child.exitCode})`);
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Shuts the TPM down as an OS does before a reboot (without it, the next start counts a dictionary-attack failure), then stops it. */
  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    await tool(this.tcti, 'tpm2_shutdown', []);
    const exited = new Promise((ok) => child.once('exit', ok));
    child.kill('SIGTERM');
    await exited;
  }

  /** Stops the TPM as a failure would: at once, no shutdown. */
  async crash(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((ok) => child.once('exit', ok));
    child.kill('SIGKILL');
    await exited;
  }

  async pcrs(pcrs: readonly number[]): Promise<string[]> {
    const bank = parsePcrRead(await tool(this.tcti, 'tpm2_pcrread', [`sha256:${pcrs.join(',')}`])).get('sha256')!;
    return pcrs.map((p) => bank.get(p)!);
  }
}

/**
 * A Unix socket relaying to the host TPM's: cutting it is the TPM going away without a reset (a
 * resource manager restarted, a cable pulled), and opening it again brings the same TPM back.
 */
class Relay {
  private server: Server | undefined;
  private readonly open = new Set<Socket>();

  constructor(
    readonly path: string,
    private readonly target: string,
  ) {}

  async listen(): Promise<void> {
    const server = createServer((client) => {
      const tpm = connect(this.target);
      for (const [from, to] of [[client, tpm], [tpm, client]] as const) {
        this.open.add(from);
        from.pipe(to);
        from.on('error', () => to.destroy());
        from.on('close', () => {
          this.open.delete(from);
          to.destroy();
        });
      }
    });
    this.server = server;
    await new Promise<void>((ok) => server.listen(this.path, ok));
  }

  async cut(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    const closed = new Promise((ok) => server.close(ok));
    for (const s of this.open) s.destroy();
    await closed;
  }
}

/** A client of the host TPM's socket that leaves whatever it loads loaded, as a vtpmd killed mid-operation does. */
async function rawClient(path: string): Promise<{ tpm: Tpm2Client; close: () => void }> {
  const socket = connect({ path });
  await new Promise((ok, fail) => socket.once('connect', ok).once('error', fail));
  const reader = new SocketReader(socket);
  const exec = async (command: Uint8Array) => {
    socket.write(command);
    const header = (await reader.read(10))!;
    return Buffer.concat([header, await reader.readRest(header.readUInt32BE(2) - 10, 10)]);
  };
  return { tpm: new Tpm2Client(exec), close: () => socket.destroy() };
}

/** How many transient objects and loaded sessions the TPM lists. */
async function loaded(tpm: Tpm2Client): Promise<{ objects: number; sessions: number }> {
  const count = async (first: number) => {
    const { capabilityData } = await tpm.getCapability(CAP.HANDLES, first, 64);
    return 'items' in capabilityData ? capabilityData.items.length : 0;
  };
  return { objects: await count(0x80000000), sessions: await count(0x02000000) };
}

async function eventually(what: string, done: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > until) assert.fail(`not within ${timeoutMs / 1000} s: ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The PCR values tpm2_eventlog replays from a binary event log. */
async function replayed(eventLog: string, pcrs: readonly number[]): Promise<string[]> {
  const { stdout } = await run('tpm2_eventlog', [eventLog]);
  const values = new Map([...stdout.matchAll(/^\s+(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$/gm)].map((m) => [Number(m[1]), m[2]!.toLowerCase()]));
  return pcrs.map((p) => values.get(p) ?? '00'.repeat(32));
}

describe('vtpmd serve attached to a host TPM (swtpm)', { skip }, () => {
  const work = tempDir('vtpmd-attached-');
  const state = join(work.path, 'vtpmd');
  const files = (n: string) => join(work.path, n);
  const host = new HostSwtpm(work.path);
  let ekCa: string;
  let daemon: Daemon | undefined;

  const serve = async (bin?: string): Promise<Daemon> => {
    daemon = await startDaemon(state, ['--host-tpm', host.tcti, '--ek-ca', ekCa], { VTPMD_LOG_LEVEL: 'info' }, bin);
    return daemon;
  };
  const stop = async (): Promise<void> => {
    if (daemon) await stopDaemon(daemon);
    daemon = undefined;
  };
  const vm = async (name: string) => JSON.parse((await cli(state, ['vm', 'show', name])).stdout) as { endpoints: { swtpm: { data: string } } };
  const measuredLine = (d: Daemon) => JSON.parse(d.stderr().split('\n').find((l) => l.includes('GVTPM components measured'))!) as { measured: number; already: number };

  /** Loads the hardware VM's key from its files under a fresh primary, signs, and checks the signature with openssl against the key's public part. */
  const signsWithHardwareKey = async (message: string) => {
    const t = tcti(await vm('hw'));
    await tool(t, 'tpm2_createprimary', ['-C', 'o', '-G', 'ecc', '-c', files('hw-primary.ctx')]);
    await tool(t, 'tpm2_load', ['-C', files('hw-primary.ctx'), '-u', files('hw-key.pub'), '-r', files('hw-key.priv'), '-c', files('hw-key.ctx')]);
    await tool(t, 'tpm2_flushcontext', ['-t']);
    writeFileSync(files('message'), message);
    await tool(t, 'tpm2_sign', ['-c', files('hw-key.ctx'), '-g', 'sha256', '-f', 'plain', '-o', files('message.sig'), files('message')]);
    await tool(t, 'tpm2_flushcontext', ['-t']);
    const verified = await run('openssl', ['dgst', '-sha256', '-verify', files('hw-key.pem'), '-signature', files('message.sig'), files('message')]);
    assert.match(verified.stdout, /Verified OK/);
  };

  before(async () => {
    ekCa = await host.manufacture();
    await host.start();
  });
  after(async () => {
    await stop();
    await host.stop();
    work.remove();
  });

  test('vtpmd measures its components into the host TPM, and its VMs of both designs work on it', async () => {
    const d = await serve();
    assert.deepEqual(measuredLine(d), { ...measuredLine(d), measured: 3, already: 0 });
    const health = JSON.parse((await http(new URL(d.api).pathname, 'GET', '/health')).body);
    assert.deepEqual([health.status, health.hostTpm], ['ok', host.tcti]);
    assert.match(health.pssCounter, /^0x015000[0-9a-f]{2}$/);

    const hw = await cli(state, ['vm', 'create', 'hw', '--dm', 'hardware']);
    assert.equal(hw.code, 0, hw.stderr);
    const t = tcti(await vm('hw'));
    await tool(t, 'tpm2_createprimary', ['-C', 'o', '-G', 'ecc', '-c', files('hw-primary.ctx')]);
    await tool(t, 'tpm2_create', ['-C', files('hw-primary.ctx'), '-G', 'rsa2048', '-u', files('hw-key.pub'), '-r', files('hw-key.priv')]);
    await tool(t, 'tpm2_flushcontext', ['-t']);
    await tool(t, 'tpm2_loadexternal', ['-C', 'n', '-u', files('hw-key.pub'), '-c', files('hw-key-public.ctx')]);
    await tool(t, 'tpm2_readpublic', ['-c', files('hw-key-public.ctx'), '-f', 'pem', '-o', files('hw-key.pem')]);
    await tool(t, 'tpm2_flushcontext', ['-t']);
    await signsWithHardwareKey('signed in the host TPM');

    assert.equal((await cli(state, ['vm', 'create', 'sw'])).code, 0);
    await tool(tcti(await vm('sw')), 'tpm2_pcrextend', ['16:sha256=' + '5a'.repeat(32)]);

    // The vMA got its delegation through the host TPM's EK: the VM's EK credential verifies.
    const creds = await cli(state, ['vm', 'credentials', 'hw', '--out', files('creds')]);
    assert.equal(creds.code, 0, creds.stderr);
    const c = (n: string) => join(files('creds'), n);
    const verified = await run('openssl', ['verify', '-CAfile', c('vmca-root.pem'), '-untrusted', c('chain.pem'), c('ek.pem')]);
    assert.match(verified.stdout, /ek\.pem: OK/);
    // The platform credential describes this machine as its firmware reports it, not a simulated one.
    const platform = (await run('openssl', ['x509', '-in', c('platform.pem'), '-noout', '-text'])).stdout;
    const identity = await dmiPlatformIdentity();
    assert.ok(platform.includes(`=${identity.manufacturer}`), platform);
    assert.ok(platform.includes(`=${identity.model} with GVTPM on swtpm`), platform);
    await stop();

    const values = await host.pcrs(COMPONENT_PCRS);
    assert.ok(values.every((v) => v !== '00'.repeat(32)), 'every component PCR was extended');
    assert.deepEqual(values, await replayed(join(state, 'host', 'eventlog.bin'), COMPONENT_PCRS), 'the event log replays to the host TPM');
    // The PSS's counter, as /health named it, is among the host TPM's NV indices.
    const indices = [...(await tool(host.tcti, 'tpm2_getcap', ['handles-nv-index'])).matchAll(/^- (0x[0-9a-f]+)$/gim)].map((m) => Number(m[1]));
    assert.ok(indices.includes(Number(health.pssCounter)), `${health.pssCounter} among ${indices.map((i) => i.toString(16))}`);
  });

  test('a hardware-backed VM does everything a guest does with it through the host TPM: libtpms makes and uses its keys', async () => {
    await serve();
    await exerciseHardwareVm(state, work.path, 'hsm');
    await stop();
  });

  test('a daemon restart measures nothing again, and every VM is as it was', async () => {
    const before = await host.pcrs(COMPONENT_PCRS);
    const d = await serve();
    assert.deepEqual(measuredLine(d), { ...measuredLine(d), measured: 0, already: 3 });
    await signsWithHardwareKey('signed after a daemon restart');
    const pcr = parsePcrRead(await tool(tcti(await vm('sw')), 'tpm2_pcrread', ['sha256:16'])).get('sha256')!.get(16);
    assert.notEqual(pcr, '00'.repeat(32), 'the software vTPM kept its PCR 16');
    await stop();
    assert.deepEqual(await host.pcrs(COMPONENT_PCRS), before);
  });

  test('through a TPM character device (device:PATH) the same host TPM serves the same VMs', async () => {
    // A pseudo-terminal relaying to the swtpm stands in for /dev/tpmrm0: a real character device.
    const relay = spawn('python3', [join(import.meta.dirname, 'pty-tpm-device.py'), host.socket], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      const device = await new Promise<string>((ok, fail) => {
        relay.once('exit', (code) => fail(new Error(`the device relay exited (${code})`)));
        relay.stdout!.once('data', (d: Buffer) => ok(d.toString().trim()));
      });
      daemon = await startDaemon(state, ['--host-tpm', `device:${device}`, '--ek-ca', ekCa], { VTPMD_LOG_LEVEL: 'info' });
      assert.deepEqual(measuredLine(daemon), { ...measuredLine(daemon), tpm: `device:${device}`, measured: 0, already: 3 });
      await signsWithHardwareKey('signed through a TPM device');
      await stop();
    } finally {
      relay.kill();
    }
  });

  test('a reset of the host TPM (a reboot) has the components measured again, and the PSS and the hardware keys open', async () => {
    const before = await host.pcrs(COMPONENT_PCRS);
    await host.stop();
    await host.start();
    assert.deepEqual(await host.pcrs(COMPONENT_PCRS), COMPONENT_PCRS.map(() => '00'.repeat(32)), 'the reset cleared the PCRs');
    const d = await serve();
    assert.deepEqual(measuredLine(d), { ...measuredLine(d), measured: 3, already: 0 });
    await signsWithHardwareKey('signed after a reboot');
    await stop();
    assert.deepEqual(await host.pcrs(COMPONENT_PCRS), before, 'the same code measures to the same values');
  });

  test('a component PCR holding another measurement stops vtpmd, naming the PCR', async () => {
    await tool(host.tcti, 'tpm2_pcrextend', ['12:sha256=' + '66'.repeat(32)]);
    await assert.rejects(serve(), /PCR 12 of the host TPM already holds a measurement other than this code's/);
    daemon = undefined;
  });

  test('with EK roots the host TPM does not chain to, a first start makes no PSS and stops, naming why: no secret goes under an unproven SRK', async () => {
    // A reboot clears the foreign measurement; a fresh state directory trusts only a stranger.
    await host.stop();
    await host.start();
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=stranger', '-keyout', files('stranger.key'), '-out', files('stranger.pem'), '-days', '1']);
    const fresh = join(work.path, 'vtpmd-stranger');
    await assert.rejects(
      startDaemon(fresh, ['--host-tpm', host.tcti, '--ek-ca', files('stranger.pem')]),
      /no secret is sent under the chip's SRK: the chip's hwSRK is not proven to be the certified chip's: .*does not chain to a trusted manufacturer root/,
    );
    daemon = undefined;
  });

  test('bad --host-tpm and --ek-ca values stop vtpmd serve with a message naming them', async () => {
    await assert.rejects(startDaemon(state, ['--host-tpm', 'mssim:host=127.0.0.1']), /the mssim interface is not supported/);
    await assert.rejects(startDaemon(state, ['--host-tpm', 'swtpm:port=99999']), /port must be 1–65535/);
    await assert.rejects(startDaemon(state, ['--host-tpm', `swtpm:path=${files('nothing.sock')}`]), /cannot reach the host TPM at swtpm:path=/);
    await assert.rejects(startDaemon(state, ['--host-tpm', host.tcti, '--ek-ca', files('message')]), /--ek-ca .*message: no PEM certificate in it/);
    await assert.rejects(startDaemon(state, ['--ek-ca', ekCa]), /--ek-ca is for an attached host TPM/);
  });
  test("with the firmware's event log, a host whose firmware measured gets the vMA's delegation; without it, none", async () => {
    await host.stop();
    await host.start();
    // Firmware's part: events extended into the TPM by tpm2-tools, logged as firmware logs them.
    const firmware = new EventLogBuilder([ALG.SHA256]);
    const measured = [
      firmware.measure(0, EV.POST_CODE, Buffer.from('lab firmware 1.2.3')),
      firmware.measure(4, EV.EFI_ACTION, Buffer.from('Calling EFI Application from Boot Option')),
      firmware.measure(7, EV.SEPARATOR, Buffer.alloc(4)),
    ];
    for (const e of measured) await tool(host.tcti, 'tpm2_pcrextend', [`${e.pcrIndex}:sha256=${e.digests[0]!.digest.toString('hex')}`]);
    writeFileSync(files('firmware.log'), firmware.encode());

    const withLog = join(work.path, 'vtpmd-firmware-log');
    daemon = await startDaemon(withLog, ['--host-tpm', host.tcti, '--ek-ca', ekCa, '--host-event-log', files('firmware.log')]);
    assert.equal((await cli(withLog, ['vm', 'create', 'w'])).code, 0);
    const creds = await cli(withLog, ['vm', 'credentials', 'w', '--out', files('creds-w')]);
    assert.equal(creds.code, 0, creds.stderr);
    await stop();
    const pcrs = [0, 4, 7, ...COMPONENT_PCRS];
    assert.deepEqual(await host.pcrs(pcrs), await replayed(join(withLog, 'host', 'eventlog.bin'), pcrs), "firmware's events and vtpmd's replay to the host TPM");

    const withoutLog = join(work.path, 'vtpmd-no-firmware-log');
    daemon = await startDaemon(withoutLog, ['--host-tpm', host.tcti, '--ek-ca', ekCa]);
    assert.equal((await cli(withoutLog, ['vm', 'create', 'w'])).code, 0);
    const refused = await cli(withoutLog, ['vm', 'credentials', 'w', '--out', files('creds-w2')]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /no delegation from the VMCA/);
    await stop();

    const grabbing = new EventLogBuilder([ALG.SHA256]);
    grabbing.measure(12, EV.EFI_ACTION, Buffer.from('something else'));
    writeFileSync(files('grabbing.log'), grabbing.encode());
    await assert.rejects(startDaemon(withLog, ['--host-tpm', host.tcti, '--host-event-log', files('grabbing.log')]), /the firmware event log measures into PCR 12, which vtpmd's components use/);
    writeFileSync(files('garbage.log'), Buffer.from('not a log'));
    await assert.rejects(startDaemon(withLog, ['--host-tpm', host.tcti, '--host-event-log', files('garbage.log')]), /the firmware event log is unusable/);
    daemon = undefined;
  });
  test('a host TPM whose owner and endorsement authorizations are set serves vtpmd given them, and stops it without', async () => {
    await host.stop();
    await host.start();
    writeFileSync(files('owner.auth'), 'owner secret\n');
    writeFileSync(files('endorsement.auth'), 'endorsement secret\n');
    writeFileSync(files('wrong.auth'), 'wrong-secret-7');
    // A fresh owner makes its own SRK: vtpmd creates it again under the owner authorization.
    await tool(host.tcti, 'tpm2_evictcontrol', ['-C', 'o', '-c', '0x81000001']);
    await tool(host.tcti, 'tpm2_changeauth', ['-c', 'o', 'owner secret']);
    await tool(host.tcti, 'tpm2_changeauth', ['-c', 'e', 'endorsement secret']);
    try {
      const fresh = join(work.path, 'vtpmd-owned');
      const attach = (...extra: string[]) => startDaemon(fresh, ['--host-tpm', host.tcti, '--ek-ca', ekCa, ...extra], { VTPMD_LOG_LEVEL: 'debug' });
      const secretFree = (e: unknown) => !/owner secret|endorsement secret|wrong-secret-7/.test(String(e));
      await assert.rejects(attach(), (e) => /refused its owner authorization: it is not empty \(give it with --owner-auth-file\)/.test(String(e)) && secretFree(e));
      await assert.rejects(attach('--owner-auth-file', files('wrong.auth')), (e) => /the authorization in --owner-auth-file is not its own/.test(String(e)) && secretFree(e));
      await assert.rejects(attach('--owner-auth-file', files('owner.auth')), /refused its endorsement authorization: it is not empty \(give it with --endorsement-auth-file\)/);

      daemon = await attach('--owner-auth-file', files('owner.auth'), '--endorsement-auth-file', files('endorsement.auth'));
      const hw = await cli(fresh, ['vm', 'create', 'hw', '--dm', 'hardware']);
      assert.equal(hw.code, 0, hw.stderr);
      const t = tcti(JSON.parse(hw.stdout));
      await tool(t, 'tpm2_createprimary', ['-C', 'o', '-G', 'ecc', '-c', files('owned-primary.ctx')]);
      await tool(t, 'tpm2_create', ['-C', files('owned-primary.ctx'), '-G', 'ecc', '-u', files('owned.pub'), '-r', files('owned.priv'), '-c', files('owned.ctx')]);
      await tool(t, 'tpm2_flushcontext', ['-t']);
      await tool(t, 'tpm2_sign', ['-c', files('owned.ctx'), '-g', 'sha256', '-o', files('owned.sig'), files('message')]);
      await tool(t, 'tpm2_flushcontext', ['-t']);
      const creds = await cli(fresh, ['vm', 'credentials', 'hw', '--out', files('creds-owned')]);
      assert.equal(creds.code, 0, creds.stderr);
      await stop();
      assert.ok(secretFree(daemon?.stderr() ?? ''), 'no authorization reached the log');
    } finally {
      await stop();
      await tool(host.tcti, 'tpm2_changeauth', ['-c', 'o', '-p', 'owner secret']);
      await tool(host.tcti, 'tpm2_changeauth', ['-c', 'e', '-p', 'endorsement secret']);
    }
  });
  test('objects and sessions left loaded in the host TPM (it has no resource manager) are flushed when vtpmd attaches, so they take no slot', async () => {
    const raw = await rawClient(host.socket);
    try {
      // Every object and session slot of the TPM (three each in libtpms) taken by nobody's.
      for (let i = 0; i < 3; i++) await raw.tpm.createPrimary(RH.OWNER, eccSigningTemplate(false));
      for (let i = 0; i < 3; i++) await raw.tpm.startHmacSession();
      assert.deepEqual(await loaded(raw.tpm), { objects: 3, sessions: 3 });
    } finally {
      raw.close();
    }
    const fresh = join(work.path, 'vtpmd-leftovers');
    daemon = await startDaemon(fresh, ['--host-tpm', host.tcti, '--ek-ca', ekCa]);
    assert.match(daemon.stderr(), /"flushed":6,"msg":"the host TPM held transient objects or sessions that nobody holds any more/);
    const hw = await cli(fresh, ['vm', 'create', 'hw', '--dm', 'hardware']);
    assert.equal(hw.code, 0, hw.stderr);
    const t = tcti(JSON.parse(hw.stdout));
    await tool(t, 'tpm2_createprimary', ['-C', 'o', '-G', 'ecc', '-c', files('left-primary.ctx')]);
    await tool(t, 'tpm2_create', ['-C', files('left-primary.ctx'), '-G', 'ecc', '-u', files('left.pub'), '-r', files('left.priv'), '-c', files('left.ctx')]);
    await tool(t, 'tpm2_flushcontext', ['-t']);
    writeFileSync(files('left.msg'), 'signed in a host TPM whose slots were full');
    await tool(t, 'tpm2_sign', ['-c', files('left.ctx'), '-g', 'sha256', '-o', files('left.sig'), files('left.msg')]);
    await stop();
    const later = await rawClient(host.socket);
    try {
      assert.deepEqual(await loaded(later.tpm), { objects: 0, sessions: 0 }, 'vtpmd leaves nothing loaded either');
    } finally {
      later.close();
    }
  });

  test('when the host TPM comes back unchanged, the PSS recovers without a restart and the vTPMs save again', async () => {
    const relay = new Relay(files('relay.sock'), host.socket);
    await relay.listen();
    try {
      const fresh = join(work.path, 'vtpmd-recovering');
      const attach = () => startDaemon(fresh, ['--host-tpm', `swtpm:path=${relay.path}`, '--ek-ca', ekCa]);
      daemon = await attach();
      const api = join(fresh, 'vtpmd.sock');
      const health = async () => JSON.parse((await http(api, 'GET', '/health')).body) as { status: string; pss: string };
      const sw = await cli(fresh, ['vm', 'create', 'sw']);
      assert.equal(sw.code, 0, sw.stderr);
      const t = tcti(JSON.parse(sw.stdout));
      const pcr16 = async () => parsePcrRead(await tool(t, 'tpm2_pcrread', ['sha256:16'])).get('sha256')!.get(16)!;
      await tool(t, 'tpm2_pcrextend', ['16:sha256=' + '01'.repeat(32)]);

      await relay.cut();
      await assert.rejects(tool(t, 'tpm2_pcrextend', ['16:sha256=' + '02'.repeat(32)]), /0x00000101|0x101/);
      const failing = await health();
      assert.equal(failing.status, 'degraded');
      assert.equal((await cli(fresh, ['health'])).code, 1, '`vtpmd health` fails while the daemon is degraded');
      assert.match(failing.pss, /^a commit failed \(cannot reach the host TPM at swtpm:path=\S+relay\.sock: .+\); no vTPM saves until the PSS recovers, tried again within \d+ s/);
      await assert.rejects(tool(t, 'tpm2_pcrextend', ['16:sha256=' + '03'.repeat(32)]), /0x00000101|0x101/, 'no save while failing');
      // An attempt made while the TPM is still away says why it failed.
      await eventually('a failed attempt to recover', async () => /the last attempt: cannot reach the host TPM/.test((await health()).pss));

      await relay.listen();
      await eventually('the PSS recovered', async () => (await health()).status === 'ok');
      assert.equal((await health()).pss, 'ok');
      assert.equal((await cli(fresh, ['health'])).code, 0);
      assert.match((await http(api, 'GET', '/metrics')).body, /^vtpmd_pss_recoveries 1$/m);
      // The vTPM continues from what reached the disk: the first extend, and perhaps the one whose
      // commit was written before its counter increment failed.
      const acknowledged = createHash('sha256').update(Buffer.alloc(32)).update(Buffer.alloc(32, 0x01)).digest();
      const written = createHash('sha256').update(acknowledged).update(Buffer.alloc(32, 0x02)).digest();
      const recovered = await pcr16();
      assert.ok([acknowledged, written].map((d) => d.toString('hex')).includes(recovered), `PCR 16 is ${recovered}`);
      await tool(t, 'tpm2_pcrextend', ['16:sha256=' + '04'.repeat(32)]);
      const after = await pcr16();
      assert.equal(after, createHash('sha256').update(Buffer.from(recovered, 'hex')).update(Buffer.alloc(32, 0x04)).digest('hex'));
      await stop();

      daemon = await attach();
      assert.equal((await health()).status, 'ok');
      assert.equal(await pcr16(), after, 'what was saved after the recovery survives a restart');
      await stop();
    } finally {
      await relay.cut();
    }
  });

  test('when the host TPM goes away and comes back reset, a guest gets TPM_RC_FAILURE, /health says why, and a restart recovers', async () => {
    const fresh = join(work.path, 'vtpmd-lost-tpm');
    daemon = await startDaemon(fresh, ['--host-tpm', host.tcti, '--ek-ca', ekCa]);
    const sw = await cli(fresh, ['vm', 'create', 'sw']);
    assert.equal(sw.code, 0, sw.stderr);
    const t = tcti(JSON.parse(sw.stdout));
    await tool(t, 'tpm2_pcrextend', ['16:sha256=' + '01'.repeat(32)]);
    await host.crash();
    await assert.rejects(tool(t, 'tpm2_pcrextend', ['16:sha256=' + '02'.repeat(32)]), /0x00000101|0x101/);
    const health = JSON.parse((await http(join(fresh, 'vtpmd.sock'), 'GET', '/health')).body);
    assert.equal(health.status, 'degraded');
    assert.match(health.pss, /^a commit failed \(cannot reach the host TPM at swtpm:path=\S+: connect \w+ \S+\); no vTPM saves until the PSS recovers, tried again within \d+ s/);
    assert.match((await http(join(fresh, 'vtpmd.sock'), 'GET', '/metrics')).body, /^vtpmd_pss_failed 1$/m);
    // Back, but reset: the PCRs the storage key is sealed to are measured again only when vtpmd starts.
    await host.start();
    await eventually('an attempt to recover on the reset TPM', async () =>
      /the last attempt: the database cannot be trusted after the failed commit \(tcb-changed\)/.test(JSON.parse((await http(join(fresh, 'vtpmd.sock'), 'GET', '/health')).body).pss),
    );
    await stop();

    // Restarted, vtpmd has the acknowledged extend (and perhaps the one whose response was a
    // failure: its commit was written before the TPM went away).
    daemon = await startDaemon(fresh, ['--host-tpm', host.tcti, '--ek-ca', ekCa]);
    assert.equal(JSON.parse((await http(join(fresh, 'vtpmd.sock'), 'GET', '/health')).body).status, 'ok');
    const acknowledged = createHash('sha256').update(Buffer.alloc(32)).update(Buffer.alloc(32, 0x01)).digest();
    const failed = createHash('sha256').update(acknowledged).update(Buffer.alloc(32, 0x02)).digest();
    const pcr = parsePcrRead(await tool(t, 'tpm2_pcrread', ['sha256:16'])).get('sha256')!.get(16);
    assert.ok([acknowledged.toString('hex'), failed.toString('hex')].includes(pcr!), `PCR 16 is ${pcr}`);
    await stop();
  });

  test('an upgrade staged by the running vtpmd opens the VMs under the new code after the reboot; a downgrade is refused', async () => {
    // The new vtpmd: this installation copied, with its PSS and manager changed.
    const v2 = files('vtpmd-v2');
    const v2Bin = installChangedCopy(v2, ['src/pss', 'src/vtpm']);

    const d = await serve();
    const health = async (api: Daemon) => JSON.parse((await http(new URL(api.api).pathname, 'GET', '/health')).body);
    assert.equal((await health(d)).status, 'ok');
    const pcr16 = async () => parsePcrRead(await tool(tcti(await vm('sw')), 'tpm2_pcrread', ['sha256:16'])).get('sha256')!.get(16);
    const swPcr = await pcr16();
    const staged = await cli(state, ['upgrade', 'stage', v2]);
    assert.equal(staged.code, 0, staged.stderr);
    const plan = JSON.parse(staged.stdout) as { pcrs: Record<string, string>; keyBindingKey: string; stagedAt: string; models: unknown[]; configuration: Record<string, string> };
    assert.deepEqual(Object.keys(plan.pcrs), ['11', '12']);
    assert.equal(plan.keyBindingKey, 'staged');
    assert.equal(plan.models.length, 2, 'the device models of both TPM versions run src/vtpm');
    assert.deepEqual(Object.keys(plan.configuration).map(Number), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13]);
    assert.equal(plan.configuration['12'], plan.pcrs['12']);
    assert.equal((await health(d)).upgradeStagedAt, plan.stagedAt);
    await stop();

    // The reboot into the new code: the host TPM is reset, and the new vtpmd measures itself.
    await host.stop();
    await host.start();
    const upgraded = await serve(v2Bin);
    assert.deepEqual(measuredLine(upgraded), { ...measuredLine(upgraded), measured: 3, already: 0 });
    const after = await health(upgraded);
    assert.deepEqual([after.status, after.upgradeStagedAt], ['ok', undefined]);
    assert.equal(await pcr16(), swPcr, 'the software vTPM kept its PCR 16');
    await signsWithHardwareKey('signed by the upgraded vtpmd');
    // Staging had the VMCA approve the new configuration: the new vMA is delegated and certifies a new VM.
    assert.equal((await cli(state, ['vm', 'create', 'after-upgrade'])).code, 0);
    const creds = await cli(state, ['vm', 'credentials', 'after-upgrade', '--out', files('creds-v2')]);
    assert.equal(creds.code, 0, creds.stderr);
    const c = (n: string) => join(files('creds-v2'), n);
    assert.match((await run('openssl', ['verify', '-CAfile', c('vmca-root.pem'), '-untrusted', c('chain.pem'), c('ek.pem')])).stdout, /ek\.pem: OK/);
    await stop();
    assert.deepEqual(await host.pcrs([11, 12]), [plan.pcrs['11'], plan.pcrs['12']], 'the PCRs hold what staging predicted');

    await host.stop();
    await host.start();
    const old = await serve();
    const refused = await health(old);
    assert.deepEqual([refused.status, refused.pss], ['degraded', 'refusing every vTPM (tcb-changed)'], 'going back needs staging from the new code');
    await stop();
  });
  test('a firmware update staged with the event log of its boot opens the VMs after the reboot into it; an unstaged one is refused', async () => {
    const chain = join(work.path, 'vtpmd-boot-chain');
    /** A reboot into `firmware`: its events extended into the host TPM, logged as firmware logs them. */
    const bootInto = async (firmware: string): Promise<string> => {
      await host.stop();
      await host.start();
      const log = new EventLogBuilder([ALG.SHA256]);
      for (const e of [
        log.measure(0, EV.POST_CODE, Buffer.from(firmware)),
        log.measure(4, EV.EFI_ACTION, Buffer.from('Calling EFI Application from Boot Option')),
        log.measure(7, EV.SEPARATOR, Buffer.alloc(4)),
      ]) {
        await tool(host.tcti, 'tpm2_pcrextend', [`${e.pcrIndex}:sha256=${e.digests[0]!.digest.toString('hex')}`]);
      }
      const file = files(`${firmware.replace(/\W+/g, '-')}.log`);
      writeFileSync(file, log.encode());
      return file;
    };
    const start = (log: string) => startDaemon(chain, ['--host-tpm', host.tcti, '--ek-ca', ekCa, '--host-event-log', log]);
    const pcr16 = async () => parsePcrRead(await tool(tcti((JSON.parse((await cli(chain, ['vm', 'show', 'fw'])).stdout) as { endpoints: { swtpm: { data: string } } })), 'tpm2_pcrread', ['sha256:16'])).get('sha256')!.get(16);

    daemon = await start(await bootInto('lab firmware 1.0'));
    assert.equal((await cli(chain, ['vm', 'create', 'fw'])).code, 0);
    const t = tcti((JSON.parse((await cli(chain, ['vm', 'show', 'fw'])).stdout) as { endpoints: { swtpm: { data: string } } }));
    await tool(t, 'tpm2_pcrextend', [`16:sha256=${'ab'.repeat(32)}`]);
    const before = await pcr16();

    // The new firmware's log, as a boot of it on a test host left it: only PCR 0 differs.
    const updated = new EventLogBuilder([ALG.SHA256]);
    updated.measure(0, EV.POST_CODE, Buffer.from('lab firmware 2.0'));
    updated.measure(4, EV.EFI_ACTION, Buffer.from('Calling EFI Application from Boot Option'));
    updated.measure(7, EV.SEPARATOR, Buffer.alloc(4));
    writeFileSync(files('firmware-2.0-test-boot.log'), updated.encode());
    const staged = await cli(chain, ['upgrade', 'stage', '--boot-log', files('firmware-2.0-test-boot.log')]);
    assert.equal(staged.code, 0, staged.stderr);
    const plan = JSON.parse(staged.stdout) as { pcrs: Record<string, string> };
    assert.deepEqual(Object.keys(plan.pcrs), ['0'], 'the firmware changes PCR 0 alone');
    await stop();

    daemon = await start(await bootInto('lab firmware 2.0'));
    const health = JSON.parse((await http(new URL(daemon.api).pathname, 'GET', '/health')).body);
    assert.deepEqual([health.status, health.upgradeStagedAt], ['ok', undefined]);
    assert.equal(await pcr16(), before, 'the vTPM kept its PCR 16 across the firmware update');
    const creds = await cli(chain, ['vm', 'credentials', 'fw', '--out', files('creds-fw')]);
    assert.equal(creds.code, 0, `the VMCA approved the new firmware's configuration at staging: ${creds.stderr}`);
    await stop();
    // Read once vtpmd let go of the TPM's one connection.
    assert.deepEqual(await host.pcrs([0]), [plan.pcrs['0']], 'PCR 0 holds what staging read from the log');

    daemon = await start(await bootInto('lab firmware 3.0, never staged'));
    const refused = JSON.parse((await http(new URL(daemon.api).pathname, 'GET', '/health')).body);
    assert.deepEqual([refused.status, refused.pss], ['degraded', 'refusing every vTPM (tcb-changed)']);
    await stop();
  });
});
