/**
 * Cold loads over the swtpm socket protocol, each server the way it is brought up for a VM:
 * vtpmd serve starts a stopped VM (its vTPM leaves memory when the VM stops and reloads from the
 * PSS when it starts); swtpm is a new process on the state directory the VM's last one left.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ColdLoader } from './bed.ts';
import { stopChild } from './cleanup.ts';
import { DataChannelClient } from './data-client.ts';
import { makeExchange } from './exchange.ts';
import { HOST, exitText, freePortPair, spawnLogged, startSwtpm, swtpmArgv, withLog } from './peers.ts';
import type { ServeDaemon } from './serve-peer.ts';

const VM = 'cold';
/** A server that is not listening this long after it was started has failed. */
const LISTEN_TIMEOUT_MS = 10_000;

async function send(client: DataChannelClient, command: Buffer, who: string): Promise<void> {
  await makeExchange((c) => client.exchange(c), who, [])(command, 'the seed command');
}

export function serveColdLoader(daemon: ServeDaemon): ColdLoader {
  let client: DataChannelClient | undefined;
  return {
    covers:
      'POST /vms/NAME/start of a stopped VM (the vTPM reloaded from the PSS, platform reset and Startup, endpoint opened), ' +
      'then connect to its data endpoint and the first command until its response',
    prepare: async (seed) => {
      const e = await daemon.createVm(VM);
      const c = await DataChannelClient.connect(e.host, e.port, 'vtpmd serve');
      try {
        await send(c, seed, 'vtpmd serve');
      } finally {
        await c.close();
      }
    },
    makeCold: () => daemon.stopVm(VM),
    firstCommand: async (command) => {
      const e = await daemon.startVm(VM);
      client = await DataChannelClient.connect(e.host, e.port, 'vtpmd serve');
      return client.exchange(command);
    },
    after: async () => {
      await client?.close();
      client = undefined;
    },
    close: async () => undefined,
  };
}

/**
 * Connects as soon as the port accepts, retrying every millisecond; fails if the process exits
 * first. Connecting to a port nobody listens on can, rarely, connect the socket to itself.
 */
async function connectWhenListening(child: ChildProcess, port: number, logFile: string): Promise<DataChannelClient> {
  const deadline = Date.now() + LISTEN_TIMEOUT_MS;
  for (;;) {
    try {
      const client = await DataChannelClient.connect(HOST, port, 'swtpm');
      if (client.localPort !== port) return client;
      await client.close();
    } catch (err) {
      if (child.exitCode !== null || child.signalCode !== null) throw withLog(`swtpm ${exitText(child)} before it was listening on ${port}`, logFile);
      if (Date.now() > deadline) throw withLog(`swtpm did not listen on ${port} within ${LISTEN_TIMEOUT_MS / 1000} s: ${(err as Error).message}`, logFile);
      await new Promise((r) => setTimeout(r, 1));
    }
  }
}

export function swtpmColdLoader(binary: string, workDir: string): ColdLoader {
  const dir = join(workDir, 'swtpm-cold');
  const logFile = join(dir, 'swtpm.log');
  let stateDir = '';
  let port = 0;
  let child: ChildProcess | undefined;
  let client: DataChannelClient | undefined;
  return {
    covers: 'spawn `swtpm socket --tpm2` on the existing state directory, connect as soon as it listens, the first command until its response',
    prepare: async (seed) => {
      mkdirSync(dir, { recursive: true });
      const peer = await startSwtpm(binary, dir);
      stateDir = peer.stateDir!;
      try {
        const c = await DataChannelClient.connect(peer.host, peer.dataPort, 'swtpm');
        try {
          await send(c, seed, 'swtpm');
        } finally {
          await c.close();
        }
      } finally {
        await peer.stop();
      }
    },
    makeCold: async () => {
      port = await freePortPair();
    },
    firstCommand: async (command) => {
      child = spawnLogged(swtpmArgv(binary, port, stateDir), logFile);
      client = await connectWhenListening(child, port, logFile);
      return client.exchange(command);
    },
    after: async () => {
      await client?.close();
      if (child) await stopChild(child);
      client = undefined;
      child = undefined;
    },
    close: async () => undefined,
  };
}
