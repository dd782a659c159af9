/**
 * Upgrading vtpmd's own code without losing the vTPMs. The PSS storage key and the key-binding
 * key are sealed to the host TCB and to the GVTPM components' PCRs (host-boot.ts), which hold the
 * measurement of the code that runs: new code is refused both keys. So before the new code runs,
 * the running daemon — code the chip still trusts — seals both keys a second time, to the values
 * those PCRs will hold once the new code is measured after the next TPM reset (a host reboot; the
 * simulated chip is reset by every start). The host TCB PCRs keep their present values: a new
 * boot chain is not something vtpmd can predict, so it stays a change the keys are refused to.
 *
 * Who stages decides what code the keys are released to: the control API, whose access is the
 * host's administration, is the authority here, as it is for creating and destroying VMs.
 */
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { ChipClient } from '../hwtpm/chip-client.ts';
import { GVTPM_COMPONENTS, gvtpmPcrValues, hostTcbPcrs, type MeasureHostBootOptions } from '../hwtpm/host-boot.ts';

export class UpgradeError extends Error {
  constructor(
    readonly code: 'bad-code' | 'not-measured' | 'unchanged',
    message: string,
  ) {
    super(message);
    this.name = 'UpgradeError';
  }
}

export interface UpgradePlan {
  /** Every PCR the keys may be bound to, with the value it will hold under the new code. */
  readonly expected: ReadonlyMap<number, Buffer>;
  /** The component PCRs the new code moves. */
  readonly changed: readonly number[];
}

/**
 * What the PCRs will hold once the code under `codeRoot` is measured in place of the running
 * code (whose root `running.rootDir` names; default this checkout). Refuses a folder that is not
 * vtpmd code, code that measures as the running code does, and a chip whose component PCRs do not
 * hold what the running code measures as (then the prediction would start from a wrong base).
 */
export async function planUpgrade(chip: ChipClient, codeRoot: string, running: MeasureHostBootOptions = {}): Promise<UpgradePlan> {
  const root = resolve(codeRoot);
  for (const c of GVTPM_COMPONENTS) {
    const folder = join(root, c.folder);
    const isDir = await stat(folder).then(
      (s) => s.isDirectory(),
      () => false,
    );
    if (!isDir) throw new UpgradeError('bad-code', `${root} is not vtpmd code: it has no ${c.folder} folder (give the root of the new vtpmd, where package.json is)`);
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
  const next = await gvtpmPcrValues(chip.pcrHash, { ...running, rootDir: root });
  const changed = componentPcrs.filter((pcr) => !next.get(pcr)!.equals(expected.get(pcr)!));
  if (changed.length === 0) {
    throw new UpgradeError('unchanged', `the GVTPM components under ${root} measure as the running ones do: that code gets the keys as it is, with nothing staged`);
  }
  for (const pcr of changed) expected.set(pcr, next.get(pcr)!);
  return { expected, changed };
}
