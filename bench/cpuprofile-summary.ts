/**
 * Summarises a V8 .cpuprofile (from `node --cpu-prof`, e.g. `npm run bench -- --server-cpu-prof DIR`):
 * the functions with the most self time and the most inclusive time, as shares of all samples.
 *
 *   node --import tsx bench/cpuprofile-summary.ts DIR/CPU.*.cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

const root = fileURLToPath(new URL('../', import.meta.url));

function frameName(node: ProfileNode): string {
  const f = node.callFrame;
  const name = f.functionName || '(anonymous)';
  if (!f.url) return name;
  let where = f.url.startsWith('file://') ? fileURLToPath(f.url) : f.url;
  if (where.startsWith(root)) where = relative(root, where);
  return `${name} ${where}:${f.lineNumber + 1}`;
}

export function summarize(profile: Profile, top: number): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let all = 0;
  let idle = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    all += dt;
    const node = byId.get(id)!;
    const name = frameName(node);
    if (name === '(idle)') idle += dt;
    self.set(name, (self.get(name) ?? 0) + dt);
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const n = frameName(byId.get(cur)!);
      if (seen.has(n)) continue;
      seen.add(n);
      total.set(n, (total.get(n) ?? 0) + dt);
    }
  });
  const busy = all - idle;
  const lines: string[] = [];
  lines.push(`profile: ${(all / 1e6).toFixed(2)} s sampled, ${(idle / 1e6).toFixed(2)} s idle, ${(busy / 1e6).toFixed(2)} s busy`);
  const section = (title: string, map: Map<string, number>): void => {
    lines.push('', `${title} (share of busy time)`);
    const rows = [...map.entries()].filter(([n]) => n !== '(idle)' && n !== '(root)').sort((a, b) => b[1] - a[1]).slice(0, top);
    for (const [name, t] of rows) lines.push(`${((100 * t) / busy).toFixed(1).padStart(6)}%  ${name}`);
  };
  section('self time', self);
  section('inclusive time', total);
  return lines.join('\n');
}

const args = process.argv.slice(2);
const topAt = args.indexOf('--top');
const top = topAt >= 0 ? Number(args.splice(topAt, 2)[1]) : 25;
if (args.length === 0) {
  process.stderr.write('usage: node --import tsx bench/cpuprofile-summary.ts FILE.cpuprofile [--top N]\n');
  process.exit(2);
}
for (const file of args) {
  process.stdout.write(`== ${file}\n${summarize(JSON.parse(readFileSync(file, 'utf8')) as Profile, top)}\n`);
}
