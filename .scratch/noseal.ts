import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Session } from 'node:inspector/promises';
import { BlobKey } from "../src/pss/blob.ts";
if (process.env.NOSEAL) (BlobKey.prototype as any).seal = function (_h: any, nvm: Uint8Array) { return Buffer.from(nvm); };
import { Host } from '../src/daemon/host.ts';
import { Tpm2Client } from '../src/hwtpm/tpm2-client.ts';
import { pcrExtendSha256 } from '../bench/lib/scenarios.ts';
const N = Number(process.argv[2] ?? 256), seconds = Number(process.argv[3] ?? 6), prof = process.argv[4];
const stateDir = mkdtempSync(join(tmpdir(), 'vtpmd-es-'));
const host = await Host.open({ stateDir, hostId: 'bench-host', idleUnloadMs: 0 });
const names = Array.from({ length: N }, (_, i) => `vm-${i}`);
for (let i = 0; i < N; i += 32) await Promise.all(names.slice(i, i + 32).map((n) => host.manager.create(n)));
for (const n of names) await new Tpm2Client(async (c) => (await host.manager.device(n)).execute(c, 0)).startup();
const command = pcrExtendSha256().sampleCommand;
async function run(secs: number) {
  let done = 0; const until = performance.now() + secs * 1000;
  const cpu0 = process.cpuUsage(); const c0 = host.pss.status().commits;
  await Promise.all(names.map(async (n) => {
    const device = await host.manager.device(n);
    while (performance.now() < until) { await device.execute(command, 0); done++; }
  }));
  const cpu = process.cpuUsage(cpu0);
  console.log(`${Math.round(done / secs)}/s  cpu ${( (cpu.user + cpu.system) / done).toFixed(1)} µs/op (user ${(cpu.user/done).toFixed(1)} sys ${(cpu.system/done).toFixed(1)}) saves/commit ${(done/(host.pss.status().commits-c0)).toFixed(1)}`);
}
await run(2);
let s: Session | undefined;
if (prof) { s = new Session(); s.connect(); await s.post('Profiler.enable'); await s.post('Profiler.start'); }
await run(seconds);
if (s) { const { profile } = await s.post('Profiler.stop'); writeFileSync(prof, JSON.stringify(profile)); }
await host.close();
rmSync(stateDir, { recursive: true, force: true });
