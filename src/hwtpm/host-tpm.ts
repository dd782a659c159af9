/**
 * What the layers above the host's TPM (the chip clients, the PSS, the GVTPM manager's key
 * service, the vMA) need of it: commands in, responses out, and turns during which nobody else's
 * commands come in between. The simulated lab chip (chip.ts) is one; a TPM reached over the swtpm
 * socket interface (attached-tpm.ts) is another.
 */
import type { Personality } from './chip.ts';
import type { ParsedCertificate } from './credentials/x509.ts';
import { Tpm2Client, type Exec, type HierarchyAuth } from './tpm2-client.ts';
import type { PlatformIdentity } from './platform-identity.ts';

export interface HostTpm {
  readonly family: Personality;
  /** False only while a simulated chip is switched off: firmware (startChip) must power it on. */
  readonly powered: boolean;
  /** The hierarchy authValues its clients use (Tpm2Client's second argument); absent when empty. */
  readonly hierarchyAuth?: HierarchyAuth;
  powerOn(): Promise<void>;
  /** One command at `locality`, between anyone else's. */
  execute(command: Uint8Array, locality: number): Promise<Uint8Array>;
  /** Runs `job` with the TPM to itself: `exec` sends commands without anyone else's in between. */
  exclusive<T>(job: (exec: Exec) => Promise<T>, locality?: number): Promise<T>;
  /** Makes everything the TPM acknowledged survive a power loss, and releases what the host holds of it. */
  flush(): Promise<void>;
}

/** Runs `job` with a TPM 2.0 host TPM to itself, through a client that holds its hierarchy authorizations. */
export function tpm2Turn<T>(tpm: HostTpm, job: (client: Tpm2Client) => Promise<T>): Promise<T> {
  return tpm.exclusive((exec) => job(new Tpm2Client(exec, tpm.hierarchyAuth)));
}

/** An EK the host's TPM holds persistently, with the certificate its manufacturer stored beside it. */
export interface HostEk {
  readonly handle: number;
  readonly certificateIndex: number;
  readonly certificate: Buffer;
}

/** The host's TPM as the host hands it to vtpmd: started, measured, its EKs and event log found. */
export interface HostPlatform {
  readonly tpm: HostTpm;
  /** Which TPM it is, for operators: "simulated lab chip" or the attached TPM's address. */
  readonly name: string;
  /** Roots the EK certificates chain to: whom the host trusts to vouch for its TPM. */
  readonly ekRoots: readonly ParsedCertificate[];
  readonly eks: readonly HostEk[];
  /** The TCG event log whose replay gives the TPM's PCRs. */
  readonly eventLogPath: string;
  /** What platform certificates say the host is. */
  readonly identity: PlatformIdentity;
  /** Makes the TPM's state durable and lets go of it. */
  close(): Promise<void>;
}
