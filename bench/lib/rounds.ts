/** Several rounds of the same measurements reduced to one figure each: the median round. */
import type { Measurement } from './measurement.ts';

/** One figure per (scenario, path, peer, vTPMs): the median round by ops/s, with every round's rate attached. */
export function medianRounds(all: readonly Measurement[][]): Measurement[] {
  const groups = new Map<string, Measurement[]>();
  for (const round of all) {
    for (const m of round) {
      const key = `${m.scenario}|${m.path}|${m.peer}|${m.vtpms}`;
      groups.set(key, [...(groups.get(key) ?? []), m]);
    }
  }
  return [...groups.values()].map((ms) => {
    if (ms.length === 1) return ms[0]!;
    const sorted = [...ms].sort((a, b) => a.opsPerSec - b.opsPerSec);
    // Resends of every round, not just the median one's (swtpm's first Quote after power-on is in round 1).
    const resent = ms.flatMap((m, i) => (m.resent ?? []).map((r) => `round ${i + 1}: ${r}`));
    return { ...sorted[Math.floor((sorted.length - 1) / 2)]!, roundsOpsPerSec: ms.map((m) => m.opsPerSec), ...(resent.length > 0 ? { resent } : {}) };
  });
}
