/** The credentials `GET /vms/NAME/credentials` returns, written out as the vMA names its files. */
import { fromPem } from '../hwtpm/credentials/x509.ts';
import { VM_CREDENTIAL_FILES, writeVmCredentials } from '../vma/write-credentials.ts';

export interface CredentialsResponse {
  ek: string;
  platform: string;
  chain: string[];
  vmcaRoot: string;
}

function der(pem: string, what: string): Buffer {
  const d = fromPem(pem);
  if (!d) throw new Error(`the daemon's ${what} is not a PEM certificate`);
  return d;
}

/** Writes ek.pem, platform.pem, chain.pem and vmca-root.pem into `dir`; returns the file names. */
export async function writeCredentialFiles(dir: string, c: CredentialsResponse): Promise<string[]> {
  await writeVmCredentials(dir, {
    ekCertificate: der(c.ek, 'EK certificate'),
    platformCertificate: der(c.platform, 'platform certificate'),
    chain: c.chain.map((p) => der(p, 'chain certificate')),
    vmcaRoot: der(c.vmcaRoot, 'VMCA root'),
  });
  return Object.values(VM_CREDENTIAL_FILES);
}
