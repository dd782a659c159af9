/** One lab host with its VMCA, privacy CA, vMA and a verifier, shared by the vMA tests. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Host } from '../../src/daemon/host.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { HANDLES } from '../../src/hwtpm/tpm2-templates.ts';
import { parseCrl } from '../../src/vma/crl.ts';
import { PrivacyCa } from '../../src/vma/privacy-ca.ts';
import { configurationFromEventLog } from '../../src/vma/reference-values.ts';
import { Verifier } from '../../src/vma/verifier.ts';
import { Vmca } from '../../src/vma/vmca.ts';
import { VirtualManufacturerAuthority } from '../../src/vma/vma.ts';
import { installVtpmEkCertificate, type InstalledEk } from '../../src/vma/vtpm-ek.ts';

export interface Lab {
  readonly dir: string;
  readonly host: Host;
  readonly vmca: Vmca;
  readonly privacyCa: PrivacyCa;
  readonly vma: VirtualManufacturerAuthority;
  readonly verifier: Verifier;
  readonly hostEventLog: Buffer;
  readonly configuration: string;
  vm(name: string, migratable: boolean): Promise<{ tpm: Tpm2Client; exec: (c: Uint8Array) => Promise<Uint8Array>; ek: InstalledEk }>;
  close(): Promise<void>;
}

export async function openLab(): Promise<Lab> {
  const dir = mkdtempSync(join(tmpdir(), 'vtpmd-vma-'));
  const host = await Host.open({ stateDir: join(dir, 'host'), hostId: 'lab-vma', idleUnloadMs: 0 });
  const hostEventLog = readFileSync(host.platform.eventLogPath);
  let privacyCa: PrivacyCa | undefined;
  const vmca = await Vmca.open({ dir: join(dir, 'vmca'), privacyCaRoots: () => (privacyCa ? [privacyCa.root] : []) });
  privacyCa = await PrivacyCa.open({
    dir: join(dir, 'privacy-ca'),
    ekTrust: { roots: [...host.platform.ekRoots, vmca.root], crls: async () => [parseCrl(await vmca.crl())], requireCrlFrom: [vmca.root] },
  });
  const configuration = 'lab-vma baseline';
  await vmca.approve(configurationFromEventLog(configuration, hostEventLog));
  const ek = host.platform.eks.find((e) => e.handle === HANDLES.EK_ECC)!;
  const vma = await VirtualManufacturerAuthority.open({
    chip: host.platform.tpm,
    hostId: 'lab-vma',
    eventLog: hostEventLog,
    ek: { handle: ek.handle, certificate: ek.certificate },
    privacyCa,
    vmca,
  });
  const verifier = new Verifier({
    privacyCaRoots: [privacyCa.root],
    manufacturerRoots: [...host.platform.ekRoots],
    vmcaRoots: [vmca.root],
    crls: async () => [await vmca.crl()],
  });
  return {
    dir,
    host,
    vmca,
    privacyCa,
    vma,
    verifier,
    hostEventLog,
    configuration,
    async vm(name, migratable) {
      await host.manager.create(name, { design: 'software', migratable });
      const exec = (c: Uint8Array) => host.manager.device(name).then((d) => d.execute(c, 0));
      const tpm = new Tpm2Client(exec);
      await tpm.startup();
      return { tpm, exec, ek: await installVtpmEkCertificate(exec, vma, { migratable }) };
    },
    async close() {
      await host.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
