/**
 * `vtpmd serve`'s lifecycle: open the lab host's stack from the state directory, bring back the
 * VMs that were running, serve the control API; on stop, close the API first (no new requests),
 * then every VM endpoint (draining the commands in flight), then the PSS and the chip.
 */
import type { Logger } from 'pino';
import { startControlApi, type ApiAddress } from './control-api.ts';
import { Host, type HostOptions } from './host.ts';
import { VmService } from './vm-service.ts';
import { openAuthorities } from './authorities.ts';
import { Hypervisor } from '../hypervisor/hypervisor.ts';

export interface DaemonOptions {
  stateDir: string;
  api: ApiAddress;
  logger: Logger;
  hostId?: string;
  idleUnloadMs?: number;
  /** Attach to this TPM 2.0 instead of simulating the host's chip: its EK roots and firmware event log. */
  hostTpm?: Pick<HostOptions, 'hostTpm' | 'ekRoots' | 'firmwareLog' | 'hierarchyAuth'>;
}

export interface Daemon {
  readonly apiUrl: string;
  readonly service: VmService;
  stop(): Promise<void>;
}

export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const host = await Host.open({
    stateDir: opts.stateDir,
    logger: opts.logger,
    ...(opts.hostId !== undefined ? { hostId: opts.hostId } : {}),
    ...(opts.idleUnloadMs !== undefined ? { idleUnloadMs: opts.idleUnloadMs } : {}),
    ...opts.hostTpm,
  });
  const authorities = await openAuthorities(opts.stateDir, host, host.hostId, opts.logger);
  // The hypervisor reserves the TPM partition that hosts the vTPMs before any guest exists.
  const hypervisor = await Hypervisor.start({ manager: host.manager });
  const service = new VmService(host, hypervisor, opts.logger, authorities);
  try {
    await service.resume();
    const api = await startControlApi(service, opts.api, opts.logger);
    return {
      apiUrl: api.url,
      service,
      async stop() {
        await api.close();
        await service.close();
        await host.close();
      },
    };
  } catch (e) {
    await service.close().catch(() => undefined);
    await host.close().catch(() => undefined);
    throw e;
  }
}
