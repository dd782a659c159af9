import { RH } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import type { DaState } from './nv-state.ts';

/**
 * Dictionary-attack protection (Part 1, 19.8). Failed authorizations of protected entities
 * count up to maxTries, after which those entities are refused with TPM_RC_LOCKOUT; one failure
 * is forgiven every recoveryTime seconds of powered time. A failed lockoutAuth blocks lockoutAuth
 * itself for lockoutRecovery seconds, or until the next TPM Reset when that is zero.
 */
export class Lockout {
  /** Clock (ms) at which the counter was last decremented or started counting down. */
  private healingFrom: bigint;
  /** Clock (ms) until which lockoutAuth is refused; -1n: until the next TPM Reset. */
  private lockoutAuthBlockedUntil = 0n;

  constructor(
    private readonly da: () => DaState,
    private readonly clock: () => bigint,
    private readonly persist: () => void,
  ) {
    this.healingFrom = clock();
  }

  /** A TPM Reset ends a lockoutAuth block that had no timeout. */
  onReset(): void {
    if (this.lockoutAuthBlockedUntil === -1n) this.lockoutAuthBlockedUntil = 0n;
    this.healingFrom = this.clock();
  }

  /** Forgives the failures whose recovery time has passed. */
  private heal(): void {
    const da = this.da();
    const now = this.clock();
    if (da.failedTries === 0 || da.recoveryTime === 0) {
      this.healingFrom = now;
      return;
    }
    const step = BigInt(da.recoveryTime) * 1000n;
    const forgiven = Number((now - this.healingFrom) / step);
    if (forgiven > 0) {
      da.failedTries = Math.max(0, da.failedTries - forgiven);
      this.healingFrom += BigInt(forgiven) * step;
      this.persist();
    }
  }

  get inLockout(): boolean {
    this.heal();
    const da = this.da();
    return da.recoveryTime !== 0 && da.failedTries >= da.maxTries;
  }

  get failedTries(): number {
    this.heal();
    return this.da().failedTries;
  }

  /** Refuses an authorization attempt that DA protection forbids right now. */
  checkAvailable(handle: number, protectedEntity: boolean): void {
    if (handle === RH.LOCKOUT) {
      const until = this.lockoutAuthBlockedUntil;
      if (until === -1n || this.clock() < until) throw new TpmError(RC.LOCKOUT);
      return;
    }
    if (protectedEntity && this.inLockout) throw new TpmError(RC.LOCKOUT);
  }

  /** Counts a failed authorization of a protected entity (or of lockoutAuth). */
  recordFailure(handle: number, protectedEntity: boolean): void {
    const da = this.da();
    if (handle === RH.LOCKOUT) {
      this.lockoutAuthBlockedUntil = da.lockoutRecovery === 0 ? -1n : this.clock() + BigInt(da.lockoutRecovery) * 1000n;
      return;
    }
    if (!protectedEntity || da.recoveryTime === 0) return;
    this.heal();
    if (da.failedTries === 0) this.healingFrom = this.clock();
    da.failedTries = Math.min(da.failedTries + 1, 0xffffffff);
    this.persist();
  }

  /** TPM2_DictionaryAttackLockReset. */
  reset(): void {
    this.da().failedTries = 0;
    this.healingFrom = this.clock();
    this.persist();
  }
}
