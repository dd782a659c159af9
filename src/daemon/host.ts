/**
 * One lab host's trusted stack, assembled from its state directory: the host's TPM — the simulated
 * chip booted as one (manufactured on first use, host boot measured), or a TPM 2.0 vtpmd attaches
 * to (attached-host.ts) — the host owning it (SRK), the protected storage service bound to the
 * host TCB, and the GVTPM manager serving the VMs' vTPMs from it. This is what `vtpmd serve` runs
 * and what scripted simulations open.
 *
 *   <state>/chip   the simulated chip's NV, the manufacturer's root, the host event log
 *   <state>/host   with an attached TPM: the event log of what vtpmd measured into it
 *   <state>/pss    the PSS database (level)
 *   <state>/vms    the VM registry (level)
 *   <state>/hwsrk-name   the host TPM's SRK Name, recorded at the first start (storage-root-pin.ts)
 */
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { ChipClient } from '../hwtpm/chip-client.ts';
import { attachHost } from '../hwtpm/attached-host.ts';
import { AttachedTpm, type AttachedTpmAddress } from '../hwtpm/attached-tpm.ts';
import type { ParsedCertificate } from '../hwtpm/credentials/x509.ts';
import type { HostPlatform } from '../hwtpm/host-tpm.ts';
import type { HierarchyAuth } from '../hwtpm/tpm2-client.ts';
import { bootLabHost } from '../hwtpm/lab-host.ts';
import { labPlatformIdentity } from '../hwtpm/platform-identity.ts';
import { processRsaKeyPool } from '../tpm/crypto/rsa-key-pool.ts';
import { openChipClient } from '../hwtpm/open-chip-client.ts';
import { ProtectedStorage } from '../pss/protected-storage.ts';
import { GvtpmManager, VtpmError } from '../vtpm/manager.ts';
import { ModelMeasurer } from '../vtpm/model-measurement.ts';
import { PROJECT_ROOT } from '../hwtpm/gvtpm-component-code.ts';
import type { MeasureHostBootOptions } from '../hwtpm/host-boot.ts';
import { bootLogTcb, planUpgrade, UpgradeError } from './code-upgrade.ts';
import { vmaPcrs } from '../vma/reference-values.ts';
import { PssRecovery, type RecoveryDelays } from './pss-recovery.ts';
import { pinStorageRoot } from './storage-root-pin.ts';

export interface HostOptions {
  readonly stateDir: string;
  /** Names the simulated host; its firmware and boot identities derive from it. Default: the hostname. */
  readonly hostId?: string;
  readonly logger?: Logger;
  /** Unload vTPMs idle this long (ms); 0 keeps them loaded. */
  readonly idleUnloadMs?: number;
  /** Attach to this TPM 2.0 as the host's TPM instead of simulating one. */
  readonly hostTpm?: AttachedTpmAddress;
  /** With `hostTpm`: the roots its EK certificates chain to. */
  readonly ekRoots?: readonly ParsedCertificate[];
  /** With `hostTpm`: the firmware's TCG event log (binary), which vtpmd's events are appended to. */
  readonly firmwareLog?: Buffer;
  /** With `hostTpm`: its owner and endorsement authValues, where the host's owner set them. */
  readonly hierarchyAuth?: HierarchyAuth;
  /** When to try again to bring back a PSS whose commit failed (pss-recovery.ts). */
  readonly recoveryDelays?: RecoveryDelays;
  /** Where the GVTPM components' and device models' code is measured from; default this checkout, the code running. */
  readonly measure?: MeasureHostBootOptions;
}

/** What an upgrade changes: vtpmd's code, the host's boot chain, or both. */
export interface UpgradeRequest {
  /** Root of the new vtpmd (where package.json is); default the running code. */
  readonly code?: string;
  /** A TCG event log (binary) of a boot of the updated boot chain; default the present chain. */
  readonly bootLog?: string;
}

/** What staging an upgrade sealed, for the control API. */
export interface StagedUpgrade {
  readonly code: string;
  readonly stagedAt: string;
  /** The PCRs the upgrade moves, with the values they will hold (hex). */
  readonly pcrs: Record<string, string>;
  /** Whether the key-binding key of hardware-backed vTPMs was staged too, or why not. */
  readonly keyBindingKey: string;
  /** The device model code digests whose vTPM state the new code's models may continue. */
  readonly models: readonly { readonly from: string; readonly to: string }[];
  /**
   * The host configuration the new code will measure as: the values of the PCRs a VMCA judges
   * (reference-values.ts), for the VMCA to approve before the vMA asks it for a delegation.
   */
  readonly configuration: Record<string, string>;
}

export class Host {
  private constructor(
    readonly platform: HostPlatform,
    readonly chipClient: ChipClient,
    readonly pss: ProtectedStorage,
    readonly manager: GvtpmManager,
    readonly hostId: string,
    readonly recovery: PssRecovery,
    private readonly measured: MeasureHostBootOptions,
  ) {}

