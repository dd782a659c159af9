import { readFileSync } from 'node:fs';
const p = JSON.parse(readFileSync(process.argv[2]!, 'utf8'));
const self = new Map<number, number>();
for (let i = 0; i < p.samples.length; i++) self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + (p.timeDeltas[i] ?? 0));
const byFile = new Map<string, number>(); let total = 0;
for (const n of p.nodes) { const t = self.get(n.id) ?? 0; if (n.callFrame.functionName === '(idle)') continue; total += t; const u = (n.callFrame.url || n.callFrame.functionName).replace(/^file:\/\/\/work\/main\//, ''); byFile.set(u, (byFile.get(u) ?? 0) + t); }
for (const [f, t] of [...byFile].sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log((100 * t / total).toFixed(1).padStart(5) + '%  ' + f);
