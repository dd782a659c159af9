/**
 * `vtpmd serve` and its CLI as the interop tests drive them: the daemon in a child process, the
 * CLI's commands, the control API over its Unix socket, and a VM's swtpm endpoint as a TCTI.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { request } from 'node:http';
import { cpSync, symlinkSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';

const run = promisify(execFile);
const CHECKOUT = resolve(import.meta.dirname, '..', '..');
export const BIN = join(CHECKOUT, 'bin', 'vtpmd.js');

/**
 * Another installation of vtpmd in `dir`: this one copied (its dependencies linked), with a file
 * added to each folder of `changed`, as a newer release would change them. Returns its bin/vtpmd.js.
 */
export function installChangedCopy(dir: string, changed: readonly string[]): string {
  for (const part of ['bin', 'src', 'package.json', 'tsconfig.json']) cpSync(join(CHECKOUT, part), join(dir, part), { recursive: true });
  symlinkSync(join(CHECKOUT, 'node_modules'), join(dir, 'node_modules'));
  for (const folder of changed) writeFileSync(join(dir, folder, 'CHANGES'), 'a newer release\n');
  return join(dir, 'bin', 'vtpmd.js');
}

export interface Daemon {
  child: ChildProcess;
  api: string;
  /** What the daemon wrote to stderr so far (its log). */
  stderr(): string;
}

/** `bin`: another installation's bin/vtpmd.js, to run its code. */
export async function startDaemon(stateDir: string, extra: string[] = [], env: Record<string, string> = {}, bin = BIN): Promise<Daemon> {
  const child = spawn(process.execPath, [bin, '--state', stateDir, 'serve', ...extra], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, VTPMD_LOG_LEVEL: 'warn', ...env } });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const api = await new Promise<string>((ok, fail) => {
    child.once('exit', (code) => fail(new Error(`vtpmd serve exited (${code}): ${stderr}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const e = JSON.parse(line) as { event: string; api?: string };
      if (e.event === 'listening') ok(e.api!);
    });
  });
  return { child, api, stderr: () => stderr };
}

export async function stopDaemon(d: Daemon): Promise<void> {
  if (d.child.exitCode !== null) return;
  const exited = new Promise((ok) => d.child.once('exit', ok));
  d.child.kill('SIGTERM');
  await exited;
}

export async function cli(stateDir: string, args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, '--state', stateDir, ...args], { env: { ...process.env, VTPMD_LOG_LEVEL: 'warn', ...env } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
}

export function http(socketPath: string, method: string, path: string, body?: string): Promise<{ status: number; body: string }> {
  return new Promise((ok, fail) => {
    const req = request({ socketPath, method, path, headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => ok({ status: res.statusCode!, body: text }));
    });
    req.on('error', fail);
    req.end(body);
  });
}

export const tcti = (vm: { endpoints: { swtpm: { data: string } } }) => {
  const u = new URL(vm.endpoints.swtpm.data);
  return `swtpm:host=${u.hostname},port=${u.port}`;
};

