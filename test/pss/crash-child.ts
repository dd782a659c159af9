/**
 * The process the crash test kills: opens the PSS on a file-backed chip and has several VMs save
 * in a loop, printing "ack <vm> <n>" only after save(n) resolved, i.e. after the point a vTPM
 * would release its response. Each VM first loads what it had and continues from there.
 *
 *   node --import tsx test/pss/crash-child.ts <pssDir> <chipDir> <vms>
 */
import { Chip } from '../../src/hwtpm/chip.ts';
import { openChipClient } from '../../src/hwtpm/open-chip-client.ts';
import { ProtectedStorage } from '../../src/pss/protected-storage.ts';
import { crashNvm, crashNvmCounter, CRASH_MODEL } from './crash-nvm.ts';

const [pssDir, chipDir, vmCount] = process.argv.slice(2);
const client = await openChipClient(Chip.open({ personality: 'tpm2', stateDir: chipDir! }));
await client.takeOwnership();
// Windows smaller than the crowd of savers, so that a window is written while the one before it
// still waits for its counter increment, and kills land between the two as well.
const pss = await ProtectedStorage.open({ dir: pssDir!, chip: client, maxCommitBatch: 3 });
if (pss.refusal) throw pss.refusal;

async function run(vm: string): Promise<never> {
  const had = await pss.load(vm, CRASH_MODEL);
  let n = had ? crashNvmCounter(had) : 0;
  for (;;) {
    n++;
    await pss.save(vm, CRASH_MODEL, crashNvm(vm, n));
    process.stdout.write(`ack ${vm} ${n}\n`);
  }
}

process.stdout.write('ready\n');
await Promise.all(Array.from({ length: Number(vmCount) }, (_, i) => run(`vm-${i}`)));
