/**
 * tpm2-abrmd, a real TPM resource manager, in front of a vtpmd server: a private D-Bus session
 * bus, a tpm2-abrmd reaching vtpmd over the swtpm TCTI, tpm2-tools run through the tabrmd TCTI,
 * and a raw client (libtss2-tctildr driven from python3 through ctypes) that keeps one abrmd
 * connection open across many commands, so that it can hold more objects and sessions than the
 * TPM has slots.
 *
 * Every process runs in its own process group and is stopped by group; a process-exit hook kills
 * whatever a crashed test left behind. Failures carry tpm2-abrmd's and dbus-daemon's output.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { VtpmdServer, hasCommand, hasSharedLibrary, skipUnlessRequired, tempDir } from './harness.ts';

/** tpm2-abrmd lives in /usr/sbin, which an ordinary user's PATH may lack. */
function abrmdBinary(): string | undefined {
  if (hasCommand('tpm2-abrmd')) return 'tpm2-abrmd';
  return ['/usr/sbin/tpm2-abrmd', '/usr/local/sbin/tpm2-abrmd'].find((p) => existsSync(p));
}

/** Why the tpm2-abrmd interop tests cannot run here, or undefined; throws under VTPMD_REQUIRE_INTEROP=1. */
export function abrmdUnavailable(): string | undefined {
  const missing: string[] = [];
  if (!hasCommand('tpm2_startup')) missing.push('tpm2-tools');
  if (abrmdBinary() === undefined) missing.push('tpm2-abrmd');
  if (!hasCommand('dbus-daemon') || !hasCommand('dbus-send')) missing.push('dbus');
  if (!hasSharedLibrary('libtss2-tcti-tabrmd.so.0')) missing.push('libtss2-tcti-tabrmd0');
  if (!hasSharedLibrary('libtss2-tcti-swtpm.so.0')) missing.push('libtss2-tcti-swtpm0');
  if (!hasSharedLibrary('libtss2-tctildr.so.0')) missing.push('libtss2-tctildr0');
  if (!hasCommand('python3')) missing.push('python3');
  if (missing.length === 0) return undefined;
  return skipUnlessRequired(`tpm2-abrmd interop tests need ${missing.join(', ')} (apt-get install ${missing.join(' ')})`);
}

// ---------------------------------------------------------------------------------------------
// Process groups

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) killGroup(child, 'SIGKILL');
});
// Interrupted (Ctrl-C, or the test runner's SIGTERM): kill the groups, then die of the signal.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of live) killGroup(child, 'SIGKILL');
    process.kill(process.pid, signal);
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // ESRCH: the group is gone already.
  }
}

