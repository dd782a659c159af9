/**
 * Group commit: whatever is submitted while a commit is being written waits and goes into the
 * next one together, so N vTPMs saving at once cost one synced write and one chip counter
 * increment rather than N. There is no timer: a window closes when the previous window's write
 * finishes, so a lone saver pays one commit and a crowd shares one.
 *
 * A commit has two stages: its write, which windows take in turn, and then, optionally, a
 * confirmation (the PSS's chip counter increment) that must also finish before its waiters are
 * answered. The next window's write does not wait for the previous window's confirmation, so the
 * two overlap; at most `maxUnconfirmed` windows are written and not yet confirmed at a time.
 * A window's waiters are answered when its own confirmation settles: keeping confirmations in
 * order (the PSS's increments run one after another) is the commit function's business.
 *
 * Items are keyed (by VM): a later item for a key is merged with an earlier one still waiting
 * (by default it replaces it), and the earlier one's waiters wait for the merged item, so a VM
 * that saves faster than commits land holds at most one pending item.
 *
 * A window takes at most `maxWindow` items. With more savers than that, the ones left for the
 * next window prepare their saves (encryption: main-thread CPU) while this window's write is in
 * flight (disk: another thread), instead of everyone waiting on one commit and then everyone
 * computing at once.
 */

interface Waiter {
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
}

interface Entry<T> {
  readonly item: T;
  readonly durable: boolean;
  readonly waiters: Waiter[];
}

/** A window written, whose waiters are answered once `confirmed` resolves (or fail if it rejects). */
export interface Written {
  readonly confirmed: Promise<void>;
}

/**
 * Writes one window; `durable` is true when anyone in it waits for durability. Resolving with
 * nothing means the window is complete once written.
 */
export type CommitWindow<T> = (items: readonly T[], durable: boolean) => Promise<Written | void>;

export interface GroupCommitOptions<T> {
  /** Items a window takes at most. */
  readonly maxWindow?: number;
  /** Windows written and not yet confirmed, at most (default 1: each waits for the one before). */
  readonly maxUnconfirmed?: number;
  /** Waiters answered in one turn of the event loop, at most (answer()). */
  readonly answerSlice?: number;
  /** What a waiting item and a later one for the same key become together. */
  readonly merge?: (earlier: T, later: T) => T;
}

export class GroupCommit<T> {
  private readonly pending = new Map<string, Entry<T>>();
  private writing: Promise<void> | undefined;
  /** Windows written whose confirmation has not settled, oldest first. */
  private readonly unconfirmed: Promise<void>[] = [];
  private windows = 0;
  private readonly maxWindow: number;
  private readonly maxUnconfirmed: number;
  private readonly answerSlice: number;
  private readonly merge: (earlier: T, later: T) => T;

  constructor(
    private readonly commit: CommitWindow<T>,
    opts: GroupCommitOptions<T> = {},
  ) {
    this.maxWindow = opts.maxWindow ?? Number.POSITIVE_INFINITY;
    this.maxUnconfirmed = opts.maxUnconfirmed ?? 1;
    this.answerSlice = opts.answerSlice ?? Number.POSITIVE_INFINITY;
    this.merge = opts.merge ?? ((_earlier, later) => later);
    if (!(this.maxWindow >= 1)) throw new RangeError(`a commit window holds at least one item, not ${this.maxWindow}`);
    if (!Number.isInteger(this.maxUnconfirmed) || this.maxUnconfirmed < 1) {
      throw new RangeError(`at least one window may await confirmation, not ${this.maxUnconfirmed}`);
    }
    if (!(this.answerSlice >= 1)) throw new RangeError(`a slice of waiters holds at least one, not ${this.answerSlice}`);
  }

  /** Resolves once `item` (or a later item for `key`) has been committed durably; rejects if that failed. */
  submit(key: string, item: T): Promise<void> {
    return new Promise<void>((resolve, reject) => this.enqueue(key, item, { resolve, reject }));
  }

  /**
   * Queues `item` without waiting for it; unless someone's durable item shares its window, it is
   * committed without durability. A failure reaches nobody here: the commit function records it.
   */
  defer(key: string, item: T): void {
    this.enqueue(key, item, undefined);
  }

  /** Resolves once everything submitted or deferred so far has been committed (or has failed). */
  async drain(): Promise<void> {
    while (this.writing || this.unconfirmed.length > 0) {
      await this.writing;
      await Promise.all(this.unconfirmed);
    }
  }

  /** Commit windows completed so far. */
  get committed(): number {
    return this.windows;
  }

  private enqueue(key: string, item: T, waiter: Waiter | undefined): void {
    const before = this.pending.get(key);
    const waiters = before?.waiters ?? [];
    if (waiter) waiters.push(waiter);
    this.pending.delete(key);
    this.pending.set(key, { item: before ? this.merge(before.item, item) : item, durable: waiters.length > 0, waiters });
    // setImmediate rather than starting now: callers in the same turn of the event loop (and
    // I/O completions just behind them) join the first window instead of each opening one.
    this.writing ??= new Promise<void>((done) => setImmediate(done)).then(() => this.write());
  }

  private async write(): Promise<void> {
    try {
      while (this.pending.size > 0) {
        while (this.unconfirmed.length >= this.maxUnconfirmed) await this.unconfirmed[0];
        const window: Entry<T>[] = [];
        for (const [key, entry] of this.pending) {
          if (window.length >= this.maxWindow) break;
          window.push(entry);
          this.pending.delete(key);
        }
        let confirmed: Promise<void>;
        try {
          const written = await this.commit(
            window.map((e) => e.item),
            window.some((e) => e.durable),
          );
          confirmed = written ? written.confirmed : Promise.resolve();
        } catch (err) {
          confirmed = Promise.reject(err);
        }
        const settled = confirmed.then(
          () => {
            this.windows++;
            void this.answer(window);
          },
          (err: unknown) => {
            for (const e of window) for (const w of e.waiters) w.reject(err);
          },
        );
        this.unconfirmed.push(settled);
        void settled.then(() => this.unconfirmed.splice(this.unconfirmed.indexOf(settled), 1));
      }
    } finally {
      this.writing = undefined;
    }
  }

  /**
   * Answers a window's waiters, `answerSlice` at a time with a turn of the event loop between
   * slices: what each answered waiter does next (a vTPM's next command, up to its next save) runs
   * before anything else, so answering a large window at once would hold the I/O completions of
   * the windows behind it until all of that work was done.
   */
  private async answer(window: readonly Entry<T>[]): Promise<void> {
    for (let i = 0; i < window.length; i += this.answerSlice) {
      if (i > 0) await new Promise<void>((turn) => setImmediate(turn));
      for (const e of window.slice(i, i + this.answerSlice)) for (const w of e.waiters) w.resolve();
    }
  }
}
