/**
 * The TPM partition's dispatcher: it serves the guest partitions' input queues round-robin, one
 * command per partition per turn, so a guest that keeps its queue full gets one turn in N like
 * everyone else. A partition has at most one command at its vTPM (the vTPM serializes anyway, and
 * this keeps each partition's responses in FIFO order); different partitions' vTPMs run
 * concurrently up to `maxInFlight`. The dispatcher runs in microtasks and gives the event loop a
 * turn (setImmediate) every `yieldEvery` dispatches, so the hypervisor's other work — timers,
 * sockets, lifecycle requests — is never starved by a busy TPM partition.
 */
import type { CrbCommand } from './crb.ts';

/** What the scheduler needs of a partition. */
export interface Schedulable {
  readonly name: string;
  /** Commands waiting in the input queue. */
  readonly pending: number;
  /** A command of this partition is at its vTPM. */
  busy: boolean;
  /** Listed in the scheduler's ring (owned by the scheduler). */
  inRing: boolean;
  /** Takes the next command off the input queue. */
  next(): CrbCommand | undefined;
  /** Runs one command on the partition's vTPM; synchronous when the device can answer at once. */
  run(cmd: CrbCommand): Uint8Array | Promise<Uint8Array>;
  /** Places the answer on the output queue and completes the guest's access. */
  deliver(cmd: CrbCommand, result: Uint8Array | Error): void;
}

export interface SchedulerOptions {
  /** Commands at vTPMs at once, across partitions. Default 64. */
  maxInFlight?: number;
  /** Dispatches between two yields to the event loop. Default 256. */
  yieldEvery?: number;
  /** Observes each dispatch (metrics, tests). */
  onDispatch?: (partition: Schedulable, cmd: CrbCommand) => void;
}

export class Scheduler {
  readonly maxInFlight: number;
  readonly yieldEvery: number;
  /** Commands dispatched so far. */
  dispatched = 0;
  /** Times the dispatcher handed the event loop a turn. */
  yields = 0;

  #ring: (Schedulable | undefined)[] = [];
  #head = 0;
  #inFlight = 0;
  #sinceYield = 0;
  #scheduled = false;
  #pumping = false;
  readonly #onDispatch: SchedulerOptions['onDispatch'];
  readonly #pumpFn = () => this.#pump();

  constructor(opts: SchedulerOptions = {}) {
    this.maxInFlight = opts.maxInFlight ?? 64;
    this.yieldEvery = opts.yieldEvery ?? 256;
    if (!Number.isInteger(this.maxInFlight) || this.maxInFlight < 1) throw new RangeError(`maxInFlight must be a positive integer, not ${this.maxInFlight}`);
    if (!Number.isInteger(this.yieldEvery) || this.yieldEvery < 1) throw new RangeError(`yieldEvery must be a positive integer, not ${this.yieldEvery}`);
    this.#onDispatch = opts.onDispatch;
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  /** A partition's input queue gained a command. */
  notify(p: Schedulable): void {
    if (p.busy || p.pending === 0) return;
    if (!p.inRing) {
      p.inRing = true;
      this.#ring.push(p);
    }
    this.#schedule();
  }

  /**
   * Runs the next round in a microtask when the ring was idle (a lone guest's next command goes
   * out at once), and in a macrotask after a round that left work behind: the guests whose
   * commands just completed then get to submit their next ones before the next round starts, so
   * a partition with a deep queue cannot take several turns while another's guest is still
   * writing its next command.
   */
  #schedule(afterRound = false): void {
    if (this.#scheduled || this.#pumping) return;
    this.#scheduled = true;
    if (afterRound || this.#sinceYield >= this.yieldEvery) {
      setImmediate(() => {
        this.yields++;
        this.#sinceYield = 0;
        this.#pump();
      });
    } else void RESOLVED.then(this.#pumpFn);
  }

  /** One round: each partition listed when it began gets at most one command. */
  #pump(): void {
    this.#scheduled = false;
    this.#pumping = true;
    const roundEnd = this.#ring.length;
    try {
      while (this.#inFlight < this.maxInFlight && this.#head < roundEnd) {
        if (this.#sinceYield >= this.yieldEvery) break;
        const p = this.#ring[this.#head]!;
        this.#ring[this.#head++] = undefined;
        p.inRing = false;
        if (p.busy) continue;
        const cmd = p.next();
        if (!cmd) continue;
        this.#dispatch(p, cmd);
      }
      if (this.#head === this.#ring.length) {
        this.#ring.length = 0;
        this.#head = 0;
      } else if (this.#head > 1024) {
        this.#ring = this.#ring.slice(this.#head);
        this.#head = 0;
      }
    } finally {
      this.#pumping = false;
    }
    if (this.#inFlight < this.maxInFlight && this.#head < this.#ring.length) this.#schedule(true);
  }

  #dispatch(p: Schedulable, cmd: CrbCommand): void {
    this.dispatched++;
    this.#sinceYield++;
    this.#onDispatch?.(p, cmd);
    p.busy = true;
    this.#inFlight++;
    let result: Uint8Array | Promise<Uint8Array>;
    try {
      result = p.run(cmd);
    } catch (e) {
      return this.#finish(p, cmd, asError(e));
    }
    if (result instanceof Uint8Array) this.#finish(p, cmd, result);
    else
      result.then(
        (r) => this.#finish(p, cmd, r),
        (e: unknown) => this.#finish(p, cmd, asError(e)),
      );
  }

  #finish(p: Schedulable, cmd: CrbCommand, result: Uint8Array | Error): void {
    this.#inFlight--;
    p.busy = false;
    p.deliver(cmd, result);
    if (p.pending > 0) this.notify(p);
    else if (this.#head < this.#ring.length) this.#schedule();
  }
}

// queueMicrotask wraps each callback in an async resource; a settled promise's then does not.
const RESOLVED = Promise.resolve();

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}
