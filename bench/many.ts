/**
 * Many vTPMs on one host, vtpmd against swtpm as libvirt runs it: for each count N, one
 * `vtpmd serve` holding N VMs (each with its own swtpm-protocol endpoint; once with every state
 * change durable before its response, once with batched saves) and N `swtpm socket --tpm2`
 * processes (which keep PCRs in memory only); the same client opens one data connection per
 * vTPM and keeps one PCR_Extend in flight on each. Reports aggregate ops/s, p50/p99 latency and
 * memory (vtpmd's RSS against the sum of the swtpm processes'), and writes an SVG chart of
 * throughput against N.
 *
 *   node --import tsx bench/many.ts [--counts 1,8,64,512] [--seconds 5] [--json] [--out DIR]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { callApi } from '../src/cli/api-client.ts';
import { DataChannelClient } from './lib/data-client.ts';
import { describeMachine } from './lib/machine.ts';
import { findOnPath, startSwtpm, type Peer } from './lib/peers.ts';
import { memoryOf } from './lib/proc.ts';
import { pcrExtendSha256 } from './lib/scenarios.ts';
import { percentile } from './lib/stats.ts';

const { values } = parseArgs({
  options: {
    counts: { type: 'string', default: '1,8,64,512' },
    seconds: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
    out: { type: 'string' },
  },
});
const counts = values.counts!.split(',').map(Number);
const seconds = Number(values.seconds);
const log = (m: string) => process.stderr.write(`${m}\n`);
const BIN = resolve(import.meta.dirname, '..', 'bin', 'vtpmd.js');
const command = pcrExtendSha256().sampleCommand;

interface Row {
  server: 'vtpmd' | 'vtpmd-batched' | 'swtpm';
  vtpms: number;
  opsPerSecond: number;
  p50us: number;
  p99us: number;
  memoryMB: number;
}

/** One connection per endpoint, one command in flight on each, for `seconds`. */
async function drive(endpoints: { host: string; port: number }[], label: string): Promise<{ ops: number; latencies: number[] }> {
  const clients = await Promise.all(endpoints.map((e) => DataChannelClient.connect(e.host, e.port, label)));
  for (const c of clients) await c.exchange(command);
  const latencies: number[] = [];
  let ops = 0;
  const until = performance.now() + seconds * 1000;
  await Promise.all(
    clients.map(async (c) => {
      while (performance.now() < until) {
        const t = performance.now();
        await c.exchange(command);
        if ((ops++ & 7) === 0) latencies.push((performance.now() - t) * 1000);
      }
    }),
  );
  await Promise.all(clients.map((c) => c.close()));
  latencies.sort((a, b) => a - b);
  return { ops, latencies };
}

async function measureVtpmd(n: number, work: string, durability: 'per-command' | 'batched'): Promise<Row> {
  const state = join(work, `vtpmd-${n}-${durability}`);
  const child: ChildProcess = spawn(process.execPath, [BIN, '--state', state, 'serve', '--host-id', 'bench-host'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, VTPMD_LOG_LEVEL: 'warn' } });
  try {
    const api = await new Promise<string>((ok, fail) => {
      child.once('exit', (code) => fail(new Error(`vtpmd serve exited (${code})`)));
      createInterface({ input: child.stdout! }).on('line', (l) => {
        const e = JSON.parse(l) as { event: string; api?: string };
        if (e.event === 'listening') ok(e.api!);
      });
    });
    log(`  vtpmd: creating ${n} VMs…`);
    const endpoints: { host: string; port: number }[] = [];
    for (let i = 0; i < n; i++) {
      const vm = (await callApi(api, 'POST', '/vms', { name: `vm${i}`, durability })).json as { endpoints: { swtpm: { data: string } } };
      const u = new URL(vm.endpoints.swtpm.data);
      endpoints.push({ host: u.hostname, port: Number(u.port) });
    }
    log(`  vtpmd (${durability}): ${n} vTPMs extending…`);
    const r = await drive(endpoints, 'vtpmd');
    return { server: durability === 'batched' ? 'vtpmd-batched' : 'vtpmd', vtpms: n, opsPerSecond: r.ops / seconds, p50us: percentile(r.latencies, 50), p99us: percentile(r.latencies, 99), memoryMB: (memoryOf(child.pid!)?.rss ?? 0) / 2 ** 20 };
  } finally {
    const exited = new Promise((ok) => child.once('exit', ok));
    child.kill('SIGTERM');
    await exited;
  }
}

async function measureSwtpm(n: number, binary: string, work: string): Promise<Row> {
  log(`  swtpm: starting ${n} processes…`);
  const peers: Peer[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const dir = join(work, `swtpm-${n}-${i}`);
      mkdirSync(dir, { recursive: true });
      peers.push(await startSwtpm(binary, dir));
    }
    log(`  swtpm: ${n} processes extending…`);
    const r = await drive(peers.map((p) => ({ host: p.host, port: p.dataPort })), 'swtpm');
    const rss = peers.reduce((sum, p) => sum + (memoryOf(p.pid)?.rss ?? 0), 0);
    return { server: 'swtpm', vtpms: n, opsPerSecond: r.ops / seconds, p50us: percentile(r.latencies, 50), p99us: percentile(r.latencies, 99), memoryMB: rss / 2 ** 20 };
  } finally {
    await Promise.all(peers.map((p) => p.stop()));
  }
}

