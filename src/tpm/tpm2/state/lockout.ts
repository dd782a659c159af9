import { RH } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import type { DaState } from './nv-state.ts';

/**
 * The manufacturer's dictionary-attack parameters (the reference implementation's
 * DAPreInstall_Init), which TPM2_Clear restores.
 */
export const DA_DEFAULTS: Readonly<DaState> = { failedTries: 0, maxTries: 3, recoveryTime: 1000, lockoutRecovery: 1000, lockoutAuthEnabled: true };

/**
 * Dictionary-attack protection (Part 1, 19.8). Failed authorizations of protected entities
 * count up to maxTries, after which those entities are refused with TPM_RC_LOCKOUT; one failure
 * is forgiven every recoveryTime seconds of powered time without a new failure. A failed
 * lockoutAuth blocks lockoutAuth itself (without counting in failedTries) for lockoutRecovery
 * seconds, or until the next TPM Reset when that is zero.
 *
 * Timers are measured on the clock the engine passes in (milliseconds). Should that clock go
 * back — TPM2_Clear sets Clock to zero, Time restarts at every power-on — the timers restart
 * from the new reading, as the reference implementation restarts them at Startup: a lockout is
 * never shortened by it.
 */
export class Lockout {
  /** Reading at which self-healing counts from: the last failure, or the last restart of timers. */
  private healingFrom: bigint;
  /** Reading at which lockoutAuth last failed. */
  private lockoutFailedAt: bigint;
  /** TPM_PERMANENT lockOutAuthEnabled, kept in NV so a restart does not lift a block. */
  private get lockoutAuthEnabled(): boolean {
    return this.da().lockoutAuthEnabled !== false;
  }

  private set lockoutAuthEnabled(v: boolean) {
    if (this.lockoutAuthEnabled === v) return;
    this.da().lockoutAuthEnabled = v;
    this.persist();
  }
  /** The last clock reading seen, to notice the clock going back. */
  private last: bigint;

  constructor(
    private readonly da: () => DaState,
    private readonly clock: () => bigint,
    private readonly persist: () => void,
  ) {
    this.last = this.healingFrom = this.lockoutFailedAt = clock();
  }

  /** The clock, with both timers restarted if it went back since the last reading. */
  private now(): bigint {
    const t = this.clock();
    if (t < this.last) this.healingFrom = this.lockoutFailedAt = t;
    this.last = t;
    return t;
  }

  /**
   * TPM Reset (Startup after a Shutdown(CLEAR) or a power loss): a lockoutAuth block with no
   * recovery time ends; the self-healing and lockout-recovery timers restart.
   */
  onReset(): void {
    const t = this.now();
    this.healingFrom = this.lockoutFailedAt = t;
    if (this.da().lockoutRecovery === 0) this.lockoutAuthEnabled = true;
  }

  /** Forgives the failures whose recovery time has passed, and re-enables lockoutAuth when due. */
  private heal(): void {
    const da = this.da();
    const now = this.now();
    if (da.failedTries !== 0) {
      if (da.recoveryTime === 0) {
        // DA protection is off: nothing stays counted.
        da.failedTries = 0;
        this.persist();
      } else {
        if (da.failedTries > da.maxTries) {
          // maxTries was lowered below the count: the count never exceeds it.
          da.failedTries = da.maxTries;
          this.persist();
        }
        const step = BigInt(da.recoveryTime) * 1000n;
        const forgiven = (now - this.healingFrom) / step;
        if (forgiven > 0n) {
          da.failedTries = forgiven >= BigInt(da.failedTries) ? 0 : da.failedTries - Number(forgiven);
          this.healingFrom += forgiven * step;
          this.persist();
        }
      }
    }
    if (!this.lockoutAuthEnabled && da.lockoutRecovery !== 0 && now - this.lockoutFailedAt >= BigInt(da.lockoutRecovery) * 1000n) {
      this.lockoutAuthEnabled = true;
    }
  }

  /** TPMA_PERMANENT.inLockout: DA-protected entities other than lockoutAuth are refused. */
  get inLockout(): boolean {
    this.heal();
    const da = this.da();
    return da.failedTries >= da.maxTries;
  }

  /** TPM_PT_LOCKOUT_COUNTER. */
  get failedTries(): number {
    this.heal();
    return this.da().failedTries;
  }

  /** Whether lockoutAuth may be used now (a failed lockoutAuth blocks it for lockoutRecovery). */
  get lockoutAuthAvailable(): boolean {
    this.heal();
    return this.lockoutAuthEnabled;
  }

  /**
   * Refuses an authorization attempt that DA protection forbids right now. lockoutAuth is
   * refused only while its own block lasts: it stays usable in lockout, to reset it.
   */
  checkAvailable(handle: number, protectedEntity: boolean): void {
    if (handle === RH.LOCKOUT) {
      if (!this.lockoutAuthAvailable) throw new TpmError(RC.LOCKOUT);
      return;
    }
    if (protectedEntity && this.inLockout) throw new TpmError(RC.LOCKOUT);
  }

  /**
   * Counts a failed authorization of a protected entity (or of lockoutAuth). Every failure
   * restarts the self-healing timer of its kind, so forgiveness needs recoveryTime seconds
   * without failures.
   */
  recordFailure(handle: number, protectedEntity: boolean): void {
    if (handle === RH.LOCKOUT) {
      this.heal();
      this.lockoutAuthEnabled = false;
      this.lockoutFailedAt = this.last;
      return;
    }
    if (!protectedEntity) return;
    this.heal();
    const da = this.da();
    if (da.recoveryTime !== 0) {
      da.failedTries = Math.min(da.failedTries + 1, 0xffffffff);
      this.persist();
    }
    this.healingFrom = this.last;
  }

  /** TPM2_DictionaryAttackLockReset: the failure count goes to zero. */
  reset(): void {
    this.heal();
    this.da().failedTries = 0;
    this.healingFrom = this.last;
    this.persist();
  }

  /** TPM2_Clear: the manufacturer's parameters, no failures, lockoutAuth usable. */
  restoreDefaults(): void {
    const t = this.now();
    Object.assign(this.da(), DA_DEFAULTS);
    this.lockoutAuthEnabled = true;
    this.healingFrom = this.lockoutFailedAt = t;
    this.persist();
  }
}