/** Spawns `cmd` as the leader of a new process group, with stdout and stderr collected into `log`. */
function spawnGroup(cmd: string, args: string[], env: NodeJS.ProcessEnv, log: { text: string }): ChildProcess {
  const child = spawn(cmd, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'], env });
  live.add(child);
  child.once('exit', () => live.delete(child));
  child.stderr!.on('data', (d) => (log.text += d));
  return child;
}

/** SIGTERM to the whole group, SIGKILL after `graceMs`; resolves once the leader has exited. */
async function stopGroup(child: ChildProcess, graceMs = 3000): Promise<void> {
  const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise<void>((ok) => child.once('exit', () => ok()));
  killGroup(child, 'SIGTERM');
  const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
  // Anything the leader left in its group goes too.
  killGroup(child, 'SIGKILL');
  live.delete(child);
}

function tail(text: string, max = 8000): string {
  return text.length <= max ? text : `…${text.slice(-max)}`;
}

// ---------------------------------------------------------------------------------------------
// A private D-Bus session bus

const BUS_CONFIG = (dir: string) => `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:dir=${dir}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`;

/** A dbus-daemon serving a session bus on a socket in `dir`, with no service activation. */
export class DbusSession {
  private constructor(
    private readonly child: ChildProcess,
    readonly address: string,
    private readonly log: { text: string },
  ) {}

  static async start(dir: string): Promise<DbusSession> {
    const config = join(dir, 'session.conf');
    writeFileSync(config, BUS_CONFIG(dir));
    const log = { text: '' };
    const child = spawnGroup('dbus-daemon', ['--config-file', config, '--print-address=1', '--nofork'], process.env, log);
    const address = await new Promise<string>((ok, fail) => {
      const onExit = (code: number | null) => fail(new Error(`dbus-daemon exited (${code}) before printing its address:\n${log.text}`));
      child.once('exit', onExit);
      const timer = setTimeout(() => fail(new Error(`dbus-daemon printed no address within 10 s:\n${log.text}`)), 10_000);
      createInterface({ input: child.stdout! }).once('line', (line) => {
        child.off('exit', onExit);
        clearTimeout(timer);
        ok(line.trim());
      });
    }).catch(async (e: unknown) => {
      await stopGroup(child);
      throw e;
    });
    return new DbusSession(child, address, log);
  }

  get stderr(): string {
    return this.log.text;
  }

  async stop(): Promise<void> {
    await stopGroup(this.child);
  }
}

// ---------------------------------------------------------------------------------------------
// tpm2-abrmd

const BUS_NAME = 'com.intel.tss2.Tabrmd';

/** A tpm2-abrmd on a session bus, in front of the TPM at `tpmTcti` (e.g. swtpm:host=…,port=…). */
export class Abrmd {
  /** The TCTI configuration a client uses to reach this daemon. */
  readonly tcti = `tabrmd:bus_name=${BUS_NAME},bus_type=session`;

  private constructor(
    private readonly child: ChildProcess,
    private readonly bus: DbusSession,
    private readonly log: { text: string },
  ) {}

  static async start(bus: DbusSession, tpmTcti: string): Promise<Abrmd> {
    const log = { text: '' };
    const args = ['--session', `--dbus-name=${BUS_NAME}`, `--tcti=${tpmTcti}`, '--flush-all', '--logger=stdout'];
    if (process.getuid?.() === 0) args.push('--allow-root');
    // With TSS2_LOG=tcti+debug in the environment, tpm2-abrmd's swtpm TCTI logs every command and
    // response it exchanges with vtpmd into its output, which failure messages include.
    const env = { ...process.env, DBUS_SESSION_BUS_ADDRESS: bus.address };
    const child = spawnGroup(abrmdBinary() ?? 'tpm2-abrmd', args, env, log);
    child.stdout!.on('data', (d) => (log.text += d));
    const abrmd = new Abrmd(child, bus, log);
    try {
      await abrmd.waitForName(child);
    } catch (e) {
      await stopGroup(child);
      throw e;
    }
    return abrmd;
  }

  /** Polls the bus until the daemon owns its name (it is then ready for connections). */
  private async waitForName(child: ChildProcess): Promise<void> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null || child.signalCode !== null) {
        throw new Error(`tpm2-abrmd exited (${child.exitCode ?? child.signalCode}) before owning ${BUS_NAME}\n${this.diagnostics()}`);
      }
      const owned = await new Promise<boolean>((ok) =>
        execFile(
          'dbus-send',
          ['--session', '--print-reply', '--dest=org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus.NameHasOwner', `string:${BUS_NAME}`],
          { env: this.env, encoding: 'utf8', timeout: 5000 },
          (err, stdout) => ok(!err && /boolean true/.test(stdout)),
        ),
      );
      if (owned) return;
      if (Date.now() > deadline) throw new Error(`tpm2-abrmd did not own ${BUS_NAME} within 15 s\n${this.diagnostics()}`);
      await new Promise((ok) => setTimeout(ok, 50));
    }
  }

  /**
   * The environment for a client of this daemon. The TSS is quiet unless TSS2_LOG is set (e.g.
   * TSS2_LOG=esys+debug): then its log is in the tools' stderr, and so in failure messages.
   */
  get env(): NodeJS.ProcessEnv {
    return { ...process.env, DBUS_SESSION_BUS_ADDRESS: this.bus.address, TPM2TOOLS_TCTI: this.tcti, TSS2_LOG: process.env.TSS2_LOG ?? 'all+NONE' };
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** tpm2-abrmd's and dbus-daemon's output, for failure messages. */
  diagnostics(): string {
    const state = this.alive ? 'running' : `exited (${this.child.exitCode ?? this.child.signalCode})`;
    return `--- tpm2-abrmd (${state}) output ---\n${tail(this.log.text) || '(none)'}\n--- dbus-daemon stderr ---\n${tail(this.bus.stderr) || '(none)'}`;
  }

  /**
   * Runs a tpm2-tools command through this daemon. Rejects with the tool's stderr and the daemons'
   * output on failure.
   */
  tool(cmd: string, args: string[], opts: { input?: Buffer; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
    return new Promise((ok, fail) => {
      const child = execFile(cmd, args, { env: { ...this.env, ...opts.env }, encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
        if (!err) return ok(stdout);
        fail(new Error(`${cmd} ${args.join(' ')} failed (${err.code ?? err.signal}):\n${stderr || err.message}\n${this.diagnostics()}`));
      });
      child.stdin!.end(opts.input);
    });
  }

  /** Opens one long-lived connection to the daemon for raw TPM commands. */
  async connect(): Promise<RawConnection> {
    return RawConnection.open(this);
  }

  /** Stops the daemon (SIGTERM to its group, SIGKILL if it lingers). */
  async stop(): Promise<void> {
    await stopGroup(this.child);
  }
}

// ---------------------------------------------------------------------------------------------
// One connection for raw commands

/**
 * Reads TPM command frames from stdin, sends each through the TCTI named by argv[1] with
 * libtss2-tctildr, and writes each response frame to stdout. The TCTI context keeps one connection
 * to tpm2-abrmd for the life of the process.
 */
const BRIDGE = String.raw`
import ctypes, os, sys
ldr = ctypes.CDLL("libtss2-tctildr.so.0")
ctx = ctypes.c_void_p()
rc = ldr.Tss2_TctiLdr_Initialize(ctypes.c_char_p(sys.argv[1].encode()), ctypes.byref(ctx))
if rc != 0:
    sys.stderr.write("Tss2_TctiLdr_Initialize(%s) failed: 0x%x\n" % (sys.argv[1], rc))
    sys.exit(2)
class Common(ctypes.Structure):
    _fields_ = [("magic", ctypes.c_uint64), ("version", ctypes.c_uint32),
                ("transmit", ctypes.c_void_p), ("receive", ctypes.c_void_p)]
common = Common.from_address(ctx.value)
transmit = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p)(common.transmit)
receive = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_char_p, ctypes.c_int32)(common.receive)
def read_exact(n):
    out = b""
    while len(out) < n:
        chunk = os.read(0, n - len(out))
        if not chunk:
            return None
        out += chunk
    return out
buf = ctypes.create_string_buffer(65536)
while True:
    head = read_exact(10)
    if head is None:
        break
    size = int.from_bytes(head[2:6], "big")
    cmd = head + (read_exact(size - 10) or b"") if size > 10 else head
    rc = transmit(ctx, len(cmd), cmd)
    if rc != 0:
        sys.stderr.write("Tss2_Tcti_Transmit failed: 0x%x\n" % rc)
        sys.exit(3)
    n = ctypes.c_size_t(len(buf))
    rc = receive(ctx, ctypes.byref(n), buf, -1)
    if rc != 0:
        sys.stderr.write("Tss2_Tcti_Receive failed: 0x%x\n" % rc)
        sys.exit(3)
    os.write(1, buf.raw[:n.value])
ldr.Tss2_TctiLdr_Finalize(ctypes.byref(ctx))
`;

/** One tabrmd connection held open: commands go in order, one at a time. */
export class RawConnection {
  private pending: { resolve: (b: Buffer) => void; reject: (e: Error) => void }[] = [];
  private buffered = Buffer.alloc(0);
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly child: ChildProcess,
    private readonly abrmd: Abrmd,
    private readonly log: { text: string },
  ) {}

  static async open(abrmd: Abrmd): Promise<RawConnection> {
    const log = { text: '' };
    const env = { ...abrmd.env, PYTHONDONTWRITEBYTECODE: '1' };
    const child = spawn('python3', ['-c', BRIDGE, abrmd.tcti], { detached: true, stdio: ['pipe', 'pipe', 'pipe'], env });
    live.add(child);
    const conn = new RawConnection(child, abrmd, log);
    child.stderr!.on('data', (d) => (log.text += d));
    child.stdout!.on('data', (d: Buffer) => conn.onData(d));
    child.once('exit', (code, signal) => {
      live.delete(child);
      const err = new Error(`the tabrmd connection closed (${code ?? signal}): ${log.text}\n${abrmd.diagnostics()}`);
      for (const p of conn.pending.splice(0)) p.reject(err);
    });
    child.stdin!.on('error', () => {});
    return conn;
  }

  private onData(d: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, d]);
    while (this.buffered.length >= 10) {
      const size = this.buffered.readUInt32BE(2);
      if (this.buffered.length < size) return;
      const frame = Buffer.from(this.buffered.subarray(0, size));
      this.buffered = this.buffered.subarray(size);
      this.pending.shift()?.resolve(frame);
    }
  }

  /** Sends one command and resolves with its raw response. */
  send(command: Buffer): Promise<Buffer> {
    const next = this.chain.then(
      () =>
        new Promise<Buffer>((resolve, reject) => {
          if (this.child.exitCode !== null || this.child.signalCode !== null) {
            return reject(new Error(`the tabrmd connection is closed: ${this.log.text}\n${this.abrmd.diagnostics()}`));
          }
          this.pending.push({ resolve, reject });
          this.child.stdin!.write(command);
        }),
    );
    this.chain = next.catch(() => {});
    return next;
  }

  /** Closes the connection (tpm2-abrmd then flushes everything it held for it). */
  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((ok) => this.child.once('exit', () => ok()));
    this.child.stdin!.end();
    const timer = setTimeout(() => killGroup(this.child, 'SIGKILL'), 3000);
    await exited;
    clearTimeout(timer);
    live.delete(this.child);
  }
}

