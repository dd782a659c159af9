/** The NVM the crash test's VMs save: which VM, which save, padded to a realistic size. */
import { measurementOf } from './helpers.ts';

export const CRASH_MODEL = measurementOf('crash-test model');

export function crashNvm(vm: string, n: number): Buffer {
  return Buffer.from(`${vm} ${n} `.padEnd(2048, '.'));
}

export function crashNvmCounter(nvm: Buffer): number {
  return Number(nvm.toString('latin1').split(' ')[1]);
}
