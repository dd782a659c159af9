/**
 * A FIFO with a fixed capacity. Entries may be withdrawn from the middle (a cancelled command),
 * which frees their capacity at once; the withdrawn slot is skipped when the head reaches it.
 */
export interface Withdrawable {
  withdrawn: boolean;
}

export class BoundedQueue<T extends Withdrawable> {
  #items: (T | undefined)[] = [];
  #head = 0;
  #live = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`queue capacity must be a positive integer, not ${capacity}`);
  }

  /** Entries waiting (withdrawn ones not counted). */
  get length(): number {
    return this.#live;
  }

  /** False, and nothing queued, when the queue is full. */
  push(item: T): boolean {
    if (this.#live >= this.capacity) return false;
    this.#items.push(item);
    this.#live++;
    return true;
  }

  shift(): T | undefined {
    while (this.#head < this.#items.length) {
      const item = this.#items[this.#head];
      this.#items[this.#head++] = undefined;
      if (item && !item.withdrawn) {
        this.#live--;
        this.#compact();
        return item;
      }
    }
    this.#compact();
    return undefined;
  }

  /** Marks a queued entry withdrawn; false if it already left the queue. */
  withdraw(item: T): boolean {
    if (item.withdrawn) return false;
    const i = this.#items.indexOf(item, this.#head);
    if (i < 0) return false;
    item.withdrawn = true;
    this.#live--;
    return true;
  }

  /** Empties the queue, returning what was waiting. */
  drain(): T[] {
    const out: T[] = [];
    for (let item = this.shift(); item; item = this.shift()) out.push(item);
    return out;
  }

  #compact(): void {
    // Amortised: slide the array only once the dead prefix dominates it.
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    } else if (this.#head === this.#items.length) {
      this.#items.length = 0;
      this.#head = 0;
    }
  }
}
