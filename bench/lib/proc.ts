/** Figures about another process, read from /proc (Linux). */
import { readFileSync } from 'node:fs';

/** Linux reports utime/stime in USER_HZ ticks, which is 100 on every architecture node runs on. */
const USER_HZ = 100;

/** VmRSS and VmHWM in bytes; undefined when /proc has no such process. */
export function memoryOf(pid: number): { rss: number; hwm: number } | undefined {
  let status: string;
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8');
  } catch {
    return undefined;
  }
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(status);
    return m ? Number(m[1]) * 1024 : NaN;
  };
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

/** User + system CPU of the whole process (all threads) in microseconds, 10 ms resolution. */
export function cpuMicrosOf(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // The command name (field 2) may contain spaces and parentheses; fields resume after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return ((utime + stime) * 1e6) / USER_HZ;
}

export interface MachineCpu {
  /** Wall clock, microseconds (process.hrtime). */
  at: number;
  /** CPU time all CPUs spent busy (user, nice, system, irq, softirq), microseconds. */
  busy: number;
  /**
   * The irq + softirq part of `busy`. Loopback TCP is processed there on behalf of client and
   * server; Linux charges most of it to their process times, so it stays in `busy`.
   */
  interrupts: number;
  /** CPU time the hypervisor took away from this machine, microseconds. */
  steal: number;
}

/** A snapshot of the first line of /proc/stat; undefined off Linux. */
export function machineCpu(): MachineCpu | undefined {
  let stat: string;
  try {
    stat = readFileSync('/proc/stat', 'utf8');
  } catch {
    return undefined;
  }
  const f = stat.slice(0, stat.indexOf('\n')).trim().split(/\s+/).slice(1).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  const us = (ticks: number): number => (ticks * 1e6) / USER_HZ;
  return { at: Number(process.hrtime.bigint() / 1000n), busy: us(user + nice + system + irq + softirq), interrupts: us(irq + softirq), steal: us(steal) };
}

export interface LoadFigures {
  /** CPUs' worth of busy time (user, system, irq, softirq) on the whole machine during the measurement. */
  machineBusyCores: number;
  /** The part the measured processes account for (bench process, and the server if any). */
  ownCores: number;
  /** Everything else: other processes competing for the CPUs. */
  otherCores: number;
  /** The irq + softirq part of machineBusyCores (network processing for the socket paths, mostly ours). */
  interruptCores: number;
  /** Taken by the hypervisor. */
  stealCores: number;
}

/** Splits machine load over an interval into ours and other work; `ownMicros` is our processes' CPU in it. */
export function loadBetween(before: MachineCpu | undefined, after: MachineCpu | undefined, ownMicros: number): LoadFigures | undefined {
  if (!before || !after || after.at <= before.at) return undefined;
  const wall = after.at - before.at;
  const machineBusyCores = (after.busy - before.busy) / wall;
  const ownCores = ownMicros / wall;
  return {
    machineBusyCores,
    ownCores,
    otherCores: Math.max(0, machineBusyCores - ownCores),
    interruptCores: (after.interrupts - before.interrupts) / wall,
    stealCores: (after.steal - before.steal) / wall,
  };
}
