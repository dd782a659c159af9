/** The results of a run as the JSON document carries them, the ratios against swtpm, and the targets. */
import type { Machine } from './machine.ts';
import type { Measurement, OneShotLimits, Timing } from './measurement.ts';

export interface Skipped {
  /** The scenario, when only it was skipped on this path. */
  scenario?: string;
  path: string;
  peer: string;
  vtpms?: number;
  reason: string;
}

export interface TargetCheck {
  name: string;
  /** The scenario it is about; targets of scenarios that did not run are left out. */
  scenario: string;
  /** What was measured, in the target's unit. */
  measured: number | null;
  /** '≥': measured must reach the threshold; '<' / '≤': measured must stay below it. */
  comparison: '≥' | '<' | '≤';
  threshold: number;
  unit: string;
  met: boolean | null;
}

export interface BenchResults {
  tool: 'vtpmd bench';
  /** 3: measurements carry `vtpms`, servers may be several processes, ratios in `vsSwtpm`, cold-load scenarios. */
  format: 3;
  startedAt: string;
  finishedAt: string;
  machine: Machine & { loadAverageAtEnd: number };
  source?: { commit: string; dirty: boolean };
  options: Timing & {
    quick: boolean;
    rounds: number;
    paths: string[];
    scenarios: string[];
    concurrency: number[];
    durability: string[];
    oneShot: OneShotLimits;
  };
  /** commandHex: the measured command as a fresh TPM gets it (one-shot: one command of a series). */
  scenarios: { id: string; name: string; kind: 'steady' | 'one-shot' | 'cold-load'; title: string; description: string; commandHex: string }[];
  peers: { name: string; version: string; label: string; argv: readonly string[] }[];
  results: Measurement[];
  skipped: Skipped[];
  targets: TargetCheck[];
  notes: string[];
}

/** Fills ratioVsSwtpm and vsSwtpm (vtpmd's figure ÷ swtpm's) for every socket measurement with a swtpm counterpart. */
export function addRatios(results: Measurement[]): void {
  for (const m of results) {
    if (m.path !== 'swtpm-socket' || m.peer === 'swtpm') continue;
    const base = results.find((b) => b.path === m.path && b.peer === 'swtpm' && b.scenario === m.scenario && b.vtpms === m.vtpms);
    if (!base) continue;
    m.ratioVsSwtpm = m.opsPerSec / base.opsPerSec;
    const srv = m.server && base.server && base.server.cpuUsPerOp > 0 ? m.server.cpuUsPerOp / base.server.cpuUsPerOp : undefined;
    const mem = m.memoryPerVtpmMB !== undefined && base.memoryPerVtpmMB ? m.memoryPerVtpmMB / base.memoryPerVtpmMB : undefined;
    m.vsSwtpm = {
      opsPerSec: m.ratioVsSwtpm,
      p50: m.latencyUs.p50 / base.latencyUs.p50,
      p99: m.latencyUs.p99 / base.latencyUs.p99,
      ...(srv !== undefined ? { serverCpuUsPerOp: srv } : {}),
      ...(mem !== undefined ? { memoryPerVtpm: mem } : {}),
    };
  }
}

/**
 * The project's stated targets for the scenarios and numbers of vTPMs that ran, checked against
 * what was measured (null when not measured, e.g. swtpm missing). A target is left out when the
 * path it is measured on was not selected.
 */
export function checkTargets(results: Measurement[], scenarioIds: readonly string[], vtpms: readonly number[], paths: readonly string[]): TargetCheck[] {
  const find = (scenario: string, path: string, peer?: string, n = 1): Measurement | undefined =>
    results.find((m) => m.scenario === scenario && m.path === path && (peer === undefined || m.peer === peer) && m.vtpms === n);
  const check = (name: string, scenario: string, measured: number | undefined, comparison: TargetCheck['comparison'], threshold: number, unit: string, on: string): TargetCheck | undefined => {
    if (!paths.includes(on)) return undefined;
    const v = measured ?? null;
    const met = v === null ? null : comparison === '≥' ? v >= threshold : comparison === '≤' ? v <= threshold : v < threshold;
    return { name, scenario, measured: v, comparison, threshold, unit, met };
  };
  const socketRatio = (scenario: string): number | undefined => find(scenario, 'swtpm-socket', 'vtpmd')?.ratioVsSwtpm;
  const medianSeconds = (m: Measurement | undefined): number | undefined => (m ? m.latencyUs.p50 / 1e6 : undefined);
  const cp = 'createprimary-rsa-2048';
  const extend = 'pcr-extend-sha256';
  const many = find(extend, 'swtpm-socket', 'vtpmd-serve', 512);
  const single = vtpms.includes(1)
    ? [
        check('socket PCR_Extend vs swtpm', extend, socketRatio(extend), '≥', 1.5, '×', 'vtpmd'),
        check('in-process PCR_Extend', extend, find(extend, 'in-process')?.opsPerSec, '≥', 300_000, 'ops/s', 'in-process'),
        check('socket Quote ECC P-256 vs swtpm', 'quote-ecc-p256', socketRatio('quote-ecc-p256'), '≥', 5, '×', 'vtpmd'),
        check('socket Quote RSA-2048 vs swtpm', 'quote-rsa-2048', socketRatio('quote-rsa-2048'), '≥', 5, '×', 'vtpmd'),
        check('CreatePrimary RSA-2048 median, socket vtpmd', cp, medianSeconds(find(cp, 'swtpm-socket', 'vtpmd')), '<', 1, 's', 'vtpmd'),
        check('CreatePrimary RSA-2048 median, in-process', cp, medianSeconds(find(cp, 'in-process')), '<', 1, 's', 'in-process'),
      ]
    : [];
  const at512 = vtpms.includes(512)
    ? [
        check('PCR_Extend with 512 vTPMs, vtpmd serve vs 512 swtpm', extend, many?.ratioVsSwtpm, '≥', 2, '×', 'vtpmd-serve'),
        check('memory per vTPM with 512 vTPMs, vtpmd serve vs swtpm', extend, many?.vsSwtpm?.memoryPerVtpm, '≤', 0.05, '×', 'vtpmd-serve'),
      ]
    : [];
  return [...single, ...at512].filter((t): t is TargetCheck => t !== undefined && scenarioIds.includes(t.scenario));
}
