/**
 * Why the PSS refuses. A `PssViolation` is a security condition about stored state: it names the
 * vTPM (when it concerns one) and the condition that failed, so the manager can stop exactly that
 * vTPM and tell the operator what to restore. A `PssError` is a host-level failure (closed, I/O,
 * a database of an unknown format). Neither ever carries key material or NVM contents.
 */

/**
 * The five conditions a restore must meet, split so each refusal says which one failed:
 * the NVM belongs to the requesting model ('wrong-owner', 'wrong-measurement'), is its most recent
 * ('not-latest', and 'rollback' for the database as a whole), is unmodified ('modified'), was made
 * by this PSS ('foreign'), and the TCB is unchanged ('tcb-changed'). Before any of them, the chip
 * asked to unseal the storage key must be the one the host trusts ('untrusted-chip'): the key
 * crosses the bus encrypted to the chip's SRK, so it is never sent for an SRK not pinned.
 */
export type PssCondition = 'tcb-changed' | 'rollback' | 'foreign' | 'modified' | 'wrong-owner' | 'wrong-measurement' | 'not-latest' | 'untrusted-chip';

const ADVICE: Record<PssCondition, string> = {
  'tcb-changed':
    'the host TCB or GVTPM components differ from those the PSS storage key is bound to; boot the configuration the PSS was set up under, with the vtpmd whose components it measured — new vtpmd code, or a new boot chain with the event log of its boot (--boot-log), is let in by `vtpmd upgrade stage` from the running daemon before it runs',
  rollback:
    "the PSS database is older than the chip's monotonic counter allows (restored from a copy or replaced); put the latest database back — this one cannot be trusted to hold the vTPMs' latest state",
  foreign: 'the state was made by another PSS; bring a vTPM from another host through migration, never by copying its blob',
  modified: 'the stored state was altered or truncated; restore the latest copy of the PSS database or re-provision the vTPM',
  'wrong-owner': "the stored blob belongs to another VM (blobs swapped or copied between VMs); restore this VM's own blob",
  'wrong-measurement': 'the state was saved by a vTPM model with another measurement (other code or configuration); start the VM with the model that saved its state — new vtpmd code continues it only when `vtpmd upgrade stage` ran first',
  'not-latest': "an older copy of the VM's state replaced the latest one; restore the latest copy of the PSS database",
  'untrusted-chip':
    "the host TPM's storage root key is not the one proven beside its certified EK (--ek-ca) or recorded at the state directory's first start; check what sits between vtpmd and the TPM — a TPM cleared or replaced cannot release this PSS's keys at all",
};

export class PssViolation extends Error {
  constructor(
    readonly condition: PssCondition,
    /** The vTPM refused; undefined when the condition concerns the whole PSS (found at open). */
    readonly vmId: string | undefined,
    /** What was found, without the advice: safe to show (never key material or NVM). */
    readonly detail: string,
  ) {
    super(`${vmId === undefined ? 'PSS' : `vTPM of VM ${JSON.stringify(vmId)}`} refused (${condition}): ${detail}; ${ADVICE[condition]}`);
    this.name = 'PssViolation';
  }

  /** The same PSS-wide condition, reported against the VM that asked. */
  forVm(vmId: string): PssViolation {
    return new PssViolation(this.condition, vmId, this.detail);
  }
}

export type PssErrorCode = 'closed' | 'commit-failed' | 'bad-database' | 'bad-request';

export class PssError extends Error {
  constructor(
    readonly code: PssErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'PssError';
  }
}
