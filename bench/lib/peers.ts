/**
 * The servers measured over the swtpm socket protocol, each in its own child process so client
 * and server never share an event loop: vtpmd (`bin/vtpmd.js socket`, exactly what an operator
 * runs) and swtpm (the reference). Each gets a fresh state directory under the run's temp dir.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, openSync, closeSync, readFileSync, mkdirSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { stopChild, trackChild } from './cleanup.ts';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const HOST = '127.0.0.1';

export interface Peer {
  /** 'vtpmd', 'swtpm' or 'node-floor'. */
  readonly name: string;
  readonly version: string;
  /** What the table prints in the path column. */
  readonly label: string;
  readonly pid: number;
  readonly host: string;
  readonly dataPort: number;
  /** Undefined for servers without a control channel (the calibration floor). */
  readonly ctrlPort: number | undefined;
  /** The command line that started it. */
  readonly argv: readonly string[];
  /** Where it keeps the TPM's state, when the bench chose it. */
  readonly stateDir?: string;
  /** The last lines the server logged, for error messages. */
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

export function tail(file: string, lines = 20): string {
  try {
    const text = readFileSync(file, 'utf8').trimEnd();
    return text.split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export function withLog(message: string, logFile: string): Error {
  return new Error(`${message}\n--- last lines of ${logFile} ---\n${tail(logFile)}`);
}

export function exitText(child: ChildProcess): string {
  return child.signalCode !== null ? `was killed by ${child.signalCode}` : `exited with code ${child.exitCode}`;
}

function parseTcpUrl(server: string, url: unknown, what: string): { host: string; port: number } {
  const m = typeof url === 'string' ? /^tcp:\/\/(\[[^\]]+\]|[^:/]+):(\d+)$/.exec(url) : null;
  if (!m) throw new Error(`${server} reported its ${what} channel as ${JSON.stringify(url)}; the bench needs tcp://HOST:PORT`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port: Number(m[2]) };
}

export interface VtpmdOptions {
  /** The run's temporary directory; state and log go below it. */
  workDir: string;
  /** Write a V8 CPU profile of the server into this directory (written when it stops). */
  cpuProfDir?: string;
}

interface NodeServer {
  name: string;
  version: string;
  label: string;
  argv: string[];
  logFile: string;
  /** Whether the `listening` line must name a control channel too. */
  needsCtrl: boolean;
  /** Grace period between SIGTERM and SIGKILL when stopping. */
  stopGraceMs: number;
}

/** Starts a Node child that prints a `{"event":"listening","data":…,"ctrl":…}` line and waits for that line. */
async function startNodeServer(spec: NodeServer, timeoutMs: number): Promise<Peer> {
  const { argv, logFile, name } = spec;
  const logFd = openSync(logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(argv[0]!, argv.slice(1), { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', logFd] });
  } finally {
    closeSync(logFd);
  }
  trackChild(child);

  type Address = { host: string; port: number };
  const listening = await new Promise<{ data: Address; ctrl: Address | undefined }>((resolve, reject) => {
    const timer = setTimeout(() => reject(withLog(`${name} did not report listening within ${timeoutMs / 1000} s`, logFile)), timeoutMs);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      let event: { event?: unknown; data?: unknown; ctrl?: unknown };
      try {
        event = JSON.parse(line) as typeof event;
      } catch {
        return; // not one of the machine-readable lines
      }
      if (event.event !== 'listening') return;
      clearTimeout(timer);
      try {
        resolve({
          data: parseTcpUrl(name, event.data, 'data'),
          ctrl: spec.needsCtrl || event.ctrl !== undefined ? parseTcpUrl(name, event.ctrl, 'ctrl') : undefined,
        });
      } catch (err) {
        reject(err);
      }
    });
    child.once('exit', () => {
      clearTimeout(timer);
      reject(withLog(`${name} ${exitText(child)} before it was listening (${argv.slice(1).join(' ')})`, logFile));
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot start ${name}: ${err.message}`));
    });
  }).catch(async (err: unknown) => {
    await stopChild(child);
    throw err;
  });

  return {
    name,
    version: spec.version,
    label: spec.label,
    pid: child.pid!,
    host: listening.data.host,
    dataPort: listening.data.port,
    ctrlPort: listening.ctrl?.port,
    argv,
    logTail: (lines) => tail(logFile, lines),
    stop: () => stopChild(child, spec.stopGraceMs),
  };
}

/** Starts `node bin/vtpmd.js socket …` with port 0 and reads the real ports from its `listening` line. */
export function startVtpmd(opts: VtpmdOptions, timeoutMs = 30_000): Promise<Peer> {
  const stateDir = join(opts.workDir, 'vtpmd-state');
  mkdirSync(stateDir, { recursive: true });
  const nodeFlags = opts.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${opts.cpuProfDir}`, '--cpu-prof-interval=100'] : [];
  const version = (JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  return startNodeServer(
    {
      name: 'vtpmd',
      version,
      label: `socket vtpmd ${version}`,
      argv: [
        process.execPath,
        ...nodeFlags,
        join(REPO_ROOT, 'bin', 'vtpmd.js'),
        'socket',
        '--tpm2',
        '--server',
        `type=tcp,bindaddr=${HOST},port=0`,
        '--ctrl',
        `type=tcp,bindaddr=${HOST},port=0`,
        '--tpmstate',
        `dir=${stateDir}`,
        '--flags',
        'not-need-init,startup-clear',
      ],
      logFile: join(opts.workDir, 'vtpmd.log'),
      needsCtrl: true,
      // A CPU profile is written while the process exits, which can take a moment.
      stopGraceMs: opts.cpuProfDir ? 20_000 : 3000,
    },
    timeoutMs,
  );
}

/** Starts the calibration server (bench/floor-server.ts): a canned response per command code. */
export function startNodeFloor(workDir: string, responses: ReadonlyMap<number, Buffer>, timeoutMs = 30_000): Promise<Peer> {
  const pairs = [...responses].map(([cc, response]) => `${cc.toString(16)}=${response.toString('hex')}`);
  return startNodeServer(
    {
      name: 'node-floor',
      version: process.version,
      label: 'socket node-floor (no TPM)',
      argv: [process.execPath, '--import', 'tsx', join(REPO_ROOT, 'bench', 'floor-server.ts'), ...pairs],
      logFile: join(workDir, 'node-floor.log'),
      needsCtrl: false,
      stopGraceMs: 3000,
    },
    timeoutMs,
  );
}

/** The swtpm executable on PATH, or undefined. */
export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const file = join(dir, name);
    try {
      accessSync(file, fsConstants.X_OK);
      return file;
    } catch {
      // keep looking
    }
  }
  return undefined;
}

const versions = new Map<string, string>();

export function swtpmVersion(binary: string): string {
  let version = versions.get(binary);
  if (version === undefined) {
    try {
      const out = execFileSync(binary, ['--version'], { encoding: 'utf8', timeout: 5000 });
      version = /version\s+([\d.]+)/i.exec(out)?.[1] ?? out.trim().split('\n')[0]!;
    } catch (err) {
      return `unknown (${(err as Error).message})`;
    }
    versions.set(binary, version);
  }
  return version;
}

function listenOn(port: number): Promise<import('node:net').Server | null> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(null));
    server.listen({ port, host: HOST, exclusive: true }, () => resolve(server));
  });
}

