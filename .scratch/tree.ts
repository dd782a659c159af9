import { readFileSync } from 'node:fs';
const p = JSON.parse(readFileSync(process.argv[2]!, 'utf8'));
const min = Number(process.argv[3] ?? 1.5);
const byId = new Map<number, any>(); for (const n of p.nodes) byId.set(n.id, n);
const self = new Map<number, number>();
for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
const incl = new Map<number, number>();
function inc(id: number): number { const n = byId.get(id); let t = self.get(id) ?? 0; for (const c of n.children ?? []) t += inc(c); incl.set(id, t); return t; }
const root = p.nodes[0].id; inc(root);
let busy = 0; for (const n of p.nodes) if (n.callFrame.functionName !== '(idle)') busy += self.get(n.id) ?? 0;
function show(id: number, depth: number) {
  const n = byId.get(id); const t = incl.get(id)!; if (100 * t / busy < min) return;
  const f = n.callFrame; const u = (f.url || '').replace(/^.*\/work\/main\//, '').replace(/^node:internal\//, '');
  console.log(' '.repeat(depth) + (100 * t / busy).toFixed(1) + '% (self ' + (100 * (self.get(id) ?? 0) / busy).toFixed(1) + ') ' + (f.functionName || '(anon)') + ' ' + u + ':' + f.lineNumber);
  for (const c of (n.children ?? []).sort((a: number, b: number) => incl.get(b)! - incl.get(a)!)) show(c, depth + 1);
}
show(root, 0);
