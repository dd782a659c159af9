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
import type { Host } from './host.ts';
import { VmMetrics, measured, renderMetrics } from './metrics.ts';

export type VmState = 'running' | 'stopped';

export interface VmView {
  name: string;
  dm: ModelConfig['design'];
  tpm: ModelConfig['tpm'];
  migratable: boolean;
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
}

export class VmService {
  private readonly endpoints = new Map<string, SwtpmServer>();
  private readonly metrics = new Map<string, VmMetrics>();

  constructor(
    readonly host: Host,
    private readonly logger: Logger,
  ) {}

  private get manager() {
    return this.host.manager;
  }

  /** Opens the endpoints of every VM that was running when the daemon last stopped. */
  async resume(): Promise<void> {
    for (const r of await this.manager.list()) {
      if ((await this.desiredState(r.name)) === 'running') {
        try {
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
    };
    await this.manager.create(req.name, config);
    // As the guest's firmware does at its first boot; a later CMD_INIT from QEMU resets it again.
    const device = await this.manager.device(req.name);
    await device.execute(startupCommand(device.family, 'clear'), 0);
    await this.setDesiredState(req.name, 'running');
    await this.openEndpoint(req.name);
    this.logger.info({ vm: req.name, dm: req.dm ?? 'software', tpm: req.tpm ?? '2.0' }, 'VM created');
    return this.show(req.name);
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
    await this.manager.unload(name);
    await this.setDesiredState(name, 'stopped');
    this.logger.info({ vm: name }, 'VM stopped');
    return this.show(name);
  }

  async start(name: string): Promise<VmView> {
    await this.manager.get(name);
    await this.setDesiredState(name, 'running');
    await this.openEndpoint(name);
    this.logger.info({ vm: name }, 'VM started');
    return this.show(name);
  }

  async destroy(name: string): Promise<void> {
    await this.manager.get(name);
    await this.closeEndpoint(name);
    await this.manager.destroy(name);
    this.metrics.delete(name);
    this.logger.info({ vm: name }, 'VM destroyed');
  }

  renderMetrics(): string {
    return renderMetrics(this.metrics, { vtpmd_vms_loaded: this.manager.loadedCount(), vtpmd_vms_running: this.endpoints.size });
  }

  async health(): Promise<{ status: 'ok' | 'degraded'; vms: number; running: number; pss: string }> {
    const refusal = this.host.pss.refusal;
    return {
      status: refusal ? 'degraded' : 'ok',
      vms: (await this.manager.list()).length,
      running: this.endpoints.size,
      pss: refusal ? `refusing every vTPM (${refusal.condition})` : 'ok',
    };
  }

  /** Closes every endpoint and waits for the vTPMs' commands in flight; the host closes next. */
  async close(): Promise<void> {
    for (const name of [...this.endpoints.keys()]) await this.closeEndpoint(name);
  }

  private async viewOf(r: VmRecord): Promise<VmView> {
    const ep = this.endpoints.get(r.name);
    return {
      name: r.name,
      dm: r.config.design,
      tpm: r.config.tpm,
      migratable: r.config.migratable,
      state: ep ? 'running' : 'stopped',
      measurement: r.measurement,
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
