/**
 * Reference values: the PCR contents (SHA-256 bank) of a configuration someone approved, and how
 * to derive them from a known-good event log.
 */
import { ALG } from '../tpm/tpm2/constants.ts';
import { decodeEventLog, replay, type EventLog } from '../hwtpm/event-log.ts';
import { GVTPM_PCR, hostTcbPcrs } from '../hwtpm/host-boot.ts';

/** The PCRs a vMA's key is bound to and the VMCA judges: host TCB, GVTPM manager, PSS, vMA. */
export function vmaPcrs(): number[] {
  return [...hostTcbPcrs(), GVTPM_PCR.MANAGER, GVTPM_PCR.PSS, GVTPM_PCR.VMA];
}

export interface ApprovedConfiguration {
  readonly name: string;
  /** PCR index → SHA-256 value, hex. */
  readonly pcrs: Readonly<Record<string, string>>;
}

/** The SHA-256 values `log` replays to for `pcrs`; throws if the log has no SHA-256 bank. */
export function replaySha256(log: EventLog, pcrs: readonly number[]): Buffer[] {
  const bank = replay(log).get(ALG.SHA256);
  if (!bank) throw new RangeError('the event log has no SHA-256 bank');
  return pcrs.map((p) => bank[p]!);
}

export function configurationFromEventLog(name: string, log: EventLog | Uint8Array, pcrs: readonly number[] = vmaPcrs()): ApprovedConfiguration {
  const decoded = log instanceof Uint8Array ? decodeEventLog(log) : log;
  const values = replaySha256(decoded, pcrs);
  return { name, pcrs: Object.fromEntries(pcrs.map((p, i) => [String(p), values[i]!.toString('hex')])) };
}

/** The PCRs whose values differ from the configuration's (a PCR the configuration omits never differs). */
export function mismatchedPcrs(config: ApprovedConfiguration, pcrs: readonly number[], values: readonly Buffer[]): number[] {
  return pcrs.filter((p, i) => {
    const expected = config.pcrs[String(p)];
    return expected !== undefined && expected !== values[i]!.toString('hex');
  });
}
