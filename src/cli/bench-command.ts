/**
 * `vtpmd bench [options]`: the benchmark harness (bench/run.ts, the same as `npm run bench`),
 * run in its own process so its measurements are not disturbed by this one. Every option is
 * passed through; `vtpmd bench --help` lists them.
 */
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import type { Command } from 'commander';

const HARNESS = resolve(import.meta.dirname, '..', '..', 'bench', 'run.ts');

export function registerBenchCommand(program: Command): Command {
  return program
    .command('bench')
    .description('measure PCR_Extend, Quote and CreatePrimary in process and over the swtpm socket, beside swtpm (see bench/README.md)')
    .helpOption(false)
    .allowUnknownOption()
    .allowExcessArguments()
    .argument('[options...]', 'harness options, e.g. --quick, --json, --out DIR, --scenarios, --paths')
    .action(async (args: string[]) => {
      const child = spawn(process.execPath, ['--import', 'tsx', HARNESS, ...args], { stdio: 'inherit' });
      const code = await new Promise<number>((ok) => child.once('exit', (c, signal) => ok(c ?? (signal ? 1 : 0))));
      process.exitCode = code;
    });
}
