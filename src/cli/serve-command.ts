/**
 * `vtpmd serve`: the lab host's daemon, in the foreground. It prints one JSON line once the
 * control API listens — {"event":"listening","api":"unix:///…/vtpmd.sock"} — and
 * {"event":"stopped"} after a clean stop (SIGINT or SIGTERM: queues drained, PSS flushed).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { Logger } from 'pino';
import type { ApiAddress } from '../daemon/control-api.ts';
import type { DaemonOptions } from '../daemon/daemon.ts';
import { parseAttachedTpm } from '../hwtpm/attached-tpm.ts';
import { allFromPem, parseCertificate, type ParsedCertificate } from '../hwtpm/credentials/x509.ts';
import { stateDirFallback, watchStopSignals, writeEvent } from './socket-command.ts';

interface ServeOptions {
  api?: string;
  tokenFile?: string;
  hostId?: string;
  hostTpm?: string;
  ekCa?: string[];
  hostEventLog?: string;
  ownerAuthFile?: string;
  endorsementAuthFile?: string;
}

export function registerServeCommand(program: Command, logger: Logger): Command {
  return program
    .command('serve')
    .description("run the lab host's daemon: the host TPM chip, the PSS, every VM's vTPM and the control API")
    .option('--api <address>', 'control API: unix:///path (default <state>/vtpmd.sock, mode 0600) or tcp://127.0.0.1:PORT (needs a token)')
    .option('--token-file <file>', 'bearer token for a TCP control API (or VTPMD_API_TOKEN)')
    .option('--host-id <id>', "the simulated host's identity (default: the hostname)")
    .option('--host-tpm <tcti>', "attach to this TPM 2.0 as the host's TPM instead of simulating one: device[:PATH] (default /dev/tpmrm0), swtpm:host=HOST,port=PORT or swtpm:path=SOCKET")
    .option('--ek-ca <pem-file...>', "with --host-tpm: certificates its EK certificates chain to (its manufacturer's CA)")
    .option('--host-event-log <file>', "with --host-tpm: the firmware's TCG event log, e.g. /sys/kernel/security/tpm0/binary_bios_measurements")
    .option('--owner-auth-file <file>', "with --host-tpm: a file holding its owner authorization (one trailing newline ignored)")
    .option('--endorsement-auth-file <file>', "with --host-tpm: a file holding its endorsement authorization (one trailing newline ignored)")
    .action(async (opts: ServeOptions, command: Command) => {
      const stateDir = stateDirFallback(command, undefined);
      const log = logger.child({ command: 'serve' });
      let api: ApiAddress;
      let hostTpm: DaemonOptions['hostTpm'];
      try {
        api = apiAddress(opts, stateDir);
        hostTpm = attachedTpmOptions(opts);
      } catch (e) {
        command.error(`error: ${(e as Error).message}`, { exitCode: 1 });
      }
      const stop = watchStopSignals(log);
      try {
        const { startDaemon } = await import('../daemon/daemon.ts');
        const daemon = await startDaemon({ stateDir, api, logger: log, ...(opts.hostId ? { hostId: opts.hostId } : {}), ...(hostTpm ? { hostTpm } : {}) });
        writeEvent({ event: 'listening', api: daemon.apiUrl, state: stateDir });
        log.info({ api: daemon.apiUrl, state: stateDir }, 'vtpmd serving');
        await stop.requested;
        await daemon.stop();
        writeEvent({ event: 'stopped' });
      } finally {
        stop.dispose();
      }
    });
}

function apiAddress(opts: ServeOptions, stateDir: string): ApiAddress {
  const spec = opts.api ?? `unix://${join(stateDir, 'vtpmd.sock')}`;
  if (spec.startsWith('unix://')) return { type: 'unix', path: spec.slice('unix://'.length) };
  const m = /^(?:tcp|http):\/\/(\[[^\]]+\]|[^:/]+):(\d+)\/?$/.exec(spec);
  if (!m) throw new Error(`--api ${spec}: expected unix:///path or tcp://127.0.0.1:PORT`);
  const host = m[1]!.replace(/^\[|\]$/g, '');
  if (!['127.0.0.1', '::1', 'localhost'].includes(host)) throw new Error(`--api ${spec}: the control API listens on loopback only`);
  const token = opts.tokenFile ? readFileSync(opts.tokenFile, 'utf8').trim() : process.env.VTPMD_API_TOKEN;
  if (!token) throw new Error('a TCP control API needs a bearer token: --token-file FILE or VTPMD_API_TOKEN');
  return { type: 'tcp', host, port: Number(m[2]), token };
}

function attachedTpmOptions(opts: ServeOptions): DaemonOptions['hostTpm'] {
  if (opts.hostTpm === undefined) {
    if (opts.ekCa?.length) throw new Error('--ek-ca is for an attached host TPM: give --host-tpm too');
    for (const [option, given] of [['--host-event-log', opts.hostEventLog], ['--owner-auth-file', opts.ownerAuthFile], ['--endorsement-auth-file', opts.endorsementAuthFile]] as const) {
      if (given !== undefined) throw new Error(`${option} is for an attached host TPM: give --host-tpm too`);
    }
    return undefined;
  }
  return {
    hostTpm: parseAttachedTpm(opts.hostTpm),
    ekRoots: (opts.ekCa ?? []).flatMap(readCertificates),
    ...(opts.hostEventLog !== undefined ? { firmwareLog: readOption('--host-event-log', opts.hostEventLog) } : {}),
    hierarchyAuth: {
      ...(opts.ownerAuthFile !== undefined ? { owner: readSecret('--owner-auth-file', opts.ownerAuthFile) } : {}),
      ...(opts.endorsementAuthFile !== undefined ? { endorsement: readSecret('--endorsement-auth-file', opts.endorsementAuthFile) } : {}),
    },
  };
}

/** A file's bytes without one trailing newline (as `echo` writes one). Its contents never reach an error message. */
function readSecret(option: string, file: string): Buffer {
  const bytes = readOption(option, file);
  const end = bytes.at(-1) === 0x0a ? (bytes.at(-2) === 0x0d ? bytes.length - 2 : bytes.length - 1) : bytes.length;
  return bytes.subarray(0, end);
}

function readOption(option: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new Error(`${option} ${file}: ${(e as Error).message}`);
  }
}

/** Every certificate of a PEM file (a bundle holds several). */
function readCertificates(file: string): ParsedCertificate[] {
  const blocks = allFromPem(readOption('--ek-ca', file).toString('utf8'));
  if (blocks.length === 0) throw new Error(`--ek-ca ${file}: no PEM certificate in it`);
  return blocks.map((der, i) => parseCertificate(der, `--ek-ca ${file} (certificate ${i + 1})`));
}
