/**
 * The daemon's view of VMs: the manager's vTPMs plus what a running daemon adds — whether each
 * VM is running or stopped, its swtpm-protocol endpoint (data + control channel, so tpm2-tools,
 * tpm2-abrmd or QEMU can reach that VM's vTPM), and its metrics. Desired states and endpoint
 * ports are remembered, so a restarted daemon brings every running VM back where it was.
 */
import type { Logger } from 'pino';
import { startSwtpmServer, type SwtpmServer } from '../transport/index.ts';
import { startupCommand } from '../transport/tpm-frames.ts';
import type { ModelConfig } from '../vtpm/model-measurement.ts';
import type { VmRecord } from '../vtpm/registry.ts';
import type { Host, StagedUpgrade, UpgradeRequest } from './host.ts';
import type { Hypervisor } from '../hypervisor/hypervisor.ts';
import type { Authorities } from './authorities.ts';
import { VtpmError } from '../vtpm/manager.ts';
import { installVtpmEkCertificate } from '../vma/vtpm-ek.ts';
import type { VmCredentials } from '../vma/vma.ts';
import { VmMetrics, measured, renderMetrics } from './metrics.ts';

export type VmState = 'running' | 'stopped';

export interface VmView {
  name: string;
  dm: ModelConfig['design'];
  tpm: ModelConfig['tpm'];
  migratable: boolean;
  durability: ModelConfig['durability'];
  state: VmState;
  measurement: string;
  createdAt: string;
  endpoints: { swtpm?: { data: string; ctrl: string } };
}

export interface CreateVmRequest {
  name: string;
  dm?: ModelConfig['design'];
  tpm?: ModelConfig['tpm'];
  migratable?: boolean;
  durability?: ModelConfig['durability'];
}

export class VmService {
  private readonly endpoints = new Map<string, SwtpmServer>();
  private readonly metrics = new Map<string, VmMetrics>();

  constructor(
    readonly host: Host,
    readonly hypervisor: Hypervisor,
    private readonly logger: Logger,
    private readonly authorities?: Authorities,
  ) {}

  private get manager() {
    return this.host.manager;
  }

  /** Opens the endpoints of every VM that was running when the daemon last stopped. */
  async resume(): Promise<void> {
    for (const r of await this.manager.list()) {
      if ((await this.desiredState(r.name)) === 'running') {
        try {
          // The guest kept running while the daemon restarted: no reset.
          await this.openPartition(r.name, false);
          await this.openEndpoint(r.name);
        } catch (e) {
          this.logger.error({ vm: r.name, err: e }, 'could not bring the VM back; it stays stopped until started');
        }
      }
    }
  }

  async create(req: CreateVmRequest): Promise<VmView> {
    const config: Partial<ModelConfig> = {
      ...(req.dm !== undefined ? { design: req.dm } : {}),
      ...(req.tpm !== undefined ? { tpm: req.tpm } : {}),
      ...(req.migratable !== undefined ? { migratable: req.migratable } : {}),
      ...(req.durability !== undefined ? { durability: req.durability } : {}),
    };
    await this.manager.create(req.name, config);
    await this.openPartition(req.name, true);
    const device = await this.manager.device(req.name);
    if (device.family === 'tpm2') await this.issueCredentials(req.name, req.migratable ?? false);
    await this.setDesiredState(req.name, 'running');
    await this.openEndpoint(req.name);
    this.logger.info({ vm: req.name, dm: req.dm ?? 'software', tpm: req.tpm ?? '2.0' }, 'VM created');
    return this.show(req.name);
  }

  /**
   * The vMA certifies the vTPM's EK (stored in its standard NV index, where the guest's
   * tpm2_getekcertificate finds it) and issues its platform credential; both are kept with the
   * chain that signed them, since the vMA's keys change at every daemon start.
   */
  private async issueCredentials(name: string, migratable: boolean): Promise<void> {
    const vma = this.authorities?.vma;
    if (!vma) {
      this.logger.warn({ vm: name }, `VM created without credentials: ${this.authorities?.unavailable ?? 'no vMA'}`);
      return;
    }
    const exec = async (c: Uint8Array) => (await this.manager.device(name)).execute(c, 0);
    const ek = await installVtpmEkCertificate(exec, vma, { migratable });
    const creds = await vma.credentials(ek.certificate, name, migratable, this.authorities!.vmca.root.der);
    const stored = { ek: creds.ekCertificate.toString('base64'), platform: creds.platformCertificate.toString('base64'), chain: creds.chain.map((c) => c.toString('base64')), root: creds.vmcaRoot.toString('base64') };
    await this.manager.setMeta(`credentials/${name}`, Buffer.from(JSON.stringify(stored)));
  }