/** Throughput against the number of vTPMs, both servers, log-scaled x axis. */
function chart(rows: Row[]): string {
  const W = 640;
  const H = 400;
  const m = { l: 70, r: 20, t: 40, b: 50 };
  const xs = [...new Set(rows.map((r) => r.vtpms))].sort((a, b) => a - b);
  const maxY = Math.max(...rows.map((r) => r.opsPerSecond)) * 1.1 || 1;
  const x = (n: number) => m.l + (xs.length === 1 ? 0 : (Math.log(n) - Math.log(xs[0]!)) / (Math.log(xs[xs.length - 1]!) - Math.log(xs[0]!))) * (W - m.l - m.r);
  const y = (v: number) => H - m.b - (v / maxY) * (H - m.t - m.b);
  const series = (server: Row['server'], color: string) => {
    const pts = rows.filter((r) => r.server === server).sort((a, b) => a.vtpms - b.vtpms);
    const path = pts.map((p, i) => `${i ? 'L' : 'M'}${x(p.vtpms).toFixed(1)},${y(p.opsPerSecond).toFixed(1)}`).join(' ');
    return `<path d="${path}" fill="none" stroke="${color}" stroke-width="2"/>` + pts.map((p) => `<circle cx="${x(p.vtpms).toFixed(1)}" cy="${y(p.opsPerSecond).toFixed(1)}" r="3" fill="${color}"/>`).join('');
  };
  const ticks = [0, 0.25, 0.5, 0.75, 1].map((f) => f * maxY);
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">PCR_Extend throughput against the number of vTPMs</text>
<line x1="${m.l}" y1="${H - m.b}" x2="${W - m.r}" y2="${H - m.b}" stroke="black"/><line x1="${m.l}" y1="${m.t}" x2="${m.l}" y2="${H - m.b}" stroke="black"/>
${xs.map((n) => `<text x="${x(n).toFixed(1)}" y="${H - m.b + 18}" text-anchor="middle">${n}</text>`).join('')}
${ticks.map((v) => `<text x="${m.l - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${Math.round(v).toLocaleString('en')}</text>`).join('')}
<text x="${W / 2}" y="${H - 12}" text-anchor="middle">vTPMs (one connection each)</text>
<text x="16" y="${H / 2}" transform="rotate(-90 16 ${H / 2})" text-anchor="middle">ops/s (aggregate)</text>
${series('vtpmd', '#1f77b4')}${series('vtpmd-batched', '#2ca02c')}${series('swtpm', '#d62728')}
<text x="${W - m.r - 200}" y="${m.t + 10}" fill="#1f77b4">vtpmd, durable per command</text><text x="${W - m.r - 200}" y="${m.t + 26}" fill="#2ca02c">vtpmd, batched saves</text><text x="${W - m.r - 200}" y="${m.t + 42}" fill="#d62728">swtpm (a process each)</text>
</svg>
`;
}

const work = mkdtempSync(join(tmpdir(), 'vtpmd-many-'));
const rows: Row[] = [];
try {
  const swtpm = findOnPath('swtpm');
  if (!swtpm) log('swtpm is not installed: measuring vtpmd alone');
  for (const n of counts) {
    log(`${n} vTPMs:`);
    rows.push(await measureVtpmd(n, work, 'per-command'));
    rows.push(await measureVtpmd(n, work, 'batched'));
    if (swtpm) rows.push(await measureSwtpm(n, swtpm, work));
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

const machine = describeMachine();
if (values.out) {
  mkdirSync(values.out, { recursive: true });
  writeFileSync(join(values.out, 'many.json'), `${JSON.stringify({ machine, seconds, rows }, null, 2)}\n`);
  writeFileSync(join(values.out, 'many.svg'), chart(rows));
}
if (values.json) process.stdout.write(`${JSON.stringify({ machine, seconds, rows }, null, 2)}\n`);
else {
  console.log(`PCR_Extend SHA-256, one connection per vTPM, ${seconds} s — ${machine.cpuModel}, ${machine.cores} cores, Node ${process.versions.node}`);
  console.log('vTPMs  server           ops/s      p50 µs    p99 µs   memory MB   vs swtpm (ops/s, memory)');
  for (const r of rows) {
    const peer = rows.find((o) => o.server === 'swtpm' && o.vtpms === r.vtpms);
    const ratio = r.server !== 'swtpm' && peer ? `${(r.opsPerSecond / peer.opsPerSecond).toFixed(2)}×, ${(r.memoryMB / peer.memoryMB).toFixed(3)}×` : '';
    console.log(`${String(r.vtpms).padStart(5)}  ${r.server.padEnd(13)} ${r.opsPerSecond.toFixed(0).padStart(9)} ${r.p50us.toFixed(0).padStart(10)} ${r.p99us.toFixed(0).padStart(9)} ${r.memoryMB.toFixed(1).padStart(11)}   ${ratio}`);
  }
}
