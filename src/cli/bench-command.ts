/**
 * `vtpmd bench [options]`: the benchmark harness (bench/run.ts, the same as `npm run bench`),
 * run in its own process so its measurements are not disturbed by this one. Every option is
 * passed through; `vtpmd bench --help` lists them. `vtpmd bench many …` is the harness preset to
 * PCR_Extend on vtpmd serve (both durability modes) against swtpm processes, for 1 to 512 vTPMs;
 * `vtpmd bench scale|hypervisor|pss|rsa-keys …` runs the host-level benchmarks instead (vTPM
 * creation, memory and reload; the CRB path's fairness; the PSS alone; what one vTPM making RSA
 * keys costs the others).
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import type { Command } from 'commander';

const BENCH = resolve(import.meta.dirname, '..', '..', 'bench');
/** Each suite: its script and the arguments that come before the user's (which override them). */
const SUITES: Record<string, { script: string; preset: string[] }> = {
  many: { script: 'run.ts', preset: ['--scenarios', 'extend', '--paths', 'vtpmd-serve,swtpm', '--durability', 'per-command,batched'] },
  scale: { script: 'vtpm-scale.ts', preset: [] },
  hypervisor: { script: 'hypervisor.ts', preset: [] },
  pss: { script: 'pss.ts', preset: [] },
  'rsa-keys': { script: 'rsa-keys.ts', preset: [] },
};

export function registerBenchCommand(program: Command): Command {
  return program
    .command('bench')
    .description(
      'measure PCR_Extend, Quote, Seal/Unseal, CreatePrimary and vTPM cold load in process, through the hypervisor and over the swtpm socket, ' +
        'with 1 to 512 vTPMs, beside swtpm (see bench/README.md)',
    )
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[options...]', 'harness options (--quick, --json, --out DIR, --scenarios, --paths, --concurrency…), or many|scale|hypervisor|pss|rsa-keys and their options')
    .action(async (args: string[]) => {
      const suite = SUITES[args[0] ?? ''];
      const script = resolve(BENCH, suite?.script ?? 'run.ts');
      const rest = suite ? [...suite.preset, ...args.slice(1)] : args;
      // The scale suite reports heap per vTPM, which needs an explicit garbage collection.
      const flags = args[0] === 'scale' ? ['--expose-gc'] : [];
      const child = spawn(process.execPath, [...flags, '--import', 'tsx', script, ...rest], { stdio: 'inherit' });
      const code = await new Promise<number>((ok) => child.once('exit', (c, signal) => ok(c ?? (signal ? 1 : 0))));
      process.exitCode = code;
    });
}
