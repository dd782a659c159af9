/**
 * The lab's attestation authorities as the daemon embeds them: the VMCA and the privacy CA (each
 * its own component with its own root and directory, standing in for the external services a
 * real deployment would reach) and the host's vMA, delegated by the VMCA at every daemon start.
 *
 * On its first start the embedded VMCA approves the host configuration it finds (an operator
 * approving the lab host as installed); after that, a host whose measured configuration the
 * VMCA did not approve gets no delegation, and its VMs get no credentials until it does.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { HANDLES } from '../hwtpm/tpm2-templates.ts';
import { parseCrl } from '../vma/crl.ts';
import { PrivacyCa } from '../vma/privacy-ca.ts';
import { configurationFromEventLog } from '../vma/reference-values.ts';
import { Vmca } from '../vma/vmca.ts';
import { VirtualManufacturerAuthority } from '../vma/vma.ts';
import type { Host } from './host.ts';

export interface Authorities {
  readonly vmca: Vmca;
  readonly privacyCa: PrivacyCa;
  /** Undefined when the VMCA refused to delegate: `unavailable` says why. */
  readonly vma: VirtualManufacturerAuthority | undefined;
  readonly unavailable: string | undefined;
}

export async function openAuthorities(stateDir: string, host: Host, hostId: string, logger?: Logger): Promise<Authorities> {
  let privacyCa: PrivacyCa | undefined;
  const vmca = await Vmca.open({ dir: join(stateDir, 'vmca'), privacyCaRoots: () => (privacyCa ? [privacyCa.root] : []) });
  privacyCa = await PrivacyCa.open({
    dir: join(stateDir, 'privacy-ca'),
    ekTrust: { roots: [...host.platform.ekRoots, vmca.root], crls: async () => [parseCrl(await vmca.crl())], requireCrlFrom: [vmca.root] },
  });
  const eventLog = await readFile(host.platform.eventLogPath);
  if (vmca.approved.length === 0) {
    await vmca.approve(configurationFromEventLog(`host ${hostId} (${host.platform.name}) as installed`, eventLog));
    logger?.info({ host: hostId }, 'the VMCA approved this host configuration (first start)');
  }
  const ek = host.platform.eks.find((e) => e.handle === HANDLES.EK_ECC) ?? host.platform.eks[0];
  try {
    if (!ek) throw new Error("the host TPM holds no certified EK, so the privacy CA cannot certify the vMA's AIK");
    const vma = await VirtualManufacturerAuthority.open({ chip: host.platform.tpm, hostId, eventLog, ek: { handle: ek.handle, certificate: ek.certificate }, privacyCa, vmca, platform: host.platform.identity });
    return { vmca, privacyCa, vma, unavailable: undefined };
  } catch (e) {
    const why = `the vMA has no delegation from the VMCA: ${(e as Error).message}`;
    logger?.error(why);
    return { vmca, privacyCa, vma: undefined, unavailable: why };
  }
}
