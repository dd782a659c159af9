/**
 * Whatever the bench starts, it stops: child processes and temporary directories are registered
 * here and removed on a normal end, on an error, and on SIGINT / SIGTERM. If the process exits
 * some other way, an 'exit' hook still kills the children and removes the directories
 * (synchronously, the only way left at that point).
 */
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { progress } from './measurement.ts';

const children = new Set<ChildProcess>();
const dirs = new Set<string>();
let installed = false;
let interrupted = false;

/** True once SIGINT or SIGTERM arrived: failures after that are consequences of stopping, not findings. */
export function interruptedBySignal(): boolean {
  return interrupted;
}

export function trackChild(child: ChildProcess): void {
  children.add(child);
  child.once('exit', () => children.delete(child));
}

export function trackDir(dir: string): void {
  dirs.add(dir);
}

function alive(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

/** SIGTERM, then SIGKILL if it has not exited after `graceMs`. Resolves once it has exited. */
export function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (!alive(child)) {
    children.delete(child);
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      if (alive(child)) child.kill('SIGKILL');
    }, graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      children.delete(child);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
  dirs.delete(dir);
}

export async function cleanupAll(): Promise<void> {
  await Promise.all([...children].map((c) => stopChild(c)));
  await Promise.all([...dirs].map((d) => removeDir(d)));
}

function cleanupSync(): void {
  for (const child of children) {
    if (alive(child)) child.kill('SIGKILL');
  }
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  children.clear();
  dirs.clear();
}

/** Installs the signal and exit hooks once. A second Ctrl-C exits at once (the exit hook still cleans up). */
export function installCleanupHooks(): void {
  if (installed) return;
  installed = true;
  process.on('exit', cleanupSync);
  const onSignal = (signal: NodeJS.Signals): void => {
    const code = signal === 'SIGINT' ? 130 : 143;
    if (interrupted) process.exit(code);
    interrupted = true;
    progress(`${signal}: stopping children and removing temporary files`);
    void cleanupAll().finally(() => process.exit(code));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
}
