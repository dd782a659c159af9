import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CommanderError } from 'commander';
import { throughputChart } from '../../bench/lib/chart.ts';
import { measureColdLoad } from '../../bench/lib/cold-load.ts';
import { hypervisorBed } from '../../bench/lib/hypervisor-path.ts';
import { inProcessBed } from '../../bench/lib/in-process.ts';
import { benchProgram, parseBenchOptions, type BenchOptions } from '../../bench/lib/options.ts';
import { measureSteady } from '../../bench/lib/steady.ts';
import type { ColdLoadScenario } from '../../bench/lib/scenarios.ts';

function parse(...args: string[]): BenchOptions {
  const program = benchProgram()
    .exitOverride()
    .configureOutput({ writeErr: () => undefined, writeOut: () => undefined });
  return parseBenchOptions(program, ['node', 'run.ts', ...args]);
}

function rejects(args: string[], message: RegExp): void {
  assert.throws(() => parse(...args), (e: unknown) => e instanceof CommanderError && message.test(e.message));
}

describe('bench options', () => {
  test('a default run covers every scenario on every path but the calibration floor, with 1, 8, 64 and 512 vTPMs', () => {
    const o = parse();
    assert.deepEqual(o.concurrency, [1, 8, 64, 512]);
    assert.deepEqual(o.paths, ['in-process', 'hypervisor', 'vtpmd', 'vtpmd-serve', 'swtpm']);
    assert.deepEqual(
      o.scenarios.map((s) => s.name),
      ['extend-sha1', 'extend', 'extend-sha384', 'quote-ecc', 'quote-rsa', 'seal', 'unseal', 'createprimary-rsa', 'cold-load'],
    );
    assert.deepEqual(o.timing, { duration: 5, warmup: 1 });
    assert.deepEqual(o.durabilities, ['per-command']);
  });

  test('--quick shortens the timing and the list of vTPM counts, and explicit values still win', () => {
    const q = parse('--quick');
    assert.deepEqual(q.concurrency, [1, 8]);
    assert.ok(q.timing.duration < 1 && q.oneShot.iterations < 10);
    const both = parse('--quick', '--concurrency', '64,1,8,8', '--duration', '2');
    assert.deepEqual(both.concurrency, [1, 8, 64]);
    assert.equal(both.timing.duration, 2);
  });

  test('scenarios are named by short name, alias or id, and keep the canonical order', () => {
    assert.deepEqual(
      parse('--scenarios', 'unseal,extend-sha256,pcr-extend-sha1').scenarios.map((s) => s.id),
      ['pcr-extend-sha1', 'pcr-extend-sha256', 'unseal'],
    );
  });

  test('bad values are refused with what the option accepts', () => {
    rejects(['--concurrency', '0'], /not a number of vTPMs from 1 to/);
    rejects(['--concurrency', '8,x'], /'x' is not a number of vTPMs/);
    rejects(['--concurrency', ','], /name at least one number of vTPMs/);
    rejects(['--scenarios', 'extend,quote'], /unknown scenario 'quote'; choose from extend-sha1, extend,/);
    rejects(['--paths', 'qemu'], /unknown path 'qemu'; choose from in-process, hypervisor/);
    rejects(['--durability', 'sometimes'], /unknown durability 'sometimes'/);
    rejects(['--duration', '0'], /--duration must be more than 0 seconds/);
    rejects(['--warmup', '-1'], /seconds ≥ 0/);
    rejects(['--rounds', '1.5'], /whole number ≥ 1/);
  });
});

describe('bench harness smoke run', () => {
  const tiny = { duration: 0.01, warmup: 0 };
  const scenarios = parse().scenarios;

  test('every steady scenario prepares, runs and tears down on two engines in process and two hypervisor partitions', async () => {
    const beds = [inProcessBed(2), await hypervisorBed(2, '/nonexistent')];
    try {
      for (const bed of beds) {
        for (const s of scenarios) {
          if (s.kind !== 'steady') continue;
          const m = await measureSteady(bed, s, tiny);
          assert.equal(m.vtpms, 2);
          assert.ok(m.ops > 0, `${s.name} on ${bed.path} completed no operation`);
        }
      }
    } finally {
      for (const bed of beds) await bed.stop();
    }
  });

  test('a cold load in process resumes an engine from saved state and answers the first command', async () => {
    const scenario = scenarios.find((s): s is ColdLoadScenario => s.kind === 'cold-load')!;
    const bed = inProcessBed(1);
    const loader = bed.coldLoader();
    if (typeof loader === 'string') assert.fail(`no in-process cold loader: ${loader}`);
    const m = await measureColdLoad(scenario, bed, await loader, { iterations: 2, seconds: 5 });
    assert.equal(m.ops, 2);
    assert.equal(m.firstResponse.slice(12, 20), '00000000');
  });

  test('the chart has one panel per steady scenario measured and a series per server', () => {
    const row = (scenario: string, peer: string, vtpms: number, opsPerSec: number) =>
      ({ scenario, scenarioTitle: scenario, path: 'swtpm-socket', peer, label: peer, vtpms, opsPerSec }) as never;
    const svg = throughputChart(
      [row('a', 'swtpm', 1, 100), row('a', 'swtpm', 8, 800), row('a', 'vtpmd-serve', 1, 50), row('b', 'swtpm', 1, 10)],
      ['a', 'b'],
      'test',
    )!;
    assert.match(svg, /^<svg /);
    assert.equal((svg.match(/<path /g) ?? []).length, 1);
    assert.equal((svg.match(/<circle /g) ?? []).length, 4);
  });
});