function closeServer(server: import('node:net').Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Two adjacent free TCP ports P, P+1 (swtpm's clients expect ctrl at data + 1). Racy by nature; callers retry. */
export async function freePortPair(attempts = 50): Promise<number> {
  for (let i = 0; i < attempts; i++) {
    const first = await listenOn(0);
    if (!first) continue;
    const port = (first.address() as import('node:net').AddressInfo).port;
    const second = port < 65535 ? await listenOn(port + 1) : null;
    await closeServer(first);
    if (second) {
      await closeServer(second);
      return port;
    }
  }
  throw new Error(`found no two adjacent free TCP ports on ${HOST} after ${attempts} tries`);
}

/** Whether something listens on the port; a socket that connected to itself (source port = port, no listener) does not count. */
function canConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.once('connect', () => {
      const self = socket.localPort === port;
      socket.destroy();
      resolve(!self);
    });
    socket.once('error', () => resolve(false));
  });
}

/** The command line libvirt's way: `swtpm socket --tpm2` on ports P (data) and P+1 (control), started and ready. */
export function swtpmArgv(binary: string, port: number, stateDir: string): string[] {
  return [
    binary,
    'socket',
    '--tpm2',
    '--server',
    `type=tcp,bindaddr=${HOST},port=${port}`,
    '--ctrl',
    `type=tcp,bindaddr=${HOST},port=${port + 1}`,
    '--flags',
    'not-need-init,startup-clear',
    '--tpmstate',
    `dir=${stateDir}`,
  ];
}

