import { startedEngine } from '../bench/lib/in-process.ts';
import { quoteEccP256 } from '../bench/lib/scenarios.ts';
import { makeExchange } from '../bench/lib/exchange.ts';
const e = startedEngine();
const sc = quoteEccP256();
const ex = makeExchange(async (c) => e.execute(c, 0), 'engine', []);
const { command } = await sc.prepare(ex);
// Let idle turns refill nonces, as a server between requests would.
for (let round = 0; round < 6; round++) {
  const t0 = process.hrtime.bigint(); const N = 3000;
  for (let i = 0; i < N; i++) { e.execute(command, 0); if (i % 8 === 0) await new Promise((r) => setImmediate(r)); }
  const dt = Number(process.hrtime.bigint() - t0);
  console.log(`${(dt / N / 1000).toFixed(1)} µs/op`);
}
