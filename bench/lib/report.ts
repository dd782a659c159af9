/** The results of a run: the JSON document, the ratios and targets, and the human-readable table. */
import type { Machine } from './machine.ts';
import type { Measurement, OneShotLimits, Timing } from './measurement.ts';

export interface Skipped {
  path: string;
  peer: string;
  reason: string;
}

export interface TargetCheck {
  name: string;
  /** The scenario it is about; targets of scenarios that did not run are left out. */
  scenario: string;
  /** What was measured, in the target's unit. */
  measured: number | null;
  /** '≥': measured must reach the threshold; '<': measured must stay below it. */
  comparison: '≥' | '<';
  threshold: number;
  unit: string;
  met: boolean | null;
}

export interface BenchResults {
  tool: 'vtpmd bench';
  /** 2: steady and one-shot scenarios, targets with a comparison and a scenario. */
  format: 2;
  startedAt: string;
  finishedAt: string;
  machine: Machine & { loadAverageAtEnd: number };
  source?: { commit: string; dirty: boolean };
  options: Timing & { quick: boolean; rounds: number; paths: string[]; scenarios: string[]; oneShot: OneShotLimits };
  /** commandHex: the measured command as a fresh TPM gets it (one-shot: one command of a series). */
  scenarios: { id: string; name: string; kind: 'steady' | 'one-shot'; title: string; description: string; commandHex: string }[];
  peers: { name: string; version: string; label: string; argv: readonly string[] }[];
  results: Measurement[];
  skipped: Skipped[];
  targets: TargetCheck[];
  notes: string[];
}

/** Fills ratioVsSwtpm for every socket measurement that has a swtpm counterpart. */
export function addRatios(results: Measurement[]): void {
  for (const m of results) {
    if (m.path !== 'swtpm-socket') continue;
    const base = results.find((b) => b.path === m.path && b.peer === 'swtpm' && b.scenario === m.scenario && b.concurrency === m.concurrency);
    if (base) m.ratioVsSwtpm = m.opsPerSec / base.opsPerSec;
  }
}

