import { mkdtempSync, rmSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import { Host } from '../src/daemon/host.ts';
import { Tpm2Client } from '../src/hwtpm/tpm2-client.ts';
import { ALG } from '../src/tpm/tpm2/constants.ts';
const N = 400;
const stateDir = mkdtempSync(join(tmpdir(), 'vtpmd-uh-'));
const host = await Host.open({ stateDir, hostId: 'bench-host', idleUnloadMs: 0 });
const names = Array.from({ length: N }, (_, i) => `vm-${i}`);
for (let i = 0; i < N; i += 32) await Promise.all(names.slice(i, i + 32).map((n) => host.manager.create(n)));
await host.close();
const host2 = await Host.open({ stateDir, hostId: 'bench-host', idleUnloadMs: 0 });
function summary(label: string) {
  (globalThis as any).gc(); (globalThis as any).gc();
  const file = v8.writeHeapSnapshot(`/tmp/${label}.heapsnapshot`);
  const snap = JSON.parse(readFileSync(file, 'utf8'));
  const f = snap.snapshot.meta.node_fields; const types = snap.snapshot.meta.node_types[0];
  const nf = f.length; const ti = f.indexOf('type'), ni = f.indexOf('name'), si = f.indexOf('self_size');
  const by = new Map<string, [number, number]>();
  for (let i = 0; i < snap.nodes.length; i += nf) {
    const key = types[snap.nodes[i + ti]] + ':' + (types[snap.nodes[i + ti]] === 'string' || types[snap.nodes[i + ti]] === 'concatenated string' ? '' : snap.strings[snap.nodes[i + ni]]).slice(0, 60);
    const e = by.get(key) ?? [0, 0]; e[0]++; e[1] += snap.nodes[i + si]; by.set(key, e);
  }
  return by;
}
const touch = async (list: string[]) => { for (let i = 0; i < list.length; i += 32) await Promise.all(list.slice(i, i + 32).map(async (n) => { const t = new Tpm2Client(async (c) => (await host2.manager.device(n)).execute(c, 0)); await t.startup(); await t.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 1) }]); })); for (const n of list) await host2.manager.unload(n); };
await touch(names.slice(0, 100));
const before = summary('before');
await touch(names.slice(100));
const after = summary('after');
const diff: [string, number, number][] = [];
for (const [k, [c, s]] of after) { const b = before.get(k) ?? [0, 0]; if (s - b[1] > 0) diff.push([k, c - b[0], s - b[1]]); }
diff.sort((a, b) => b[2] - a[2]);
let tot = 0; for (const d of diff) tot += d[2];
console.log('total growth per VM', (tot / (N - 100)).toFixed(0), 'bytes; ext arrayBuffers', process.memoryUsage().arrayBuffers);
for (const d of diff.slice(0, 25)) console.log((d[2] / (N - 100)).toFixed(0).padStart(6), 'B/VM', String(d[1]).padStart(7), d[0]);
await host2.close(); rmSync(stateDir, { recursive: true, force: true });
