import { startedEngine } from '../bench/lib/in-process.ts';
import { pcrExtendCommand } from '../bench/lib/commands.ts';
const alg = Number(process.argv[2] ?? 0x0b);
const e = startedEngine();
const cmd = pcrExtendCommand(alg, 16);
for (let round = 0; round < 12; round++) {
  const t0 = process.hrtime.bigint();
  const N = 400_000;
  for (let i = 0; i < N; i++) e.execute(cmd, 0);
  const dt = Number(process.hrtime.bigint() - t0);
  console.log(`${(N / dt * 1e9 / 1000).toFixed(1)}k/s  ${(dt / N).toFixed(0)} ns/op`);
}
