/** The human-readable report of a run: header, the table, the one-shot details, targets and notes. */
import type { Measurement } from './measurement.ts';
import type { BenchResults } from './results.ts';

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US');
const fmt = (n: number | undefined, digits = 1): string => (n === undefined || !Number.isFinite(n) ? '–' : n.toFixed(digits));
/** Rates below 100/s (one-shot scenarios) keep two decimals. */
export const fmtOps = (n: number): string => (n < 100 ? n.toFixed(2) : fmtInt(n));
/** µs: two decimals below 10, one below 10,000, whole numbers with separators above. */
export const fmtUs = (n: number | undefined): string =>
  n === undefined || !Number.isFinite(n) ? '–' : n < 10 ? n.toFixed(2) : n < 10_000 ? n.toFixed(1) : fmtInt(n);
/** MB: one decimal, three below 1 (a vTPM of vtpmd serve weighs well under a megabyte). */
const fmtMB = (n: number | undefined): string => (n === undefined || !Number.isFinite(n) ? '–' : n < 1 ? n.toFixed(3) : n.toFixed(1));

/** "figure ratio×" where a ratio against swtpm exists. */
function withRatio(figure: string, ratio: number | undefined): string {
  if (ratio === undefined || !Number.isFinite(ratio)) return figure;
  return `${figure} ${ratio < 0.1 ? ratio.toFixed(3) : ratio.toFixed(2)}×`;
}

function table(headers: string[], rows: string[][], rightAligned: boolean[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]): string =>
    cells.map((c, i) => (rightAligned[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  return [line(headers), line(widths.map((w) => '─'.repeat(w))), ...rows.map(line)].join('\n');
}

function row(x: Measurement): string[] {
  const v = x.vsSwtpm;
  return [
    x.scenarioTitle,
    String(x.vtpms),
    x.label,
    withRatio(fmtOps(x.opsPerSec), v?.opsPerSec),
    withRatio(fmtUs(x.latencyUs.p50), v?.p50),
    withRatio(fmtUs(x.latencyUs.p99), v?.p99),
    fmtUs(x.cpuUsPerOp),
    withRatio(fmtUs(x.server?.cpuUsPerOp), v?.serverCpuUsPerOp),
    withRatio(fmtMB(x.memoryPerVtpmMB), v?.memoryPerVtpm),
    fmt(x.load?.otherCores, 2),
  ];
}

export function formatReport(r: BenchResults): string {
  const m = r.machine;
  const o = r.options;
  const out: string[] = [];
  out.push('vtpmd bench — TPM command throughput, one command in flight per vTPM');
  out.push(`machine: ${m.cpuModel}, ${m.cores} cores (${m.availableParallelism} usable), ${m.memoryGB} GB, ${m.os}`);
  out.push(`node ${m.node} (V8 ${m.v8}); load average ${m.loadAverageAtStart.toFixed(2)} at start, ${m.loadAverageAtEnd.toFixed(2)} at end`);
  const src = r.source ? `, source ${r.source.commit}${r.source.dirty ? ' (uncommitted changes)' : ''}` : '';
  const rounds = o.rounds > 1 ? `, median of ${o.rounds} alternating rounds` : '';
  const kinds = new Set(r.scenarios.map((s) => s.kind));
  const how = [
    kinds.has('steady') ? `${o.duration} s per measurement after ${o.warmup} s warm-up` : '',
    kinds.has('one-shot') || kinds.has('cold-load') ? `one-shot: 1 unmeasured iteration, then up to ${o.oneShot.iterations} measured or ${o.oneShot.seconds} s per path` : '',
  ].filter(Boolean);
  out.push(`run: ${how.join('; ')}; vTPMs ${o.concurrency.join(', ')}${rounds}${o.quick ? ' (--quick)' : ''}${src}`);
  for (const s of r.scenarios) {
    const commands = new Set(r.results.filter((x) => x.scenario === s.id && x.commandHex).map((x) => x.commandHex));
    const same =
      s.kind === 'one-shot'
        ? 'a new unique each iteration, the same series on every path'
        : s.kind === 'cold-load'
          ? 'the same on every path'
          : commands.size <= 1
            ? 'identical on every path'
            : 'identical on every path but a handle (see the notes)';
    out.push(`scenario ${s.title}: ${s.description}; ${s.commandHex.length / 2} command bytes, ${same}`);
  }
  out.push('');
  const headers = ['scenario', 'vTPMs', 'path', 'ops/s', 'p50 µs', 'p99 µs', 'CPU µs/op', 'srv CPU µs/op', 'MB/vTPM', 'other CPU'];
  out.push(table(headers, r.results.map(row), [false, true, false, true, true, true, true, true, true, true]));
  out.push('');
  out.push('r×: vtpmd\'s figure ÷ swtpm\'s for the same scenario and number of vTPMs (ops/s above 1, latency, CPU and memory below 1 favour vtpmd).');
  out.push('CPU µs/op: the measuring process (in-process and hypervisor: the engines; socket: the client).');
  out.push('srv CPU µs/op and MB/vTPM: the server processes (/proc/PID/stat; VmRSS after the measurement ÷ vTPMs; swtpm: its processes summed).');
  out.push('p50/p99: in-process every 64th call timed alone (Quote: every call, Seal every 16th); hypervisor and socket every round trip.');
  const oneShots = r.results.filter((x) => x.oneShot);
  if (oneShots.length > 0) {
    out.push('one-shot (CreatePrimary, cold load): ops/s = measured iterations ÷ their summed latency; p50 is the median, p99 the slowest of a few;');
    out.push('  CreatePrimary\'s FlushContext and a cold load\'s tidying are outside the timing; srv CPU sums the timed round trips (10 ms ticks).');
    for (const x of oneShots) {
      const lat = x.oneShot!.latenciesUs.map((us) => (us / 1000).toFixed(us < 100_000 ? 2 : 0)).join(', ');
      out.push(`  ${x.scenarioTitle} / ${x.label}: ${x.ops} measured in ${x.oneShot!.wallSeconds.toFixed(1)} s wall, ms: ${lat}`);
      if (x.coldLoad) out.push(`    timed: ${x.coldLoad}`);
    }
  }
  out.push('other CPU: CPUs busy with other processes during the measurement (/proc/stat busy time minus the measured processes).');
  for (const x of r.results) {
    if (x.roundsOpsPerSec) out.push(`rounds ${x.scenarioTitle} / ${x.vtpms} / ${x.label}: ${x.roundsOpsPerSec.map((v) => fmtOps(v)).join(', ')} ops/s`);
  }
  for (const s of r.skipped) {
    const where = [s.scenario, s.vtpms === undefined ? undefined : `${s.vtpms} vTPM(s)`, s.peer].filter(Boolean).join(' / ');
    out.push(`skipped: ${where} — ${s.reason}`);
  }
  out.push('');
  const fmtValue = (v: number, unit: string): string =>
    unit === '×' ? `${v < 0.1 ? v.toFixed(3) : v.toFixed(2)}×` : unit === 's' ? `${v.toFixed(3)} s` : `${fmtInt(v)} ${unit}`;
  for (const t of r.targets) {
    const measured = t.measured === null ? 'not measured' : fmtValue(t.measured, t.unit);
    const verdict = t.met === null ? 'n/a' : t.met ? 'met' : 'NOT met';
    out.push(`target ${t.name} ${t.comparison} ${fmtValue(t.threshold, t.unit)}: ${measured} — ${verdict}`);
  }
  for (const n of r.notes) out.push(`note: ${n}`);
  return out.join('\n') + '\n';
}
