/**
 * Brings the PSS back after a failed commit, without a restart of vtpmd. A commit fails when the
 * host TPM or the disk stops answering; both often come back (a resource manager restarted, a
 * TPM behind a socket reconnected, space freed on the disk). Until then every vTPM that saves
 * answers TPM_RC_FAILURE. Recovery is tried a second after the failure, then at doubling
 * intervals up to 30 s, until it works; then every vTPM still in memory hands its state to
 * the PSS again, since what batched vTPMs saved may have been in the windows that failed.
 */
import type { Logger } from 'pino';
import type { ProtectedStorage } from '../pss/protected-storage.ts';
import type { GvtpmManager } from '../vtpm/manager.ts';

export interface RecoveryDelays {
  /** Before the first attempt. Default 1 s. */
  readonly firstMs: number;
  /** Longest wait between attempts. Default 30 s. */
  readonly maxMs: number;
}

export const DEFAULT_RECOVERY_DELAYS: RecoveryDelays = { firstMs: 1_000, maxMs: 30_000 };

export class PssRecovery {
  private timer: NodeJS.Timeout | undefined;
  private delay: number;
  private attempt: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly pss: ProtectedStorage,
    private readonly manager: GvtpmManager,
    private readonly logger: Logger | undefined,
    private readonly delays: RecoveryDelays = DEFAULT_RECOVERY_DELAYS,
  ) {
    this.delay = delays.firstMs;
    pss.onFailure(() => this.schedule());
  }

  /** The wait before the next attempt, while the PSS is failing. */
  get nextDelayMs(): number {
    return this.delay;
  }

  private schedule(): void {
    if (this.closed || this.timer || this.attempt) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.attempt = this.tryOnce().finally(() => {
        this.attempt = undefined;
        // Still failing, or failed again while the vTPMs saved again.
        if (this.pss.status().failure) this.schedule();
      });
    }, this.delay);
    this.timer.unref();
  }

  private async tryOnce(): Promise<void> {
    let recovered: boolean;
    try {
      recovered = await this.pss.recover();
    } catch (e) {
      // Closed under us: the daemon is stopping.
      this.logger?.debug({ err: e }, 'PSS recovery stopped');
      return;
    }
    if (!recovered) {
      this.delay = Math.min(this.delay * 2, this.delays.maxMs);
      this.logger?.warn({ why: this.pss.status().recoveryError, retryInMs: this.delay }, 'the PSS is still failing');
      return;
    }
    this.delay = this.delays.firstMs;
    const failed = await this.manager.saveLoadedAgain();
    if (failed === 0) this.logger?.info('the PSS recovered; vTPMs save again');
    else this.logger?.warn({ failed }, 'the PSS recovered, but some loaded vTPMs could not save again and will reload from it');
  }

  /** Stops trying; waits for an attempt in progress. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    await this.attempt;
  }
}
