/**
 * An SVG chart of throughput against the number of vTPMs: one panel per steady scenario, one line
 * per server (or path), both axes on a log scale. A series measured at one N only (e.g.
 * `vtpmd socket`) is a single point.
 */
import type { Measurement } from './measurement.ts';

const PANEL_W = 380;
const PANEL_H = 250;
const COLUMNS = 3;
const MARGIN = { l: 62, r: 14, t: 30, b: 40 };
const LEGEND_H = 24;
const TITLE_H = 34;

/** Fixed colours per series, so the same server looks the same in every panel and every run. */
const COLORS: Record<string, string> = {
  'in-process|vtpmd-engine': '#7f7f7f',
  'hypervisor|vtpmd-engine': '#9467bd',
  'swtpm-socket|vtpmd': '#17becf',
  'swtpm-socket|vtpmd-serve': '#1f77b4',
  'swtpm-socket|vtpmd-serve-batched': '#2ca02c',
  'swtpm-socket|swtpm': '#d62728',
  'swtpm-socket|node-floor': '#bcbd22',
};

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const f = (n: number): string => n.toFixed(1);

/** 1, 10, 100, 1k, 10k, 1M: the decade ticks of a log axis. */
function compact(v: number): string {
  if (v >= 1e6) return `${v / 1e6}M`;
  if (v >= 1e3) return `${v / 1e3}k`;
  return String(v);
}

interface Series {
  key: string;
  label: string;
  color: string;
}

function panel(title: string, rows: readonly Measurement[], series: readonly Series[], xs: readonly number[], ox: number, oy: number): string {
  const w = PANEL_W - MARGIN.l - MARGIN.r;
  const h = PANEL_H - MARGIN.t - MARGIN.b;
  // Log y: in-process and socket rates differ by orders of magnitude and both must stay readable.
  const rates = rows.map((r) => r.opsPerSec).filter((v) => v > 0);
  const minExp = Math.floor(Math.log10(Math.min(...rates)));
  const maxExp = Math.max(minExp + 1, Math.ceil(Math.log10(Math.max(...rates))));
  const lo = Math.log(xs[0]!);
  const span = Math.log(xs[xs.length - 1]!) - lo;
  const x = (n: number): number => ox + MARGIN.l + (span === 0 ? w / 2 : ((Math.log(n) - lo) / span) * w);
  const y = (v: number): number => oy + MARGIN.t + h - ((Math.log10(v) - minExp) / (maxExp - minExp)) * h;
  const out: string[] = [];
  out.push(`<text x="${f(ox + PANEL_W / 2)}" y="${f(oy + 18)}" text-anchor="middle" font-size="13">${esc(title)}</text>`);
  const bottom = oy + MARGIN.t + h;
  out.push(`<line x1="${f(ox + MARGIN.l)}" y1="${f(bottom)}" x2="${f(ox + MARGIN.l + w)}" y2="${f(bottom)}" stroke="black"/>`);
  out.push(`<line x1="${f(ox + MARGIN.l)}" y1="${f(oy + MARGIN.t)}" x2="${f(ox + MARGIN.l)}" y2="${f(bottom)}" stroke="black"/>`);
  for (const n of xs) out.push(`<text x="${f(x(n))}" y="${f(bottom + 15)}" text-anchor="middle">${n}</text>`);
  for (let e = minExp; e <= maxExp; e++) {
    const v = 10 ** e;
    out.push(`<line x1="${f(ox + MARGIN.l)}" y1="${f(y(v))}" x2="${f(ox + MARGIN.l + w)}" y2="${f(y(v))}" stroke="#e5e5e5"/>`);
    out.push(`<text x="${f(ox + MARGIN.l - 5)}" y="${f(y(v) + 4)}" text-anchor="end">${compact(v)}</text>`);
  }
  out.push(`<text x="${f(ox + MARGIN.l + w / 2)}" y="${f(oy + PANEL_H - 6)}" text-anchor="middle" fill="#555">vTPMs</text>`);
  out.push(`<text x="${f(ox + 12)}" y="${f(oy + MARGIN.t + h / 2)}" transform="rotate(-90 ${f(ox + 12)} ${f(oy + MARGIN.t + h / 2)})" text-anchor="middle" fill="#555">ops/s (log)</text>`);
  for (const s of series) {
    const pts = rows.filter((r) => `${r.path}|${r.peer}` === s.key).sort((a, b) => a.vtpms - b.vtpms);
    if (pts.length === 0) continue;
    const d = pts.map((p, i) => `${i ? 'L' : 'M'}${f(x(p.vtpms))},${f(y(p.opsPerSec))}`).join(' ');
    if (pts.length > 1) out.push(`<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`);
    for (const p of pts) {
      out.push(`<circle cx="${f(x(p.vtpms))}" cy="${f(y(p.opsPerSec))}" r="3" fill="${s.color}"><title>${esc(`${s.label}, ${p.vtpms} vTPMs: ${Math.round(p.opsPerSec)} ops/s`)}</title></circle>`);
    }
  }
  return out.join('\n');
}

/** The chart for the steady scenarios in `results`, in the order given; undefined if there are none. */
export function throughputChart(results: readonly Measurement[], scenarioOrder: readonly string[], subtitle: string): string | undefined {
  const steady = results.filter((r) => !r.oneShot);
  const scenarios = scenarioOrder.filter((id) => steady.some((r) => r.scenario === id));
  if (scenarios.length === 0) return undefined;
  const xs = [...new Set(steady.map((r) => r.vtpms))].sort((a, b) => a - b);
  const series: Series[] = [];
  for (const r of steady) {
    const key = `${r.path}|${r.peer}`;
    if (!series.some((s) => s.key === key)) series.push({ key, label: r.label, color: COLORS[key] ?? '#000000' });
  }
  const rows = Math.ceil(scenarios.length / COLUMNS);
  const width = PANEL_W * Math.min(COLUMNS, scenarios.length);
  const height = TITLE_H + LEGEND_H * Math.ceil(series.length / 3) + PANEL_H * rows;
  const top = TITLE_H + LEGEND_H * Math.ceil(series.length / 3);
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`);
  out.push(`<rect width="${width}" height="${height}" fill="white"/>`);
  out.push(`<text x="${width / 2}" y="18" text-anchor="middle" font-size="15">Throughput against the number of vTPMs (one command in flight per vTPM)</text>`);
  out.push(`<text x="${width / 2}" y="31" text-anchor="middle" fill="#555">${esc(subtitle)}</text>`);
  series.forEach((s, i) => {
    const lx = 20 + (i % 3) * (width / 3);
    const ly = TITLE_H + 14 + Math.floor(i / 3) * LEGEND_H;
    out.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 22}" y2="${ly - 4}" stroke="${s.color}" stroke-width="3"/><text x="${lx + 28}" y="${ly}">${esc(s.label)}</text>`);
  });
  scenarios.forEach((id, i) => {
    const rowsOf = steady.filter((r) => r.scenario === id);
    const ox = (i % COLUMNS) * PANEL_W;
    const oy = top + Math.floor(i / COLUMNS) * PANEL_H;
    out.push(panel(rowsOf[0]!.scenarioTitle, rowsOf, series, xs, ox, oy));
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