  /** The VM's credentials as the vMA issued them at its creation. */
  async credentials(name: string): Promise<VmCredentials> {
    const r = await this.manager.get(name);
    const raw = await this.manager.getMeta(`credentials/${name}`);
    if (!raw) {
      const why = r.config.tpm === '1.2' ? 'TPM 1.2 vTPMs get no vMA credentials' : (this.authorities?.unavailable ?? 'it was created while the vMA had no delegation');
      throw new VtpmError('unsupported', `VM '${name}' has no credentials: ${why}`);
    }
    const j = JSON.parse(raw.toString()) as { ek: string; platform: string; chain: string[]; root: string };
    const b = (s: string) => Buffer.from(s, 'base64');
    return { ekCertificate: b(j.ek), platformCertificate: b(j.platform), chain: j.chain.map(b), vmcaRoot: b(j.root) };
  }

  async list(): Promise<VmView[]> {
    return Promise.all((await this.manager.list()).map((r) => this.viewOf(r)));
  }

  async show(name: string): Promise<VmView> {
    return this.viewOf(await this.manager.get(name));
  }

  /** The guest shut down: its endpoint closes and its vTPM leaves memory (its state is in the PSS). */
  async stop(name: string): Promise<VmView> {
    await this.manager.get(name);
    await this.closeEndpoint(name);
    await this.closePartition(name);
    await this.manager.unload(name);
    await this.setDesiredState(name, 'stopped');
    this.logger.info({ vm: name }, 'VM stopped');
    return this.show(name);
  }

  async start(name: string): Promise<VmView> {
    await this.manager.get(name);
    await this.setDesiredState(name, 'running');
    if (!this.partitionRunning(name)) await this.openPartition(name, true);
    await this.openEndpoint(name);
    this.logger.info({ vm: name }, 'VM started');
    return this.show(name);
  }

  async destroy(name: string): Promise<void> {
    await this.manager.get(name);
    await this.closeEndpoint(name);
    await this.closePartition(name);
    await this.manager.destroy(name);
    this.metrics.delete(name);
    this.logger.info({ vm: name }, 'VM destroyed');
  }

  renderMetrics(): string {
    const chip = this.manager.chipContexts();
    const pss = this.host.pss.status();
    return renderMetrics(this.metrics, {
      vtpmd_vms_loaded: this.manager.loadedCount(),
      vtpmd_vms_running: this.endpoints.size,
      // VMs whose state the PSS keeps in memory; every other VM's is on disk only.
      vtpmd_pss_vms_held: pss.held,
      vtpmd_pss_sealing_thread: pss.sealingThread ? 1 : 0,
      vtpmd_pss_failed: pss.failure ? 1 : 0,
      // Commit failures the PSS recovered from without a restart.
      vtpmd_pss_recoveries: pss.recoveries,
      vtpmd_chip_saved_sessions: chip.sessions,
      vtpmd_chip_saved_key_contexts: chip.keys,
    });
  }

  async health(): Promise<{
    status: 'ok' | 'degraded';
    hostTpm: string;
    pssCounter: string | undefined;
    vms: number;
    running: number;
    pss: string;
    /** What the PSS found when it refuses every vTPM (PssViolation.detail: never key material). */
    pssRefusal: string | undefined;
    upgradeStagedAt: string | undefined;
  }> {
    const refusal = this.host.pss.refusal;
    const { failure, recoveryError, counterId, upgradeStagedAt } = this.host.pss.status();
    return {
      status: refusal || failure ? 'degraded' : 'ok',
      hostTpm: this.host.platform.name,
      // The host TPM's NV index this state directory's PSS holds: to release once the directory is thrown away.
      pssCounter: counterId === undefined ? undefined : `0x${counterId.toString(16).padStart(8, '0')}`,
      vms: (await this.manager.list()).length,
      running: this.endpoints.size,
      pss: refusal ? `refusing every vTPM (${refusal.condition})` : failure ? failing(failure, recoveryError, this.host.recovery.nextDelayMs) : 'ok',
      pssRefusal: refusal?.detail,
      // Set from staging until the staged code first runs (code-upgrade.ts).
      upgradeStagedAt,
    };
  }

  /**
   * Stages the upgrade (Host.stageUpgrade) and has the embedded VMCA approve the configuration the
   * host will measure as, as staging is the operator approving that code: the vMA of the new code
   * then gets its delegation. An external VMCA would be given `configuration` to approve.
   */
  async stageUpgrade(request: UpgradeRequest): Promise<StagedUpgrade> {
    const earlier = this.host.pss.status().upgradeStagedAt;
    const staged = await this.host.stageUpgrade(request);
    if (earlier) await this.authorities?.vmca.withdrawConfiguration(upgradeConfigurationName(this.host, earlier));
    // New model code alone measures as the running configuration does: nothing new to approve.
    if (Object.keys(staged.pcrs).length > 0) await this.authorities?.vmca.approve({ name: upgradeConfigurationName(this.host, staged.stagedAt), pcrs: staged.configuration });
    this.logger.info({ code: staged.code, pcrs: Object.keys(staged.pcrs), keyBindingKey: staged.keyBindingKey }, 'upgrade staged: the keys are sealed to the new code as well');
    return staged;
  }

