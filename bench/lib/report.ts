/** The results of a run: the JSON document, the ratios and targets, and the human-readable table. */
import type { Machine } from './machine.ts';
import type { Measurement, Timing } from './measurement.ts';

export interface Skipped {
  path: string;
  peer: string;
  reason: string;
}

export interface TargetCheck {
  name: string;
  /** What was measured, in the target's unit. */
  measured: number | null;
  threshold: number;
  unit: string;
  met: boolean | null;
}

export interface BenchResults {
  tool: 'vtpmd bench';
  format: 1;
  startedAt: string;
  finishedAt: string;
  machine: Machine & { loadAverageAtEnd: number };
  source?: { commit: string; dirty: boolean };
  options: Timing & { quick: boolean; rounds: number; paths: string[] };
  scenarios: { id: string; title: string; description: string; commandHex: string }[];
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

/** The project's stated targets, checked against what was measured (null when not measured). */
export function checkTargets(results: Measurement[]): TargetCheck[] {
  const vtpmdSocket = results.find((m) => m.scenario === 'pcr-extend-sha256' && m.path === 'swtpm-socket' && m.peer === 'vtpmd' && m.concurrency === 1);
  const inProcess = results.find((m) => m.scenario === 'pcr-extend-sha256' && m.path === 'in-process' && m.concurrency === 1);
  const ratio = vtpmdSocket?.ratioVsSwtpm ?? null;
  const rate = inProcess?.opsPerSec ?? null;
  return [
    { name: 'socket PCR_Extend vs swtpm', measured: ratio, threshold: 1.5, unit: '×', met: ratio === null ? null : ratio >= 1.5 },
    { name: 'in-process PCR_Extend', measured: rate, threshold: 300_000, unit: 'ops/s', met: rate === null ? null : rate >= 300_000 },
  ];
}

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmt = (n: number | undefined, digits = 1): string => (n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(digits));

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
  out.push(`run: ${r.options.duration} s per measurement after ${r.options.warmup} s warm-up${rounds}${r.options.quick ? ' (--quick)' : ''}${src}`);
  for (const s of r.scenarios) out.push(`scenario ${s.title}: ${s.description}; ${s.commandHex.length / 2} command bytes, identical on every path`);
  out.push('');
  const headers = ['scenario', 'path', 'ops/s', 'p50 µs', 'p99 µs', 'CPU µs/op', 'srv CPU µs/op', 'RSS MB', 'vs swtpm', 'other CPU'];
  const rows = r.results.map((x) => [
    x.scenarioTitle,
    x.label,
    fmtInt(x.opsPerSec),
    fmt(x.latencyUs.p50, x.latencyUs.p50 < 10 ? 2 : 1),
    fmt(x.latencyUs.p99, x.latencyUs.p99 < 10 ? 2 : 1),
    fmt(x.cpuUsPerOp, x.cpuUsPerOp < 10 ? 2 : 1),
    fmt(x.server?.cpuUsPerOp),
    fmt(x.server?.rssMB),
    x.ratioVsSwtpm === undefined ? '–' : `${x.ratioVsSwtpm.toFixed(2)}×`,
    fmt(x.load?.otherCores, 2),
  ]);
  out.push(table(headers, rows, [false, false, true, true, true, true, true, true, true, true]));
  out.push('');
  out.push('CPU µs/op: the measuring process (in-process: the engine; socket: the client).');
  out.push('srv CPU µs/op and RSS MB: the server process (/proc/PID/stat, VmRSS after the measurement).');
  out.push('p50/p99: in-process every 64th call timed alone; socket every round trip, write to last response byte.');
  out.push('other CPU: CPUs busy with other processes during the measurement (/proc/stat busy time minus the measured processes).');
  if (r.results.some((x) => x.roundsOpsPerSec)) {
    for (const x of r.results) {
      if (x.roundsOpsPerSec) out.push(`rounds ${x.label}: ${x.roundsOpsPerSec.map((v) => fmtInt(v)).join(', ')} ops/s`);
    }
  }
  for (const s of r.skipped) out.push(`skipped: ${s.path} ${s.peer} — ${s.reason}`);
  out.push('');
  for (const t of r.targets) {
    const measured =
      t.measured === null ? 'not measured' : t.unit === '×' ? `${t.measured.toFixed(2)}×` : `${fmtInt(t.measured)} ${t.unit}`;
    const threshold = t.unit === '×' ? `${t.threshold}×` : `${fmtInt(t.threshold)} ${t.unit}`;
    const verdict = t.met === null ? 'n/a' : t.met ? 'met' : 'NOT met';
    out.push(`target ${t.name} ≥ ${threshold}: ${measured} — ${verdict}`);
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join('\n') + '\n';
}
