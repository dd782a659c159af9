/**
 * Group commit: whatever is submitted while a commit is running waits and goes into the next one
 * together, so N vTPMs saving at once cost one synced write and one chip counter increment rather
 * than N. There is no timer: a window closes when the previous commit finishes, so a lone saver
 * pays one commit and a crowd shares one.
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

/** Commits one window; `durable` is true when anyone in it waits for durability. */
export type CommitWindow<T> = (items: readonly T[], durable: boolean) => Promise<void>;

export class GroupCommit<T> {
  private readonly pending = new Map<string, Entry<T>>();
  private running: Promise<void> | undefined;
  private windows = 0;

  constructor(
    private readonly commit: CommitWindow<T>,
    private readonly maxWindow = Number.POSITIVE_INFINITY,
    /** What a waiting item and a later one for the same key become together. */
    private readonly merge: (earlier: T, later: T) => T = (_earlier, later) => later,
  ) {
    if (!(maxWindow >= 1)) throw new RangeError(`a commit window holds at least one item, not ${maxWindow}`);
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
    while (this.running) await this.running;
  }

  /** Commit windows run so far. */
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
    this.running ??= new Promise<void>((done) => setImmediate(done)).then(() => this.run());
  }

  private async run(): Promise<void> {
    try {
      while (this.pending.size > 0) {
        const window: Entry<T>[] = [];
        for (const [key, entry] of this.pending) {
          if (window.length >= this.maxWindow) break;
          window.push(entry);
          this.pending.delete(key);
        }
        try {
          await this.commit(
            window.map((e) => e.item),
            window.some((e) => e.durable),
          );
          this.windows++;
          for (const e of window) for (const w of e.waiters) w.resolve();
        } catch (err) {
          for (const e of window) for (const w of e.waiters) w.reject(err);
        }
      }
    } finally {
      this.running = undefined;
    }
  }
}