  async cancelUpgrade(): Promise<{ cancelled: boolean }> {
    const stagedAt = this.host.pss.status().upgradeStagedAt;
    const cancelled = await this.host.cancelUpgrade();
    if (stagedAt) await this.authorities?.vmca.withdrawConfiguration(upgradeConfigurationName(this.host, stagedAt));
    if (cancelled) this.logger.info('staged upgrade cancelled: the keys are sealed to the running code only');
    return { cancelled };
  }

  /** Closes every endpoint and partition, waiting for the vTPMs' commands in flight; the host closes next. */
  async close(): Promise<void> {
    for (const name of [...this.endpoints.keys()]) await this.closeEndpoint(name);
    await this.hypervisor.stop();
  }

  private partitionRunning(name: string): boolean {
    return this.hypervisor.list().some((p) => p.name === name && p.state === 'running');
  }

  /**
   * The VM's partition in the hypervisor, its vTPM kept when the partition ends. A booting guest
   * gets a platform reset and its firmware's Startup; a guest that kept running gets neither.
   */
  private async openPartition(name: string, boot: boolean): Promise<void> {
    if (this.partitionRunning(name)) return;
    await this.hypervisor.createPartition(name, { vtpm: { name } }, 'keep');
    await this.hypervisor.startPartition(name, { reset: boot });
    if (boot) {
      const device = await this.manager.device(name);
      await device.execute(startupCommand(device.family, 'clear'), 0);
    }
  }

  private async closePartition(name: string): Promise<void> {
    if (this.partitionRunning(name)) await this.hypervisor.terminate(name);
  }

  private async viewOf(r: VmRecord): Promise<VmView> {
    const ep = this.endpoints.get(r.name);
    return {
      name: r.name,
      dm: r.config.design,
      tpm: r.config.tpm,
      migratable: r.config.migratable,
      durability: r.config.durability,
      state: ep ? 'running' : 'stopped',
      // What the model measures as under the code running now (the registry keeps the one at creation).
      measurement: (await this.manager.measure(r.config)).toString('hex'),
      createdAt: r.createdAt,
      endpoints: ep ? { swtpm: { data: ep.data, ctrl: ep.ctrl } } : {},
    };
  }

  private async openEndpoint(name: string): Promise<void> {
    if (this.endpoints.has(name)) return;
    const device = await this.manager.device(name);
    let m = this.metrics.get(name);
    if (!m) this.metrics.set(name, (m = new VmMetrics()));
    const log = this.logger.child({ vm: name });
    const previous = await this.lastPort(name);
    const open = (port: number) =>
      startSwtpmServer(measured(device, m), {
        data: { type: 'tcp', port, bindaddr: '127.0.0.1' },
        ctrl: { type: 'tcp', port: port === 0 ? 0 : port + 1, bindaddr: '127.0.0.1' },
        // The vTPM is a running TPM: the guest's firmware started it long ago.
        flags: { notNeedInit: true },
        logger: log,
      });
    let server: SwtpmServer;
    try {
      server = await open(previous ?? 0);
    } catch (e) {
      if (previous === undefined) throw e;
      log.warn({ port: previous }, 'the VM\'s previous port is taken; it gets a new one');
      server = await open(0);
    }
    this.endpoints.set(name, server);
    await this.host.manager.setMeta(`port/${name}`, Buffer.from(String(new URL(server.data).port)));
  }

  private async closeEndpoint(name: string): Promise<void> {
    const ep = this.endpoints.get(name);
    if (!ep) return;
    this.endpoints.delete(name);
    await ep.close();
    await (await this.manager.device(name)).flush();
  }

  private async lastPort(name: string): Promise<number | undefined> {
    const b = await this.manager.getMeta(`port/${name}`);
    const n = b ? Number(b.toString()) : NaN;
    return Number.isInteger(n) && n > 0 && n < 65535 ? n : undefined;
  }

  private async desiredState(name: string): Promise<VmState> {
    return (await this.manager.getMeta(`state/${name}`))?.toString() === 'stopped' ? 'stopped' : 'running';
  }

  private async setDesiredState(name: string, state: VmState): Promise<void> {
    await this.manager.setMeta(`state/${name}`, Buffer.from(state));
  }
}

function upgradeConfigurationName(host: Host, stagedAt: string): string {
  return `host ${host.hostId} (${host.platform.name}) with the vtpmd upgrade staged at ${stagedAt}`;
}

/** /health's account of a failed commit: no vTPM saves until the PSS recovers (pss-recovery.ts). */
function failing(failure: string, recoveryError: string | undefined, retryMs: number): string {
  const last = recoveryError ? ` (the last attempt: ${recoveryError})` : '';
  return `a commit failed (${failure}); no vTPM saves until the PSS recovers, tried again within ${Math.ceil(retryMs / 1000)} s${last}`;
}
