/**
 * Killing the host process (SIGKILL) at random moments in a stream of vTPM commands loses no
 * command whose response was sent: after each kill the vTPM holds exactly the effects of the
 * acknowledged steps, or of one more (a command whose save landed before its response left).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, test } from 'node:test';
import { Host } from '../../src/daemon/host.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { ALG, RH } from '../../src/tpm/tpm2/constants.ts';
import { NT, NV_ATTR } from '../../src/tpm/tpm2/types/nv.ts';

const CHILD = resolve(import.meta.dirname, 'crash-child.ts');
const COUNTER = 0x01000200;
const ROUNDS = 4;

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** Runs the child until it has acknowledged `killAfter` steps (or a few more), kills it, returns the last ack. */
async function runAndKill(stateDir: string, round: number, killAfter: number): Promise<number> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD, stateDir, String(round)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let last = 0;
  const exited = new Promise<void>((ok) => child.once('exit', () => ok()));
  await new Promise<void>((ok, fail) => {
    child.once('exit', (code, signal) => fail(new Error(`the child exited (${code ?? signal}) before it was killed`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const m = /^ack (\d+)$/.exec(line);
      if (!m) return;
      last = Number(m[1]);
      if (last >= killAfter) {
        child.kill('SIGKILL');
        ok();
      }
    });
  }).catch((e) => {
    if (child.exitCode === null && child.signalCode === null) throw e;
  });
  await exited;
  return last;
}

function extendChain(start: Buffer, round: number, steps: number): Buffer {
  let v = start;
  for (let n = 1; n <= steps; n += 2) v = createHash('sha256').update(v).update(createHash('sha256').update(`${round}:${n}`).digest()).digest();
  return v;
}

describe('crash safety of vTPM state', () => {
  test('SIGKILL at random points in a command stream loses no acknowledged command', async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'vtpmd-crash-'));
    dirs.push(stateDir);
    let host = await Host.open({ stateDir, hostId: 'crash-lab', idleUnloadMs: 0 });
    await host.manager.create('crashy');
    let tpm = new Tpm2Client(async (c) => (await host.manager.device('crashy')).execute(c, 0));
    await tpm.startup();
    await tpm.nvDefineSpace(RH.OWNER, { nvIndex: COUNTER, nameAlg: ALG.SHA256, attributes: NV_ATTR.AUTHWRITE | NV_ATTR.AUTHREAD | (NT.COUNTER << 4), authPolicy: Buffer.alloc(0), dataSize: 8 });
    await tpm.nvIncrement(COUNTER, COUNTER);
    let pcr = (await tpm.pcrRead(ALG.SHA256, [16]))[0]!;
    let counter = (await tpm.nvRead(COUNTER, COUNTER, 8)).readBigUInt64BE(0);
    await host.close();

    for (let round = 1; round <= ROUNDS; round++) {
      const acked = await runAndKill(stateDir, round, 20 + Math.floor(Math.random() * 60));
      host = await Host.open({ stateDir, hostId: 'crash-lab', idleUnloadMs: 0 });
      tpm = new Tpm2Client(async (c) => (await host.manager.device('crashy')).execute(c, 0));
      const nowPcr = (await tpm.pcrRead(ALG.SHA256, [16]))[0]!;
      const nowCounter = (await tpm.nvRead(COUNTER, COUNTER, 8)).readBigUInt64BE(0);
      const steps = [acked, acked + 1].find((k) => extendChain(pcr, round, k).equals(nowPcr) && nowCounter === counter + BigInt(Math.floor(k / 2)));
      assert.ok(steps !== undefined, `round ${round}: ${acked} steps were acknowledged but the vTPM holds neither their effects nor one more step's`);
      pcr = nowPcr;
      counter = nowCounter;
      await host.close();
    }
  });
});
