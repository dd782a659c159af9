/**
 * `vtpmd serve` in a child process, as a lab host runs it: the chip, the PSS and one VM per vTPM,
 * each VM with its own swtpm-protocol endpoint, created and started through the control API.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { callApi } from '../../src/cli/api-client.ts';
import { stopChild, trackChild } from './cleanup.ts';
import { REPO_ROOT, exitText, tail, withLog } from './peers.ts';

export type Durability = 'per-command' | 'batched';

export interface Endpoint {
  host: string;
  port: number;
}

export interface ServeDaemon {
  readonly pid: number;
  readonly api: string;
  readonly version: string;
  readonly argv: readonly string[];
  /** One data endpoint per VM, in creation order. */
  readonly endpoints: readonly Endpoint[];
  /** Creates a VM and returns its data endpoint. */
  createVm(name: string): Promise<Endpoint>;
  stopVm(name: string): Promise<void>;
  /** Starts a stopped VM (its vTPM reloads from the PSS) and returns its data endpoint. */
  startVm(name: string): Promise<Endpoint>;
  logTail(): string;
  stop(): Promise<void>;
}

function endpointOf(vm: { endpoints?: { swtpm?: { data?: string } } }, name: string): Endpoint {
  const data = vm.endpoints?.swtpm?.data;
  if (typeof data !== 'string') throw new Error(`vtpmd serve reported no swtpm endpoint for VM ${name}: ${JSON.stringify(vm)}`);
  const u = new URL(data);
  return { host: u.hostname, port: Number(u.port) };
}

export interface ServeOptions {
  /** The state directory (made if missing); the log goes beside it. */
  stateDir: string;
  vms: number;
  durability: Durability;
  cpuProfDir?: string;
  onProgress?: (message: string) => void;
  timeoutMs?: number;
}

export async function startServe(opts: ServeOptions): Promise<ServeDaemon> {
  mkdirSync(opts.stateDir, { recursive: true });
  const logFile = `${opts.stateDir}.log`;
  const nodeFlags = opts.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`, '--cpu-prof-interval=100'] : [];
  const argv = [process.execPath, ...nodeFlags, join(REPO_ROOT, 'bin', 'vtpmd.js'), '--state', opts.stateDir, 'serve', '--host-id', 'bench-host'];
  const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const logFd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(argv[0]!, argv.slice(1), { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', logFd], env: { ...process.env, VTPMD_LOG_LEVEL: 'warn' } });
  } finally {
    closeSync(logFd);
  }
  trackChild(child);
  const stopGraceMs = opts.cpuProfDir ? 20_000 : 10_000;
  const timeoutMs = opts.timeoutMs ?? 30_000;

  const api = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(withLog(`vtpmd serve did not report listening within ${timeoutMs / 1000} s`, logFile)), timeoutMs);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let event: { event?: unknown; api?: unknown };
      try {
        event = JSON.parse(line) as typeof event;
      } catch {
        return; // not one of the machine-readable lines
      }
      if (event.event === 'listening' && typeof event.api === 'string') {
        clearTimeout(timer);
        resolve(event.api);
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      reject(withLog(`vtpmd serve ${exitText(child)} before it was listening`, logFile));
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start vtpmd serve: ${err.message}`));
    });
  }).catch(async (err: unknown) => {
    await stopChild(child, stopGraceMs);
    throw err;
  });

  const call = async (method: string, path: string, body?: unknown): Promise<any> => {
    try {
      return (await callApi(api, method, path, body)).json;
    } catch (err) {
      throw withLog(`vtpmd serve: ${method} ${path} failed: ${(err as Error).message}`, logFile);
    }
  };
  const daemon: ServeDaemon = {
    pid: child.pid!,
    api,
    version,
    argv,
    endpoints: [],
    createVm: async (name) => endpointOf(await call('POST', '/vms', { name, durability: opts.durability }), name),
    stopVm: async (name) => {
      await call('POST', `/vms/${name}/stop`);
    },
    startVm: async (name) => endpointOf(await call('POST', `/vms/${name}/start`), name),
    logTail: () => tail(logFile),
    stop: () => stopChild(child, stopGraceMs),
  };
  try {
    const endpoints: Endpoint[] = [];
    for (let i = 0; i < opts.vms; i++) {
      endpoints.push(await daemon.createVm(`vm-${i}`));
      if ((i + 1) % 64 === 0) opts.onProgress?.(`vtpmd serve: ${i + 1}/${opts.vms} VMs created`);
    }
    return { ...daemon, endpoints };
  } catch (err) {
    await daemon.stop();
    throw err;
  }
}
