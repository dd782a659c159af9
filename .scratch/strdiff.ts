import { readFileSync } from 'node:fs';
function load(f: string) {
  const snap = JSON.parse(readFileSync(f, 'utf8'));
  const fl = snap.snapshot.meta.node_fields; const types = snap.snapshot.meta.node_types[0];
  const nf = fl.length; const ti = fl.indexOf('type'), ni = fl.indexOf('name'), si = fl.indexOf('self_size');
  const m = new Map<string, number>();
  for (let i = 0; i < snap.nodes.length; i += nf) {
    const t = types[snap.nodes[i + ti]];
    if (t !== 'string' && t !== 'concatenated string' && t!=='array' && t !== 'object') continue;
    const k = t + ':' + String(snap.strings[snap.nodes[i + ni]]).slice(0, 50).replace(/[0-9a-f]{8,}/g, 'HEX').replace(/\d+/g, 'N');
    m.set(k, (m.get(k) ?? 0) + 1);
  }
  return m;
}
const a = load('/tmp/before.heapsnapshot'), b = load('/tmp/after.heapsnapshot');
const d = [...b].map(([k, c]) => [k, c - (a.get(k) ?? 0)] as const).filter(([, c]) => c > 200).sort((x, y) => y[1] - x[1]);
for (const [k, c] of d.slice(0, 30)) console.log(String(c).padStart(7), JSON.stringify(k));
