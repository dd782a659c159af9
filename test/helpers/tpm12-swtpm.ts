/**
 * A TPM 1.2 served over the swtpm socket protocol, driven over its TCP data socket: swtpm 0.7.1
 * started without --tpm2, or `vtpmd socket` started the same way.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const VTPMD = resolve(import.meta.dirname, '..', '..', 'bin', 'vtpmd.js');

export class Swtpm12 {
  private buf = Buffer.alloc(0);
  private waiter: (() => void) | undefined;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly child: ChildProcess,
    private readonly sock: Socket,
    readonly dir: string,
  ) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.waiter?.();
    });
  }

  /** Starts swtpm (or vtpmd) on an empty state directory with TPM_Startup(ST_CLEAR) already done. */
  static async start(program: 'swtpm' | 'vtpmd' = 'swtpm'): Promise<Swtpm12> {
    const dir = mkdtempSync(join(tmpdir(), `vtpmd-${program}12-`));
    const command = program === 'swtpm' ? ['swtpm'] : [process.execPath, VTPMD];
    for (let attempt = 0; ; attempt++) {
      const port = 20000 + Math.floor(Math.random() * 20000) * 2;
      const args = ['socket', '--server', `type=tcp,port=${port}`, '--ctrl', `type=tcp,port=${port + 1}`, '--flags', 'not-need-init,startup-clear', '--tpmstate', `dir=${dir}`];
      const child = spawn(command[0]!, [...command.slice(1), ...args], { stdio: 'ignore', env: { ...process.env, VTPMD_LOG_LEVEL: 'warn' } });
      try {
        const sock = await connectWithRetry(port, child);
        return new Swtpm12(child, sock, dir);
      } catch (e) {
        child.kill();
        if (attempt >= 4) throw e;
      }
    }
  }

  /** Sends one command and reads one response frame (10-byte header, then the rest). */
  exec = (cmd: Uint8Array): Promise<Buffer> => {
    const run = async () => {
      this.buf = Buffer.alloc(0);
      this.sock.write(cmd);
      const deadline = Date.now() + 10_000;
      while (this.buf.length < 10 || this.buf.length < this.buf.readUInt32BE(2)) {
        if (Date.now() > deadline) throw new Error('swtpm did not answer');
        await new Promise<void>((ok) => {
          this.waiter = ok;
          setTimeout(ok, 200);
        });
      }
      return this.buf.subarray(0, this.buf.readUInt32BE(2));
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  };

  async stop(): Promise<void> {
    this.sock.destroy();
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((ok) => this.child.once('exit', ok));
      this.child.kill();
      await Promise.race([exited, new Promise((ok) => setTimeout(ok, 5000))]);
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

async function connectWithRetry(port: number, child: ChildProcess): Promise<Socket> {
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) throw new Error(`the TPM server exited with ${child.exitCode}`);
    try {
      return await new Promise<Socket>((ok, fail) => {
        const s = connect(port, '127.0.0.1');
        s.once('connect', () => ok(s));
        s.once('error', fail);
      });
    } catch {
      await new Promise((ok) => setTimeout(ok, 100));
    }
  }
  throw new Error(`the TPM server did not listen on port ${port}`);
}
