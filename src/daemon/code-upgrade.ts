/**
 * Upgrading vtpmd's own code without losing the vTPMs. The PSS storage key and the key-binding
 * key are sealed to the host TCB and to the GVTPM components' PCRs (host-boot.ts), which hold the
 * measurement of the code that runs: new code is refused both keys. So before the new code runs,
 * the running daemon — code the chip still trusts — seals both keys a second time, to the values
 * those PCRs will hold once the new code is measured after the next TPM reset (a host reboot; the
 * simulated chip is reset by every start). The host TCB PCRs keep their present values, unless
 * the TCG event log of a boot of the new boot chain (firmware, boot loader, hypervisor) is given:
 * then they are bound to what that log replays to. vtpmd cannot predict a boot chain; whoever
 * stages vouches that the log is what the updated host will measure.
 *
 * The device models are measured as well, every time one is loaded (model-measurement.ts), and
 * the PSS hands a vTPM's state only to the model that saved it. Staging therefore also
 * authorizes, under a MAC of the PSS, each TPM version's model code of the new vtpmd to continue
 * the state the running model code saved; a vTPM loaded by the new code continues from there and
 * is bound to the new model from its next save.
 *
 * Who stages decides what code the keys are released to. Here that is whoever the running
 * daemon's control API admits, as for creating and destroying VMs. Running the staged code on the
 * state directory and the TPM then takes the access of vtpmd's own user, which can already read
 * the keys out of the running daemon's memory. What the sealing defends against — another boot,
 * the disk taken elsewhere, code changed with no trusted daemon running — cannot stage: staging
 * needs the keys in the hands of code the chip trusts, running now.
 */
import { readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { ChipClient } from '../hwtpm/chip-client.ts';
import { decodeEventLog, replay } from '../hwtpm/event-log.ts';
import { ALG } from '../tpm/tpm2/constants.ts';
import { GVTPM_COMPONENTS, gvtpmPcrValues, hostTcbPcrs, type MeasureHostBootOptions } from '../hwtpm/host-boot.ts';
import { modelCodeFolders } from '../vtpm/model-measurement.ts';

export class UpgradeError extends Error {
  constructor(
    readonly code: 'bad-code' | 'bad-boot-log' | 'not-measured' | 'unchanged',
    message: string,
  ) {
    super(message);
    this.name = 'UpgradeError';
  }
}

export interface UpgradePlan {
  /** Every PCR the keys may be bound to, with the value it will hold after the upgrade. */
  readonly expected: ReadonlyMap<number, Buffer>;
  /** The PCRs the new code (and boot chain) move. */
  readonly changed: readonly number[];
}

/**
 * The host TCB PCRs a boot log replays to, in the chip's PCR bank; refuses a file that is not a
 * TCG event log or has no such bank.
 */
export async function bootLogTcb(path: string, hash: 'sha256' | 'sha1'): Promise<Map<number, Buffer>> {
  let log;
  try {
    log = decodeEventLog(await readFile(path));
  } catch (e) {
    throw new UpgradeError('bad-boot-log', `${path} is not a readable TCG event log: ${(e as Error).message}`);
  }
  const bank = replay(log).get(hash === 'sha256' ? ALG.SHA256 : ALG.SHA1);
  if (!bank) throw new UpgradeError('bad-boot-log', `the event log ${path} has no ${hash} bank, which the host TPM binds the keys in`);
  return new Map(hostTcbPcrs().map((pcr) => [pcr, bank[pcr]!]));
}

/**
 * What the PCRs will hold once the code under `codeRoot` is measured in place of the running
 * code (whose root `running.rootDir` names; default this checkout), and the host TCB is what
 * `bootTcb` gives (bootLogTcb; default: as it is). Refuses a folder that is not vtpmd code, and
 * a chip whose component PCRs do not hold what the running code measures as (then the prediction
 * would start from a wrong base).
 */
export async function planUpgrade(chip: ChipClient, codeRoot: string, running: MeasureHostBootOptions = {}, bootTcb?: ReadonlyMap<number, Buffer>): Promise<UpgradePlan> {
  const root = resolve(codeRoot);
  for (const folder of [...GVTPM_COMPONENTS.map((c) => c.folder), ...modelCodeFolders()]) {
    const isDir = await stat(join(root, folder)).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!isDir) throw new UpgradeError('bad-code', `${root} is not vtpmd code: it has no ${folder} folder (give the root of the new vtpmd, where package.json is)`);
  }
  const componentPcrs = GVTPM_COMPONENTS.map((c) => c.pcr);
  const pcrs = [...hostTcbPcrs(), ...componentPcrs];
  const present = await chip.readPcrs(pcrs);
  const expected = new Map(pcrs.map((pcr, i) => [pcr, present[i]!]));
  const now = await gvtpmPcrValues(chip.pcrHash, running);
  for (const pcr of componentPcrs) {
    if (!now.get(pcr)!.equals(expected.get(pcr)!)) {
      throw new UpgradeError(
        'not-measured',
        `PCR ${pcr} of the host TPM does not hold the measurement of the running vtpmd's code (other code was measured since the TPM was reset, or the code changed under the running daemon); restart vtpmd from the code the keys are sealed to, then stage`,
      );
    }
  }
  const next = new Map([...(bootTcb ?? []), ...(await gvtpmPcrValues(chip.pcrHash, { ...running, rootDir: root }))]);
  const changed = pcrs.filter((pcr) => next.has(pcr) && !next.get(pcr)!.equals(expected.get(pcr)!));
  for (const pcr of changed) expected.set(pcr, next.get(pcr)!);
  return { expected, changed };
}
