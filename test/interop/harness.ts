import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '..', '..');
const BIN = join(ROOT, 'bin', 'vtpmd.js');

export type Tcti = 'swtpm' | 'mssim';

/** Whether `cmd` is on the PATH. */
export function hasCommand(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Whether the dynamic linker knows a shared library (a soname such as `libtss2-tcti-tabrmd.so.0`). */
export function hasSharedLibrary(soname: string): boolean {
  // ldconfig lives in /sbin, which a non-root PATH may lack.
  for (const ldconfig of ['ldconfig', '/sbin/ldconfig', '/usr/sbin/ldconfig']) {
    try {
      return execFileSync(ldconfig, ['-p'], { encoding: 'utf8' }).includes(soname);
    } catch {
      // try the next location
    }
  }
  return false;
}

function hasTctiLibrary(name: Tcti): boolean {
  return hasSharedLibrary(`libtss2-tcti-${name}.so.0`);
}

/**
 * Returns `why` after announcing loudly that tests are skipped for it; with
 * VTPMD_REQUIRE_INTEROP=1 throws instead: CI must never pass by skipping.
 */
export function skipUnlessRequired(why: string): string {
  if (process.env.VTPMD_REQUIRE_INTEROP === '1') throw new Error(`${why}; VTPMD_REQUIRE_INTEROP=1 forbids skipping`);
  process.stderr.write(`\n*** SKIPPING: ${why} ***\n\n`);
  return why;
}

/**
 * Why interop tests cannot run here, or undefined if they can. With VTPMD_REQUIRE_INTEROP=1 a
 * missing tool is a failure, not a skip: CI must never pass by skipping.
 */
export function interopUnavailable(tcti: Tcti): string | undefined {
  const missing: string[] = [];
  if (!hasCommand('tpm2_startup')) missing.push('tpm2-tools');
  if (!hasTctiLibrary(tcti)) missing.push(`libtss2-tcti-${tcti}0`);
  if (missing.length === 0) return undefined;
  return skipUnlessRequired(`interop tests over the ${tcti} TCTI need ${missing.join(' and ')} (apt-get install ${missing.join(' ')})`);
}

/** A vtpmd server process serving one TPM over the swtpm or mssim protocol. */
export class VtpmdServer {
  private constructor(
    private readonly child: ChildProcess,
    readonly tcti: string,
    readonly ctrl: string | undefined,
  ) {}

  static async start(kind: Tcti, stateDir: string, extraArgs: readonly string[] = []): Promise<VtpmdServer> {
    const args =
      kind === 'swtpm'
        ? ['socket', '--tpm2', '--server', 'type=tcp,port=0', '--ctrl', 'type=tcp,port=0', '--tpmstate', `dir=${stateDir}`, '--flags', 'not-need-init']
        : ['mssim', '--port', '0', '--tpmstate', `dir=${stateDir}`];
    args.push(...extraArgs);
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VTPMD_LOG_LEVEL: 'warn' } });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    const lines = createInterface({ input: child.stdout! });
    const event = await new Promise<Record<string, unknown>>((ok, fail) => {
      const onExit = (code: number | null) => fail(new Error(`vtpmd exited (${code}) before listening: ${stderr}`));
      child.once('exit', onExit);
      lines.on('line', (line) => {
        const e = JSON.parse(line) as Record<string, unknown>;
        if (e.event === 'listening') {
          child.off('exit', onExit);
          ok(e);
        }
      });
    });
    if (kind === 'swtpm') {
      const data = new URL(String(event.data));
      const ctrl = new URL(String(event.ctrl));
      return new VtpmdServer(child, `swtpm:host=${data.hostname},port=${data.port}`, `${ctrl.hostname}:${ctrl.port}`);
    }
    const cmd = new URL(String(event.command));
    return new VtpmdServer(child, `mssim:host=${cmd.hostname},port=${cmd.port}`, undefined);
  }

  /** Stops the server as a service manager would (SIGTERM) and waits for it to exit. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((ok) => this.child.once('exit', ok));
    this.child.kill('SIGTERM');
    await exited;
  }

  /** Runs a tpm2-tools command against this server; rejects with its stderr on failure. */
  async tool(cmd: string, args: string[], input?: Buffer): Promise<string> {
    return tool(this.tcti, cmd, args, input);
  }
}

export async function tool(tcti: string, cmd: string, args: string[], input?: Buffer): Promise<string> {
  const env = { ...process.env, TPM2TOOLS_TCTI: tcti, TSS2_LOG: 'all+NONE' };
  if (input === undefined) {
    const { stdout } = await run(cmd, args, { env, encoding: 'utf8', timeout: 30_000 });
    return stdout;
  }
  return new Promise((ok, fail) => {
    const child = execFile(cmd, args, { env, encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) =>
      err ? fail(new Error(`${cmd} failed: ${stderr || err.message}`)) : ok(stdout),
    );
    child.stdin!.end(input);
  });
}

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => existsSync(path) && rmSync(path, { recursive: true, force: true }) };
}

/** Parses tpm2_pcrread's YAML ("  sha256:\n    16: 0xABC…") into bank → pcr → hex. */
export function parsePcrRead(out: string): Map<string, Map<number, string>> {
  const banks = new Map<string, Map<number, string>>();
  let bank: Map<number, string> | undefined;
  for (const line of out.split('\n')) {
    const b = /^\s*(sha1|sha256|sha384|sha512):\s*$/.exec(line);
    if (b) {
      bank = new Map();
      banks.set(b[1]!, bank);
      continue;
    }
    const v = /^\s*(\d+)\s*:\s*0x([0-9A-Fa-f]+)\s*$/.exec(line);
    if (v && bank) bank.set(Number(v[1]), v[2]!.toLowerCase());
  }
  return banks;
}

/** `name: value` pairs of tpm2_getcap properties-variable (TPMA bits and TPM2_PT_ values). */
export function parseVariables(out: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of out.split('\n')) {
    const r = /^\s*(\w+):\s+(\S+)\s*$/.exec(line);
    if (r) m.set(r[1]!, r[2]!);
  }
  return m;
}
