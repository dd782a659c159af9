/**
 * `vtpmd socket` and `vtpmd mssim` as a user runs them: a child process, its machine-readable
 * stdout lines, its exit code. The device is the fake behind fixtures/cli-harness.ts.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Client, command, expectedEcho, portOf, u32 } from './helpers.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const HARNESS = fileURLToPath(new URL('./fixtures/cli-harness.ts', import.meta.url));

type Event = Record<string, unknown> & { event: string };

class Vtpmd {
  readonly #events: Event[] = [];
  readonly #waiters: { name: string; resolve: (event: Event) => void; reject: (err: Error) => void }[] = [];
  #ended = false;
  stderr = '';
  readonly exited: Promise<number | null>;

  constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (!line.startsWith('{')) return;
      const event = JSON.parse(line) as Event;
      if (typeof event.event !== 'string') return;
      const waiter = this.#waiters.findIndex((w) => w.name === event.event);
      if (waiter >= 0) this.#waiters.splice(waiter, 1)[0]!.resolve(event);
      else this.#events.push(event);
    });
    child.stdout!.once('close', () => {
      this.#ended = true;
      for (const waiter of this.#waiters.splice(0)) waiter.reject(this.#endedWithout(waiter.name));
    });
    child.stderr!.on('data', (chunk: Buffer) => (this.stderr += chunk.toString()));
    this.exited = once(child, 'exit').then(([code]) => code as number | null);
  }

  /** The next stdout line whose "event" is `name`. */
  next(name: string): Promise<Event> {
    const queued = this.#events.findIndex((e) => e.event === name);
    if (queued >= 0) return Promise.resolve(this.#events.splice(queued, 1)[0]!);
    if (this.#ended) return Promise.reject(this.#endedWithout(name));
    return new Promise((resolve, reject) => this.#waiters.push({ name, resolve, reject }));
  }

  #endedWithout(name: string): Error {
    return new Error(`vtpmd closed its stdout without printing a "${name}" event; stderr:\n${this.stderr}`);
  }

  /** Events printed so far and not yet consumed by next(). */
  get unread(): readonly Event[] {
    return this.#events;
  }
}

function vtpmd(t: TestContext, args: string[]): Vtpmd {
  const child = spawn(process.execPath, ['--import', 'tsx', HARNESS, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return new Vtpmd(child);
}

async function stopWith(process: Vtpmd, signal: NodeJS.Signals): Promise<void> {
  process.child.kill(signal);
  await process.next('flushed');
  await process.next('stopped');
  assert.equal(await process.exited, 0);
}

test('vtpmd socket prints one listening line with the real ports, serves there, and stops on SIGTERM with the device flushed', async (t) => {
  const p = vtpmd(t, ['socket', '--tpm2', '--server', 'type=tcp,port=0', '--flags', 'not-need-init']);
  const listening = await p.next('listening');
  assert.deepEqual(Object.keys(listening), ['event', 'data', 'ctrl']);
  assert.match(String(listening['data']), /^tcp:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(portOf(String(listening['ctrl'])), portOf(String(listening['data'])) + 1);

  const client = await Client.connect(String(listening['data']));
  const cmd = command(0x17b, Buffer.of(0, 8));
  assert.deepEqual(await client.transact(cmd), expectedEcho(cmd, 0));
  client.close();
  await stopWith(p, 'SIGTERM');
});

test('vtpmd socket exits cleanly after a client sends CMD_SHUTDOWN', async (t) => {
  const p = vtpmd(t, ['socket', '--tpm2', '--server', 'port=0']);
  const listening = await p.next('listening');
  const ctrl = await Client.connect(String(listening['ctrl']));
  await ctrl.write(u32(3));
  assert.deepEqual(await ctrl.read(4), u32(0));
  await p.next('stopped');
  assert.equal(await p.exited, 0);
});

test('vtpmd socket serves Unix sockets and reports them as unix:// addresses', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vtpmd-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const p = vtpmd(t, [
    'socket',
    '--tpm2',
    '--server',
    `type=unixio,path=${join(dir, 'data')}`,
    '--ctrl',
    `type=unixio,path=${join(dir, 'ctrl')},mode=0700`,
    '--flags',
    'not-need-init,startup-clear',
  ]);
  const listening = await p.next('listening');
  assert.deepEqual(listening, { event: 'listening', data: `unix://${join(dir, 'data')}`, ctrl: `unix://${join(dir, 'ctrl')}` });
  const client = await Client.connect(String(listening['data']));
  const cmd = command(0x17b);
  assert.deepEqual(await client.transact(cmd), expectedEcho(cmd, 0));
  client.close();
  await stopWith(p, 'SIGINT');
});

test('vtpmd socket names an unknown --server sub-option and exits 1 without listening', async (t) => {
  const p = vtpmd(t, ['socket', '--tpm2', '--server', 'type=tcp,port=0,colour=blue']);
  assert.equal(await p.exited, 1);
  assert.match(p.stderr, /--server: unknown sub-option 'colour'/);
  assert.equal(p.unread.some((e) => e.event === 'listening'), false);
});

test('vtpmd socket refuses swtpm options it does not implement, by name', async (t) => {
  const p = vtpmd(t, ['socket', '--tpm2', '--ctrl', 'type=unixio,path=/tmp/x,uid=0']);
  assert.equal(await p.exited, 1);
  assert.match(p.stderr, /--ctrl: 'uid' is a swtpm sub-option that vtpmd does not support/);
});

test('vtpmd socket --daemon is refused with an explanation', async (t) => {
  const p = vtpmd(t, ['socket', '--tpm2', '--daemon']);
  assert.equal(await p.exited, 1);
  assert.match(p.stderr, /always runs in the foreground/);
});

test('vtpmd socket without --tpm2 asks for a TPM 1.2, prints why that failed and exits 1', async (t) => {
  const p = vtpmd(t, ['socket', '--server', 'port=0']);
  assert.equal(await p.exited, 1);
  assert.match(p.stderr, /cannot open the TPM in .*: TPM 1\.2 devices are not implemented yet; pass --tpm2/);
});

test('the state directory is --tpmstate dir, else the global --state, else ./vtpmd-state', async (t) => {
  const cases: [string[], string][] = [
    [['--state', '/tmp/global', 'socket', '--tpmstate', 'dir=/tmp/own'], '/tmp/own'],
    [['--state', '/tmp/global', 'socket'], '/tmp/global'],
    [['socket'], './vtpmd-state'],
  ];
  for (const [args, expected] of cases) {
    const p = vtpmd(t, [...args, '--tpm2', '--server', 'port=0']);
    assert.equal((await p.next('opened'))['stateDir'], expected);
    await p.next('listening');
    await stopWith(p, 'SIGTERM');
  }
});

test('vtpmd mssim prints one listening line with command and platform ports, serves there, and stops on SIGINT', async (t) => {
  const p = vtpmd(t, ['mssim', '--port', '0', '--tpmstate', 'dir=/tmp/m']);
  assert.deepEqual(await p.next('opened'), { event: 'opened', stateDir: '/tmp/m', tpm2: true });
  const listening = await p.next('listening');
  assert.deepEqual(Object.keys(listening), ['event', 'command', 'platform', 'port']);
  const port = Number(listening['port']);
  assert.equal(listening['command'], `tcp://127.0.0.1:${port}`);
  assert.equal(listening['platform'], `tcp://127.0.0.1:${port + 1}`);

  const platform = await Client.connect(String(listening['platform']));
  await platform.write(u32(1));
  assert.deepEqual(await platform.read(4), u32(0));
  const tpm = await Client.connect(String(listening['command']));
  const cmd = command(0x17b);
  await tpm.write(Buffer.concat([u32(8), Buffer.of(2), u32(cmd.length), cmd]));
  assert.deepEqual(await tpm.read(4), u32(cmd.length + 1));
  assert.deepEqual(await tpm.read(cmd.length + 1), expectedEcho(cmd, 2));
  assert.deepEqual(await tpm.read(4), u32(0));
  platform.close();
  tpm.close();
  await stopWith(p, 'SIGINT');
});

test('vtpmd mssim rejects a port that is not a number and exits 1', async (t) => {
  const p = vtpmd(t, ['mssim', '--port', 'twenty']);
  assert.equal(await p.exited, 1);
  assert.match(p.stderr, /--port: port must be a number from 0 to 65535/);
});
