/**
 * What `GET /metrics` reports, in the Prometheus text format: per VM the commands waiting or
 * running (queue depth), and per VM and command code the number of commands and their latency
 * (a histogram). Counting happens in a device wrapper, so every path to a vTPM — socket
 * endpoints, the hypervisor — is measured the same way.
 */
import { commandCodeOf, type TpmDevice } from '../tpm/device.ts';

const BUCKETS_MS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 1000];

interface CommandStats {
  count: number;
  sumMs: number;
  buckets: number[];
}

export class VmMetrics {
  inFlight = 0;
  readonly byCode = new Map<number, CommandStats>();

  record(code: number, ms: number): void {
    let s = this.byCode.get(code);
    if (!s) this.byCode.set(code, (s = { count: 0, sumMs: 0, buckets: BUCKETS_MS.map(() => 0) }));
    s.count++;
    s.sumMs += ms;
    for (let i = 0; i < BUCKETS_MS.length; i++) if (ms <= BUCKETS_MS[i]!) s.buckets[i]!++;
  }
}

/** `device` with its commands counted into `metrics`. */
export function measured(device: TpmDevice, metrics: VmMetrics): TpmDevice {
  return new Proxy(device, {
    get(target, prop, receiver) {
      if (prop === 'executeSync') return undefined;
      if (prop !== 'execute') {
        const v = Reflect.get(target, prop, receiver);
        return typeof v === 'function' ? v.bind(target) : v;
      }
      return async (command: Uint8Array, locality: number) => {
        const code = commandCodeOf(command);
        metrics.inFlight++;
        const started = performance.now();
        try {
          return await target.execute(command, locality);
        } finally {
          metrics.inFlight--;
          metrics.record(code, performance.now() - started);
        }
      };
    },
  });
}

const esc = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

export function renderMetrics(vms: ReadonlyMap<string, VmMetrics>, extra: Record<string, number> = {}): string {
  const out: string[] = [];
  out.push("# HELP vtpmd_vm_queue_depth Commands waiting for or running on the VM's vTPM.", '# TYPE vtpmd_vm_queue_depth gauge');
  for (const [vm, m] of vms) out.push(`vtpmd_vm_queue_depth{vm="${esc(vm)}"} ${m.inFlight}`);
  out.push('# HELP vtpmd_vm_command_duration_ms Time from a command reaching the vTPM to its response, per command code.', '# TYPE vtpmd_vm_command_duration_ms histogram');
  for (const [vm, m] of vms) {
    for (const [code, s] of m.byCode) {
      const labels = `vm="${esc(vm)}",code="0x${code.toString(16).padStart(8, '0')}"`;
      BUCKETS_MS.forEach((le, i) => out.push(`vtpmd_vm_command_duration_ms_bucket{${labels},le="${le}"} ${s.buckets[i]}`));
      out.push(`vtpmd_vm_command_duration_ms_bucket{${labels},le="+Inf"} ${s.count}`);
      out.push(`vtpmd_vm_command_duration_ms_sum{${labels}} ${s.sumMs.toFixed(3)}`);
      out.push(`vtpmd_vm_command_duration_ms_count{${labels}} ${s.count}`);
    }
  }
  for (const [name, v] of Object.entries(extra)) out.push(`# TYPE ${name} gauge`, `${name} ${v}`);
  return `${out.join('\n')}\n`;
}
