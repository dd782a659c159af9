/** A VM's credentials as files, for `vtpmd vm credentials NAME --out DIR`. */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../hwtpm/credentials/atomic-file.ts';
import { toPem } from '../hwtpm/credentials/x509.ts';
import type { VmCredentials } from './vma.ts';

export const VM_CREDENTIAL_FILES = { ek: 'ek.pem', platform: 'platform.pem', chain: 'chain.pem', root: 'vmca-root.pem' } as const;

/** Writes ek.pem, platform.pem, chain.pem (delegation and intermediates) and vmca-root.pem into `dir`. */
export async function writeVmCredentials(dir: string, creds: VmCredentials): Promise<void> {
  await mkdir(dir, { recursive: true });
  await writeFileAtomic(join(dir, VM_CREDENTIAL_FILES.ek), toPem(creds.ekCertificate));
  await writeFileAtomic(join(dir, VM_CREDENTIAL_FILES.platform), toPem(creds.platformCertificate));
  await writeFileAtomic(join(dir, VM_CREDENTIAL_FILES.chain), creds.chain.map((c) => toPem(c)).join(''));
  await writeFileAtomic(join(dir, VM_CREDENTIAL_FILES.root), toPem(creds.vmcaRoot));
}