/** The project's stated targets for the scenarios that ran, checked against what was measured (null when not measured). */
export function checkTargets(results: Measurement[], scenarioIds: readonly string[]): TargetCheck[] {
  const find = (scenario: string, path: string, peer?: string): Measurement | undefined =>
    results.find((m) => m.scenario === scenario && m.path === path && (peer === undefined || m.peer === peer) && m.concurrency === 1);
  const check = (name: string, scenario: string, measured: number | undefined, comparison: '≥' | '<', threshold: number, unit: string): TargetCheck => {
    const v = measured ?? null;
    const met = v === null ? null : comparison === '≥' ? v >= threshold : v < threshold;
    return { name, scenario, measured: v, comparison, threshold, unit, met };
  };
  const socketRatio = (scenario: string): number | undefined => find(scenario, 'swtpm-socket', 'vtpmd')?.ratioVsSwtpm;
  const medianSeconds = (m: Measurement | undefined): number | undefined => (m ? m.latencyUs.p50 / 1e6 : undefined);
  const cp = 'createprimary-rsa-2048';
  const all = [
    check('socket PCR_Extend vs swtpm', 'pcr-extend-sha256', socketRatio('pcr-extend-sha256'), '≥', 1.5, '×'),
    check('in-process PCR_Extend', 'pcr-extend-sha256', find('pcr-extend-sha256', 'in-process')?.opsPerSec, '≥', 300_000, 'ops/s'),
    check('socket Quote ECC P-256 vs swtpm', 'quote-ecc-p256', socketRatio('quote-ecc-p256'), '≥', 5, '×'),
    check('socket Quote RSA-2048 vs swtpm', 'quote-rsa-2048', socketRatio('quote-rsa-2048'), '≥', 5, '×'),
    check('CreatePrimary RSA-2048 median, socket vtpmd', cp, medianSeconds(find(cp, 'swtpm-socket', 'vtpmd')), '<', 1, 's'),
    check('CreatePrimary RSA-2048 median, in-process', cp, medianSeconds(find(cp, 'in-process')), '<', 1, 's'),
  ];
  return all.filter((t) => scenarioIds.includes(t.scenario));
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmt = (n: number | undefined, digits = 1): string => (n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(digits));
/** Rates below 100/s (one-shot scenarios) keep two decimals. */
export const fmtOps = (n: number): string => (n < 100 ? n.toFixed(2) : fmtInt(n));
/** µs: two decimals below 10, one below 10,000, whole numbers with separators above. */
export const fmtUs = (n: number | undefined): string =>
  n === undefined || !Number.isFinite(n) ? '–' : n < 10 ? n.toFixed(2) : n < 10_000 ? n.toFixed(1) : fmtInt(n);

function table(headers: string[], rows: string[][], rightAligned: boolean[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (rightAligned[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), line(widths.map((w) => '─'.repeat(w))), ...rows.map(line)].join('\n');
}

export function formatReport(r: BenchResults): string {
  const m = r.machine;
  const out: string[] = [];
  out.push('vtpmd bench — TPM command throughput, one connection, one command in flight');
  out.push(`machine: ${m.cpuModel}, ${m.cores} cores (${m.availableParallelism} usable), ${m.memoryGB} GB, ${m.os}`);
  out.push(`node ${m.node} (V8 ${m.v8}); load average ${m.loadAverageAtStart.toFixed(2)} at start, ${m.loadAverageAtEnd.toFixed(2)} at end`);
  const src = r.source ? `, source ${r.source.commit}${r.source.dirty ? ' (uncommitted changes)' : ''}` : '';
  const rounds = r.options.rounds > 1 ? `, median of ${r.options.rounds} alternating rounds` : '';
  const kinds = new Set(r.scenarios.map((s) => s.kind));
  const o = r.options.oneShot;
  const how = [
    kinds.has('steady') ? `${r.options.duration} s per measurement after ${r.options.warmup} s warm-up` : '',
    kinds.has('one-shot') ? `one-shot: 1 unmeasured iteration, then up to ${o.iterations} measured or ${o.seconds} s per path` : '',
  ].filter(Boolean);
  out.push(`run: ${how.join('; ')}${rounds}${r.options.quick ? ' (--quick)' : ''}${src}`);
  for (const s of r.scenarios) {
    const commands = new Set(r.results.filter((x) => x.scenario === s.id).map((x) => x.commandHex ?? s.commandHex));
    const same =
      s.kind === 'one-shot'
        ? 'a new unique each iteration, the same series on every path'
        : commands.size <= 1
          ? 'identical on every path'
          : 'identical on every path but the key handle (see the notes)';
    out.push(`scenario ${s.title}: ${s.description}; ${s.commandHex.length / 2} command bytes, ${same}`);
  }
  out.push('');
  const headers = ['scenario', 'path', 'ops/s', 'p50 µs', 'p99 µs', 'CPU µs/op', 'srv CPU µs/op', 'RSS MB', 'vs swtpm', 'other CPU'];
  const rows = r.results.map((x) => [
    x.scenarioTitle,
    x.label,
    fmtOps(x.opsPerSec),
    fmtUs(x.latencyUs.p50),
    fmtUs(x.latencyUs.p99),
    fmtUs(x.cpuUsPerOp),
    fmtUs(x.server?.cpuUsPerOp),
    fmt(x.server?.rssMB),
    x.ratioVsSwtpm === undefined ? '–' : `${x.ratioVsSwtpm.toFixed(2)}×`,
    fmt(x.load?.otherCores, 2),
  ]);
  out.push(table(headers, rows, [false, false, true, true, true, true, true, true, true, true]));
  out.push('');
  out.push('CPU µs/op: the measuring process (in-process: the engine; socket: the client).');
  out.push('srv CPU µs/op and RSS MB: the server process (/proc/PID/stat, VmRSS after the measurement).');
  out.push('p50/p99: in-process every 64th call timed alone (Quote: every call); socket every round trip, write to last response byte.');
  if (kinds.has('one-shot')) {
    out.push('one-shot (CreatePrimary): ops/s = measured iterations ÷ their summed latency; p50 is the median, p99 the slowest of a few;');
    out.push('  the FlushContext after each is sent outside the timing and not counted; srv CPU sums the timed round trips (10 ms ticks).');
    for (const x of r.results) {
      if (x.oneShot) {
        const lat = x.oneShot.latenciesUs.map((us) => (us / 1000).toFixed(us < 100_000 ? 1 : 0)).join(', ');
        out.push(`  ${x.scenarioTitle} / ${x.label}: ${x.ops} measured in ${x.oneShot.wallSeconds.toFixed(1)} s wall, ms: ${lat}`);
      }
    }
  }
  out.push('other CPU: CPUs busy with other processes during the measurement (/proc/stat busy time minus the measured processes).');
  if (r.results.some((x) => x.roundsOpsPerSec)) {
    for (const x of r.results) {
      if (x.roundsOpsPerSec) out.push(`rounds ${x.scenarioTitle} / ${x.label}: ${x.roundsOpsPerSec.map((v) => fmtOps(v)).join(', ')} ops/s`);
    }
  }
  for (const s of r.skipped) out.push(`skipped: ${s.path} ${s.peer} — ${s.reason}`);
  out.push('');
  const fmtValue = (v: number, unit: string): string =>
    unit === '×' ? `${v.toFixed(2)}×` : unit === 's' ? `${v.toFixed(3)} s` : `${fmtInt(v)} ${unit}`;
  for (const t of r.targets) {
    const measured = t.measured === null ? 'not measured' : fmtValue(t.measured, t.unit);
    const threshold = t.unit === '×' ? `${t.threshold}×` : t.unit === 's' ? `${t.threshold} s` : `${fmtInt(t.threshold)} ${t.unit}`;
    const verdict = t.met === null ? 'n/a' : t.met ? 'met' : 'NOT met';
    out.push(`target ${t.name} ${t.comparison} ${threshold}: ${measured} — ${verdict}`);
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join('\n') + '\n';
}