// ---------------------------------------------------------------------------------------------
// The whole stack for one test file

/**
 * Asserts that `run` rejects with the response code tpm2-tools prints for the failed ESAPI call,
 * e.g. `Esys_Unseal(0x9A2)`: a failure for any other reason (a different code, a different
 * command of the same tool, a crashed daemon) does not pass. Returns the error message.
 */
export async function rejectsWithRc(run: Promise<unknown>, call: string, rc: number): Promise<string> {
  const printed = `${call}(0x${rc.toString(16).toUpperCase()})`;
  let message = '';
  await assert.rejects(run, (e: Error) => {
    message = e.message;
    assert.ok(message.includes(printed), `expected ${printed} in:\n${message}`);
    return true;
  });
  return message;
}

/**
 * A vtpmd serving the swtpm protocol, a private session bus and a tpm2-abrmd in front of the
 * vtpmd, with a scratch directory for the tools' files. vtpmd is not started up: TPM2_Startup
 * goes through tpm2-abrmd like every other command.
 */
export class AbrmdStack {
  private constructor(
    readonly server: VtpmdServer,
    readonly bus: DbusSession,
    readonly abrmd: Abrmd,
    private readonly files: string,
    private readonly dirs: { remove(): void }[],
  ) {}

  static async start(prefix: string): Promise<AbrmdStack> {
    const state = tempDir(`${prefix}-state-`);
    const files = tempDir(`${prefix}-files-`);
    const busDir = tempDir(`${prefix}-bus-`);
    const dirs = [state, files, busDir];
    let server: VtpmdServer | undefined;
    let bus: DbusSession | undefined;
    try {
      server = await VtpmdServer.start('swtpm', state.path);
      bus = await DbusSession.start(busDir.path);
      const abrmd = await Abrmd.start(bus, server.tcti);
      return new AbrmdStack(server, bus, abrmd, files.path, dirs);
    } catch (e) {
      await bus?.stop();
      await server?.stop();
      for (const d of dirs) d.remove();
      throw e;
    }
  }

  /** A path in the scratch directory. */
  file(name: string): string {
    return join(this.files, name);
  }

  /** Runs a tpm2-tools command through tpm2-abrmd; resolves with its stdout. */
  tool(cmd: string, ...args: string[]): Promise<string> {
    return this.abrmd.tool(cmd, args);
  }

  /** Asserts that a tpm2-tools command fails with `call(rc)`, e.g. ('Esys_Unseal', 0x9a2). */
  fails(call: string, rc: number, cmd: string, ...args: string[]): Promise<string> {
    return rejectsWithRc(this.tool(cmd, ...args), call, rc);
  }

  /** Clients first, then the daemon, the bus, and the TPM it was talking to. */
  async stop(): Promise<void> {
    await this.abrmd.stop();
    await this.bus.stop();
    await this.server.stop();
    for (const d of this.dirs) d.remove();
  }
}
