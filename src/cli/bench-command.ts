/**
 * `vtpmd bench [options]`: the benchmark harness (bench/run.ts, the same as `npm run bench`),
 * run in its own process so its measurements are not disturbed by this one. Every option is
 * passed through; `vtpmd bench --help` lists them. `vtpmd bench many|scale|hypervisor|pss …`
 * runs the host-level benchmarks instead (N vTPMs against N swtpm processes; vTPM creation,
 * memory and reload; the CRB path; the PSS alone).
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import type { Command } from 'commander';

const BENCH = resolve(import.meta.dirname, '..', '..', 'bench');
const SUITES: Record<string, string> = { many: 'many.ts', scale: 'vtpm-scale.ts', hypervisor: 'hypervisor.ts', pss: 'pss.ts' };

export function registerBenchCommand(program: Command): Command {
  return program
    .command('bench')
    .description('measure PCR_Extend, Quote and CreatePrimary in process and over the swtpm socket, beside swtpm (see bench/README.md)')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[options...]', 'harness options (--quick, --json, --out DIR, --scenarios, --paths…), or many|scale|hypervisor|pss and their options')
    .action(async (args: string[]) => {
      const suite = SUITES[args[0] ?? ''];
      const script = resolve(BENCH, suite ?? 'run.ts');
      const rest = suite ? args.slice(1) : args;
      // The scale suite reports heap per vTPM, which needs an explicit garbage collection.
      const flags = args[0] === 'scale' ? ['--expose-gc'] : [];
      const child = spawn(process.execPath, [...flags, '--import', 'tsx', script, ...rest], { stdio: 'inherit' });
      const code = await new Promise<number>((ok) => child.once('exit', (c, signal) => ok(c ?? (signal ? 1 : 0))));
      process.exitCode = code;
    });
}
