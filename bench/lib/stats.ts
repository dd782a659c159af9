/** Latency summaries from sampled per-operation timings (nanoseconds in, microseconds out). */

export interface LatencySummary {
  /** How many operations were timed. */
  samples: number;
  /** Every n-th operation was timed. */
  sampleEvery: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  min: number;
  max: number;
  mean: number;
}

/** Collects nanosecond samples without boxing them in a growing JS array. */
export class SampleBuffer {
  #data: Float64Array;
  #n = 0;

  constructor(initial = 1 << 16) {
    this.#data = new Float64Array(initial);
  }

  push(ns: number): void {
    if (this.#n === this.#data.length) {
      const next = new Float64Array(this.#data.length * 2);
      next.set(this.#data);
      this.#data = next;
    }
    this.#data[this.#n++] = ns;
  }

  get length(): number {
    return this.#n;
  }

  values(): Float64Array {
    return this.#data.subarray(0, this.#n);
  }
}

/** Nearest-rank percentile of sorted values. */
export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

export function summarize(samplesNs: Float64Array, sampleEvery: number): LatencySummary {
  const sorted = Float64Array.from(samplesNs).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  const us = (ns: number): number => ns / 1000;
  return {
    samples: sorted.length,
    sampleEvery,
    p50: us(percentile(sorted, 50)),
    p90: us(percentile(sorted, 90)),
    p99: us(percentile(sorted, 99)),
    p999: us(percentile(sorted, 99.9)),
    min: us(sorted.length ? sorted[0]! : NaN),
    max: us(sorted.length ? sorted[sorted.length - 1]! : NaN),
    mean: us(sorted.length ? sum / sorted.length : NaN),
  };
}

/** User + system CPU microseconds between two process.cpuUsage() readings. */
export function cpuMicros(before: NodeJS.CpuUsage, after: NodeJS.CpuUsage): number {
  return after.user - before.user + (after.system - before.system);
}