  /**
   * Seals the PSS storage key and the key-binding key to the PCR values the vtpmd code under
   * `request.code` (default: the running code) and the boot chain of `request.bootLog` (default:
   * the present one) will give, beside their present bindings, and lets the new code's device
   * models continue the running models' vTPM state (code-upgrade.ts). Replaces an earlier staging.
   */
  async stageUpgrade(request: UpgradeRequest): Promise<StagedUpgrade> {
    const codeRoot = resolve(request.code ?? this.measured.rootDir ?? PROJECT_ROOT);
    const bootTcb = request.bootLog === undefined ? undefined : await bootLogTcb(request.bootLog, this.chipClient.pcrHash);
    const plan = await planUpgrade(this.chipClient, codeRoot, this.measured, bootTcb);
    const models = await this.manager.codeTransitionsTo(codeRoot);
    if (plan.changed.length === 0 && models.length === 0) {
      const what = bootTcb ? `the vtpmd code under ${codeRoot} and the boot log measure` : `the vtpmd code under ${codeRoot} measures`;
      throw new UpgradeError('unchanged', `${what} as the running host does: it opens the vTPMs as it is, with nothing staged`);
    }
    await this.cancelUpgrade();
    let stagedAt = new Date().toISOString();
    let keyBindingKey = 'unchanged: the new code measures as the running GVTPM manager does';
    if (plan.changed.length > 0) {
      stagedAt = (await this.pss.stageBinding(plan.expected)).stagedAt;
      keyBindingKey = 'staged';
      try {
        await this.manager.stageBinding(plan.expected);
      } catch (e) {
        if (!(e instanceof VtpmError)) throw e;
        keyBindingKey = `not staged: ${e.message}`;
      }
    }
    await this.pss.authorizeCodeTransitions(models);
    return {
      code: codeRoot,
      stagedAt,
      pcrs: hexValues(plan.expected, plan.changed),
      keyBindingKey,
      models: models.map(([from, to]) => ({ from: from.toString('hex'), to: to.toString('hex') })),
      configuration: hexValues(plan.expected, vmaPcrs()),
    };
  }

  /** Drops what stageUpgrade sealed and authorized; true when something was staged. */
  async cancelUpgrade(): Promise<boolean> {
    const pss = await this.pss.cancelStaged(await this.manager.runningCode());
    const kbk = await this.manager.cancelStaged();
    return pss || kbk;
  }

  static async open(opts: HostOptions): Promise<Host> {
    const hostId = opts.hostId ?? hostname();
    const platform = await openPlatform(opts, hostId);
    let pss: ProtectedStorage | undefined;
    try {
      const chipClient = await openChipClient(platform.tpm);
      await chipClient.takeOwnership();
      const srkName = await pinStorageRoot(platform, chipClient, opts.stateDir, opts.logger);
      pss = await ProtectedStorage.open({ dir: join(opts.stateDir, 'pss'), chip: chipClient, ...(opts.logger ? { logger: opts.logger } : {}) });
      if (pss.refusal) opts.logger?.error({ condition: pss.refusal.condition }, `the PSS refuses every vTPM: ${pss.refusal.message}`);
      const manager = await GvtpmManager.open({
        ...(opts.measure?.rootDir ? { measurer: new ModelMeasurer(opts.measure.rootDir) } : {}),
        registryDir: join(opts.stateDir, 'vms'),
        storage: pss,
        hardware: { chip: platform.tpm, client: chipClient, ...(platform.ekRoots.length > 0 ? { ekRoots: platform.ekRoots } : {}), ...(srkName ? { srkName } : {}) },
        ...(opts.idleUnloadMs !== undefined ? { idleUnloadMs: opts.idleUnloadMs } : {}),
        ...(opts.logger ? { logger: opts.logger } : {}),
      });
      return new Host(platform, chipClient, pss, manager, hostId, new PssRecovery(pss, manager, opts.logger, opts.recoveryDelays), opts.measure ?? {});
    } catch (e) {
      await pss?.close();
      await platform.close();
      throw e;
    }
  }

  /** Drains every vTPM, makes the PSS durable and the host TPM's NV current, and lets go of it. */
  async close(): Promise<void> {
    await this.recovery.close();
    await this.manager.close();
    await this.pss.close();
    await this.platform.close();
  }
}

function hexValues(values: ReadonlyMap<number, Buffer>, pcrs: readonly number[]): Record<string, string> {
  return Object.fromEntries(pcrs.map((pcr) => [String(pcr), values.get(pcr)!.toString('hex')]));
}

async function openPlatform(opts: HostOptions, hostId: string): Promise<HostPlatform> {
  if (opts.hostTpm) {
    const stateDir = join(opts.stateDir, 'host');
    await mkdir(stateDir, { recursive: true });
    const tpm = await AttachedTpm.open(opts.hostTpm, opts.hierarchyAuth);
    try {
      return await attachHost(tpm, {
        stateDir,
        ekRoots: opts.ekRoots ?? [],
        ...(opts.firmwareLog ? { firmwareLog: opts.firmwareLog } : {}),
        ...(opts.logger ? { logger: opts.logger } : {}),
        ...(opts.measure ? { measure: opts.measure } : {}),
      });
    } catch (e) {
      await tpm.close();
      throw e;
    }
  }
  // The chip makes hardware-backed vTPMs' RSA keys: off the main thread, as the models do.
  const lab = await bootLabHost({ stateDir: join(opts.stateDir, 'chip'), hostId, rsaKeys: processRsaKeyPool(), ...(opts.measure ? { boot: opts.measure } : {}) });
  return {
    tpm: lab.chip,
    name: 'simulated lab chip',
    ekRoots: [lab.ca.certificate],
    eks: lab.eks,
    eventLogPath: lab.eventLogPath,
    identity: labPlatformIdentity(hostId),
    close: () => lab.chip.flush(),
  };
}
