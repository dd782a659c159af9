/**
 * One lab host's trusted stack, assembled from its state directory: the simulated chip booted as
 * the host's TPM (manufactured on first use, host boot measured), the host owning it (SRK), the
 * protected storage service bound to the host TCB, and the GVTPM manager serving the VMs' vTPMs
 * from it. This is what `vtpmd serve` runs and what scripted simulations open.
 *
 *   <state>/chip   the chip's NV, the manufacturer's root, the host event log
 *   <state>/pss    the PSS database (level)
 *   <state>/vms    the VM registry (level)
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { ChipClient } from '../hwtpm/chip-client.ts';
import { bootLabHost, type LabHost } from '../hwtpm/lab-host.ts';
import { processRsaKeyPool } from '../tpm/crypto/rsa-key-pool.ts';
import { openChipClient } from '../hwtpm/open-chip-client.ts';
import { ProtectedStorage } from '../pss/protected-storage.ts';
import { GvtpmManager } from '../vtpm/manager.ts';

export interface HostOptions {
  readonly stateDir: string;
  /** Names the simulated host; its firmware and boot identities derive from it. Default: the hostname. */
  readonly hostId?: string;
  readonly logger?: Logger;
  /** Unload vTPMs idle this long (ms); 0 keeps them loaded. */
  readonly idleUnloadMs?: number;
}

export class Host {
  private constructor(
    readonly lab: LabHost,
    readonly chipClient: ChipClient,
    readonly pss: ProtectedStorage,
    readonly manager: GvtpmManager,
    readonly hostId: string,
  ) {}

  static async open(opts: HostOptions): Promise<Host> {
    const hostId = opts.hostId ?? hostname();
    // The chip makes hardware-backed vTPMs' RSA keys: off the main thread, as the models do.
    const lab = await bootLabHost({ stateDir: join(opts.stateDir, 'chip'), hostId, rsaKeys: processRsaKeyPool() });
    const chipClient = await openChipClient(lab.chip);
    await chipClient.takeOwnership();
    const pss = await ProtectedStorage.open({ dir: join(opts.stateDir, 'pss'), chip: chipClient, ...(opts.logger ? { logger: opts.logger } : {}) });
    if (pss.refusal) opts.logger?.error({ condition: pss.refusal.condition }, `the PSS refuses every vTPM: ${pss.refusal.message}`);
    try {
      const manager = await GvtpmManager.open({
        registryDir: join(opts.stateDir, 'vms'),
        storage: pss,
        hardware: { chip: lab.chip, client: chipClient, ekRoots: [lab.ca.certificate] },
        ...(opts.idleUnloadMs !== undefined ? { idleUnloadMs: opts.idleUnloadMs } : {}),
        ...(opts.logger ? { logger: opts.logger } : {}),
      });
      return new Host(lab, chipClient, pss, manager, hostId);
    } catch (e) {
      await pss.close();
      throw e;
    }
  }

  /** Drains every vTPM, makes the PSS durable and the chip's NV current. */
  async close(): Promise<void> {
    await this.manager.close();
    await this.pss.close();
    await this.lab.chip.flush();
  }
}
