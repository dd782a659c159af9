/**
 * The process the crash test kills: opens the host in the given state directory and sends VM
 * 'crashy' an endless stream of state-changing commands, printing `ack N` after each response.
 * Step N extends PCR 16 with SHA-256("ROUND:N") when N is odd and increments NV counter 0x01000200
 * when N is even, so the parent can tell exactly which acknowledged steps took effect.
 */
import { createHash } from 'node:crypto';
import { Host } from '../../src/daemon/host.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { ALG } from '../../src/tpm/tpm2/constants.ts';

const [stateDir, round] = process.argv.slice(2) as [string, string];
const COUNTER = 0x01000200;

const host = await Host.open({ stateDir, hostId: 'crash-lab', idleUnloadMs: 0 });
const device = await host.manager.device('crashy');
const tpm = new Tpm2Client((c) => device.execute(c, 0));
process.stdout.write('ready\n');
for (let n = 1; ; n++) {
  if (n % 2 === 1) await tpm.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: createHash('sha256').update(`${round}:${n}`).digest() }]);
  else await tpm.nvIncrement(COUNTER, COUNTER);
  process.stdout.write(`ack ${n}\n`);
}
