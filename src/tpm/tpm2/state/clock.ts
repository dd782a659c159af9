import { CLOCK_ADJUST } from '../constants.ts';

/** Rate steps relative to a nominal 30000 (as a chip trims its oscillator): 1%, 0.1%, 1/30000. */
const NOMINAL = 30000;
const STEP: Record<number, number> = { 3: 300, 2: 30, 1: 1 };
const LIMIT = 5000;

/**
 * TPMS_TIME_INFO's time and clock. `time` counts milliseconds since power-on; `clock` counts
 * milliseconds the TPM has been powered over its life and only moves forward.
 */
export class TpmClock {
  private rate = NOMINAL;
  private anchorReal: number;
  private anchorTime = 0;
  private anchorClock: bigint;

  constructor(private readonly now: () => number, persistedClock: bigint) {
    this.anchorReal = now();
    this.anchorClock = persistedClock;
  }

  private elapsed(): number {
    return Math.max(0, Math.floor(((this.now() - this.anchorReal) * this.rate) / NOMINAL));
  }

  get time(): bigint {
    return BigInt(this.anchorTime + this.elapsed());
  }

  get clock(): bigint {
    return this.anchorClock + BigInt(this.elapsed());
  }

  /** Constant while the TPM runs, but for set(): time and clock advance together. */
  get clockMinusTime(): bigint {
    return this.anchorClock - BigInt(this.anchorTime);
  }

  /** _TPM_Init: time restarts at zero; clock continues from what NV held. */
  powerOn(persistedClock: bigint): void {
    this.anchorReal = this.now();
    this.anchorTime = 0;
    this.anchorClock = persistedClock;
    this.rate = NOMINAL;
  }

  /**
   * Continues a TPM that kept its power while the process running it restarted: time and clock
   * as they are now, by the record the last process left.
   */
  resume(time: bigint, clock: bigint): void {
    this.anchorReal = this.now();
    this.anchorTime = Number(time);
    this.anchorClock = clock;
    this.rate = NOMINAL;
  }

  private reanchor(): void {
    const e = this.elapsed();
    this.anchorTime += e;
    this.anchorClock += BigInt(e);
    this.anchorReal = this.now();
  }

  set(clock: bigint): void {
    this.reanchor();
    this.anchorClock = clock;
  }

  adjust(step: number): void {
    if (step === CLOCK_ADJUST.NO_CHANGE) return;
    this.reanchor();
    const delta = STEP[Math.abs(step)]! * Math.sign(step);
    this.rate = Math.min(NOMINAL + LIMIT, Math.max(NOMINAL - LIMIT, this.rate + delta));
  }
}
