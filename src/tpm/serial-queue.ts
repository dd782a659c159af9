/**
 * Runs async jobs one after another. A TPM executes one command at a time, and power signals must
 * not land in the middle of a command, so every device call of a server goes through one queue.
 * Pass the same queue to several servers that share a device.
 */
export class SerialQueue {
  #tail: Promise<unknown> = Promise.resolve();
  #pending = 0;

  /** No job is queued or running: a caller may touch the device directly, synchronously. */
  get isIdle(): boolean {
    return this.#pending === 0;
  }

  run<T>(job: () => Promise<T>): Promise<T> {
    this.#pending++;
    const result = this.#tail.then(job).finally(() => this.#pending--);
    // A failed job must not poison the jobs queued behind it; its caller sees the rejection.
    this.#tail = result.catch(() => undefined);
    return result;
  }

  /** Resolves once every job queued so far has settled. */
  idle(): Promise<void> {
    return this.run(async () => undefined);
  }
}
