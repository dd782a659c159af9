/** What a reader of the table should know about this run's figures beyond the numbers. */
import type { Measurement } from './measurement.ts';
import type { Scenario } from './scenarios.ts';

/** Identical lines once, with how often they occurred (N vTPMs often resend alike). */
function counted(lines: readonly string[]): string[] {
  const counts = new Map<string, number>();
  for (const l of lines) counts.set(l, (counts.get(l) ?? 0) + 1);
  return [...counts].map(([l, n]) => (n > 1 ? `${l} (${n} times)` : l));
}

export function runNotes(results: readonly Measurement[], scenarios: readonly Scenario[], cores: number, rounds: number): string[] {
  const notes: string[] = [];
  for (const scenario of scenarios) {
    const answers = results.filter((m) => m.scenario === scenario.id);
    // Signatures and keys differ by nature (clock, counters, random k, per-TPM seeds): compare only where they cannot.
    if (scenario.deterministic && new Set(answers.map((m) => m.firstResponse)).size > 1) {
      const distinct = [...new Set(answers.map((m) => m.firstResponse))];
      notes.push(`${scenario.title}: the paths answered with different bytes: ${distinct.map((r) => `${answers.filter((m) => m.firstResponse === r).map((m) => `${m.label} (${m.vtpms})`).join(', ')}: ${r}`).join('; ')}`);
    }
    for (const m of answers) {
      // Steady: only ever before warm-up (the timed loop fails on any rc but 0). One-shot: inside an iteration's timing.
      if (m.resent) notes.push(`${scenario.title} / ${m.vtpms} vTPM(s) / ${m.label}: ${counted(m.resent).join('; ')}`);
    }
    const commands = answers.filter((m) => m.commandHex);
    if (new Set(commands.map((m) => m.commandHex)).size > 1) {
      const details = [...new Set(commands.map((m) => `${m.label} ${m.setupDetail ?? '?'}`))];
      notes.push(`${scenario.title}: the measured command differed by the handle each TPM returned: ${details.join('; ')}`);
    }
  }
  const busiest = Math.max(0, ...results.map((m) => m.load?.otherCores ?? 0));
  if (busiest >= 0.25) {
    notes.push(
      `other processes used up to ${busiest.toFixed(2)} of the ${cores} CPUs during a measurement (column "other CPU"); ` +
        'absolute figures are depressed and noisy, ratios less so' +
        (rounds === 1 ? '; --rounds 3 reports the median of alternating rounds' : ''),
    );
  }
  return notes;
}
