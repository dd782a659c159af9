/**
 * Logs a device's host-level failures without flooding the log. A host that cannot serve a vTPM
 * (its PSS takes no saves, its TPM is gone) fails every command the guest sends, so once a
 * failure is logged, the same failure again is only counted for a while; the next line logged
 * says how many were left out.
 */
import type { Logger } from 'pino';

const QUIET_MS = 10_000;

export class FailureLog {
  private last: string | undefined;
  private lastAt = 0;
  private omitted = 0;

  constructor(
    private readonly logger: Logger,
    private readonly quietMs = QUIET_MS,
    private readonly now: () => number = Date.now,
  ) {}

  /** A command the device failed to run, answered with a failure response. */
  commandFailed(err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    const at = this.now();
    if (message === this.last && at - this.lastAt < this.quietMs) {
      this.omitted++;
      return;
    }
    const omitted = this.omitted;
    this.last = message;
    this.lastAt = at;
    this.omitted = 0;
    this.logger.error({ err, ...(omitted > 0 ? { omitted } : {}) }, 'the device failed at host level while executing a command; answered with a failure response');
  }
}
