/**
 * Host-level failures of the hypervisor: a bad request from whoever drives it (unknown or
 * duplicate partition, wrong lifecycle state), or a simulated guest driver that gives up. A guest
 * breaking the CRB protocol is not one of these: the device answers it as the spec defines.
 */
export type HypervisorErrorCode = 'not-started' | 'duplicate-partition' | 'unknown-partition' | 'bad-state' | 'bad-config' | 'terminated';

export class HypervisorError extends Error {
  constructor(
    readonly code: HypervisorErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'HypervisorError';
  }
}

/** What the simulated guest driver reports, as Linux's tpm_crb returns -E2BIG, -EIO, -ETIME. */
export type GuestErrorCode = 'command-too-large' | 'device-error' | 'locality-not-granted' | 'bad-response';

export class GuestError extends Error {
  constructor(
    readonly code: GuestErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'GuestError';
  }
}