/** Spawns a server with stdout and stderr appended to `logFile`; the child is stopped on any exit of the bench. */
export function spawnLogged(argv: readonly string[], logFile: string): ChildProcess {
  const logFd = openSync(logFile, 'a');
  try {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', logFd, logFd] });
    trackChild(child);
    return child;
  } finally {
    closeSync(logFd);
  }
}

/**
 * Port pairs are handed out one start at a time: two starts choosing pairs at once can overlap
 * (P+1 of one is P of the other); the loser's swtpm fails to bind, but the readiness probe would
 * reach the winner's control channel on that port and take it for the loser's data channel.
 */
let portTurn: Promise<unknown> = Promise.resolve();

function inPortTurn<T>(fn: () => Promise<T>): Promise<T> {
  const run = portTurn.then(fn, fn);
  portTurn = run.catch(() => undefined);
  return run;
}

/**
 * Starts `swtpm socket --tpm2 …` on a free port pair and waits until its data port accepts
 * connections. swtpm serves one data client at a time; the readiness probe disconnects at once.
 * The state lives in a new directory under `workDir`.
 */
export function startSwtpm(binary: string, workDir: string, timeoutMs = 10_000): Promise<Peer> {
  return inPortTurn(() => startSwtpmNow(binary, workDir, timeoutMs));
}

async function startSwtpmNow(binary: string, workDir: string, timeoutMs: number): Promise<Peer> {
  const version = swtpmVersion(binary);
  const logFile = join(workDir, 'swtpm.log');
  let lastError: Error | undefined;
  for (let attempt = 1; attempt <= 3; attempt++) {
    const stateDir = join(workDir, `swtpm-state-${attempt}`);
    mkdirSync(stateDir, { recursive: true });
    const port = await freePortPair();
    const argv = swtpmArgv(binary, port, stateDir);
    const child = spawnLogged(argv, logFile);
    let spawnError: Error | undefined;
    child.once('error', (err) => (spawnError = err));
    const deadline = Date.now() + timeoutMs;
    let ready = false;
    while (Date.now() < deadline) {
      if (spawnError) throw new Error(`cannot start swtpm: ${spawnError.message}`);
      if (child.exitCode !== null || child.signalCode !== null) break;
      if (await canConnect(HOST, port)) {
        ready = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    if (ready && child.exitCode === null && child.signalCode === null) {
      return {
        name: 'swtpm',
        version,
        label: `socket swtpm ${version}`,
        pid: child.pid!,
        host: HOST,
        dataPort: port,
        ctrlPort: port + 1,
        argv,
        stateDir,
        logTail: (lines) => tail(logFile, lines),
        stop: () => stopChild(child),
      };
    }
    const why = child.exitCode !== null || child.signalCode !== null ? exitText(child) : `did not accept connections within ${timeoutMs / 1000} s`;
    lastError = withLog(`swtpm ${why} (attempt ${attempt}, ports ${port}/${port + 1})`, logFile);
    await stopChild(child);
  }
  throw lastError!;
}
