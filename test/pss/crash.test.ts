import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { ProtectedStorage } from '../../src/pss/protected-storage.ts';
import { crashNvmCounter, CRASH_MODEL } from './crash-nvm.ts';
import { fileChip, scratchDir } from './helpers.ts';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '../..');
const VMS = 8;
const ROUNDS = 4;

const scratch = scratchDir('vtpmd-pss-crash-');
after(scratch.cleanup);

/**
 * Runs the saving child until it has acknowledged `killAfter` saves, then SIGKILLs it (between
 * two acknowledgements, wherever the commit pipeline is) and returns the last acknowledged save of
 * each VM.
 */
function runAndKill(pssDir: string, chipDir: string, killAfter: number): Promise<Map<string, number>> {
  return new Promise((ok, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(HERE, 'crash-child.ts'), pssDir, chipDir, String(VMS)], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const acked = new Map<string, number>();
    let acks = 0;
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^ack (\S+) (\d+)$/.exec(line);
      if (!m) return;
      acked.set(m[1]!, Math.max(acked.get(m[1]!) ?? 0, Number(m[2])));
      if (++acks === killAfter) child.kill('SIGKILL');
    });
    child.on('exit', (code, signal) => {
      if (signal === 'SIGKILL') ok(acked);
      else fail(new Error(`the saving child exited on its own (code ${code}): ${stderr}`));
    });
  });
}

test('a process killed at arbitrary points never loses an acknowledged save, round after round', async () => {
  const pssDir = join(scratch.dir, 'pss');
  const chipDir = join(scratch.dir, 'chip');
  const lastAcked = new Map<string, number>();
  for (let round = 0; round < ROUNDS; round++) {
    const killAfter = 20 + Math.floor(Math.random() * 200);
    const acked = await runAndKill(pssDir, chipDir, killAfter);
    assert.ok(acked.size > 0, 'the child acknowledged saves before it was killed');
    for (const [vm, n] of acked) lastAcked.set(vm, n);

    // The chip survives the process in its NV file, as the hardware would.
    const { client } = await fileChip(chipDir);
    const pss = await ProtectedStorage.open({ dir: pssDir, chip: client });
    assert.equal(pss.refusal, undefined, `round ${round}: ${pss.refusal?.message}`);
    for (const [vm, n] of lastAcked) {
      const nvm = await pss.load(vm, CRASH_MODEL);
      assert.ok(nvm, `round ${round}: ${vm} lost its state`);
      const have = crashNvmCounter(nvm);
      assert.ok(have >= n, `round ${round}: ${vm} acknowledged save ${n} but the PSS restores save ${have}`);
      assert.ok(have <= n + 1, `round ${round}: ${vm} restores save ${have}, which was never made`);
      // The next child continues from what was restored, acknowledged or not.
      lastAcked.set(vm, have);
    }
    assert.equal(await client.readCounter(pss.status().counterId!), pss.status().epoch, 'database and chip counter agree after recovery');
    await pss.close();
  }
});
