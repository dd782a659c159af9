/**
 * `vtpmd socket`: serves one TPM over the swtpm socket protocol, accepting `swtpm socket`'s own
 * option syntax for what vtpmd implements, so scripts and tools written for swtpm can start vtpmd
 * instead. It always runs in the foreground; SIGINT or SIGTERM (or a client's CMD_SHUTDOWN) stop
 * it cleanly: listeners closed, the device flushed; a second signal exits at once.
 *
 * Machine-readable output. Once both channels listen, exactly one line is written to stdout:
 *
 *   {"event":"listening","data":"tcp://127.0.0.1:2321","ctrl":"tcp://127.0.0.1:2322"}
 *
 * `data` and `ctrl` are `tcp://HOST:PORT` (IPv6 hosts in brackets) or `unix:///absolute/path`,
 * with the real port numbers when port 0 was asked for. After a clean stop one more line follows:
 *
 *   {"event":"stopped"}
 *
 * Log lines (pino) go wherever the caller's logger writes; if that is stdout too, pick the
 * `"event"` lines out by that key.
 */
import type { Command } from 'commander';
import type { Logger } from 'pino';
import type { TpmDevice } from '../tpm/device.ts';
import {
  DEFAULT_DATA_PORT,
  OptionError,
  TransportError,
  parseCtrlOption,
  parseFlagsOption,
  parseServerOption,
  parseTpmstateOption,
  startSwtpmServer,
  type Endpoint,
  type SwtpmFlags,
} from '../transport/index.ts';

export interface OpenDeviceOptions {
  stateDir: string;
  tpm2: boolean;
  /** Serve the simulated chip as a booted lab host's TPM (manufactured, host boot measured). */
  chip?: boolean;
}

export type OpenDevice = (opts: OpenDeviceOptions) => Promise<TpmDevice>;

export const FALLBACK_STATE_DIR = './vtpmd-state';

interface SocketOptions {
  tpm2?: boolean;
  chip?: boolean;
  server?: string;
  ctrl?: string;
  tpmstate?: string;
  flags?: string;
  daemon?: boolean;
}

interface SocketPlan {
  tpm2: boolean;
  chip: boolean;
  data: Endpoint;
  ctrl: Endpoint;
  disconnect: boolean;
  flags: SwtpmFlags;
  stateDir: string;
}

/**
 * Adds `vtpmd socket`. The state directory is `--tpmstate dir=…`, else the global `--state`
 * option if the program defines one, else `defaultStateDir`, else ./vtpmd-state. The action is
 * async: run the program with parseAsync().
 */
export function registerSocketCommand(program: Command, openDevice: OpenDevice, logger: Logger, defaultStateDir?: string): Command {
  return program
    .command('socket')
    .description('serve a TPM over the swtpm socket protocol (data + control channel), as `swtpm socket` does')
    .option('--tpm2', 'serve a TPM 2.0 (without it a TPM 1.2 is asked for)')
    .option('--server <options>', `data channel: [type=tcp][,port=P][,bindaddr=A][,disconnect] or type=unixio,path=F[,mode=0770] (default port ${DEFAULT_DATA_PORT})`)
    .option('--ctrl <options>', 'control channel: type=tcp,port=Q[,bindaddr=A] or type=unixio,path=F[,mode=0770] (default: TCP, data port + 1)')
    .option('--chip', "serve the simulated hardware TPM (2.0 with --tpm2, else 1.2) as a freshly booted lab host's: manufactured (EKs, EK certificates), host boot measured, event log at <tpmstate>/eventlog.bin, manufacturer root at <tpmstate>/manufacturer-ca.pem")
    .option('--tpmstate <options>', 'dir=D: where the TPM keeps its state')
    .option('--flags <flags>', 'not-need-init, startup-clear|startup-state|startup-none (comma-separated)')
    .option('-d, --daemon', 'not supported: vtpmd socket stays in the foreground; use a service manager')
    .action(async (opts: SocketOptions, command: Command) => {
      const log = logger.child({ command: 'socket' });
      const stop = watchStopSignals(log);
      try {
        let plan: SocketPlan;
        try {
          plan = planSocket(opts, stateDirFallback(command, defaultStateDir));
        } catch (err) {
          failUsage(command, err);
        }
        const device = await openOrFail(command, openDevice, { stateDir: plan.stateDir, tpm2: plan.tpm2, chip: plan.chip });
        let server;
        try {
          server = await startSwtpmServer(device, {
            data: plan.data,
            ctrl: plan.ctrl,
            disconnect: plan.disconnect,
            flags: plan.flags,
            logger: log,
          });
        } catch (err) {
          await device.flush().catch(() => undefined);
          failUsage(command, err);
        }
        writeEvent({ event: 'listening', data: server.data, ctrl: server.ctrl });
        await serveUntilStopped(server, device, stop, log);
      } finally {
        stop.dispose();
      }
    });
}

function planSocket(opts: SocketOptions, fallbackStateDir: string): SocketPlan {
  if (opts.daemon) throw new OptionError('--daemon: vtpmd socket always runs in the foreground; start it from a service manager instead');
  const server = opts.server === undefined ? { endpoint: { type: 'tcp', port: DEFAULT_DATA_PORT } as const, disconnect: false } : parseServerOption(opts.server);
  const flags = opts.flags === undefined ? {} : parseFlagsOption(opts.flags);
  if (opts.chip) {
    if (flags.startup !== undefined) throw new OptionError(`--chip: the host firmware already started the chip; drop startup-${flags.startup} from --flags`);
    // A booted host's TPM is already running: waiting for CMD_INIT would reset away the boot measurements.
    flags.notNeedInit = true;
  }
  return {
    tpm2: opts.tpm2 === true,
    chip: opts.chip === true,
    data: server.endpoint,
    disconnect: server.disconnect,
    ctrl: opts.ctrl === undefined ? defaultCtrl(server.endpoint) : parseCtrlOption(opts.ctrl),
    flags,
    stateDir: opts.tpmstate === undefined ? fallbackStateDir : parseTpmstateOption(opts.tpmstate),
  };
}

/**
 * tcti-swtpm looks for the control channel at data port + 1, so that is the default; with port 0
 * both become a free adjacent pair.
 */
function defaultCtrl(data: Endpoint): Endpoint {
  if (data.type !== 'tcp') return { type: 'tcp', port: DEFAULT_DATA_PORT + 1 };
  if (data.port === 65535) throw new OptionError('--ctrl: the data port is 65535, so data port + 1 does not exist; give --ctrl explicitly');
  return { type: 'tcp', port: data.port === 0 ? 0 : data.port + 1, ...(data.bindaddr === undefined ? {} : { bindaddr: data.bindaddr }) };
}

export function stateDirFallback(command: Command, defaultStateDir: string | undefined): string {
  const global = command.optsWithGlobals()['state'];
  return typeof global === 'string' ? global : (defaultStateDir ?? FALLBACK_STATE_DIR);
}

/** Opens the device or ends the command with the device's own explanation and exit code 1. */
export async function openOrFail(command: Command, openDevice: OpenDevice, opts: OpenDeviceOptions): Promise<TpmDevice> {
  try {
    return await openDevice(opts);
  } catch (err) {
    command.error(`error: cannot open the TPM in ${opts.stateDir}: ${(err as Error).message}`, { exitCode: 1, code: 'vtpmd.openDevice' });
  }
}

/** Reports operator mistakes (bad options, busy ports) as one line and exit code 1; anything else is a bug and propagates. */
export function failUsage(command: Command, err: unknown): never {
  if (err instanceof TransportError) command.error(`error: ${err.message}`, { exitCode: 1, code: `vtpmd.${err.code}` });
  throw err;
}

export function writeEvent(event: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

export interface StopSignals {
  /** Resolves at the first SIGINT or SIGTERM. */
  readonly requested: Promise<NodeJS.Signals>;
  /** Removes the handlers, restoring the default (terminate) behaviour. */
  dispose(): void;
}

/**
 * Catches SIGINT and SIGTERM for a graceful stop. Install it before anything is announced on
 * stdout: a supervisor that signals as soon as it reads the listening line must not find the
 * default handler still in place. A second signal forces the exit, for a device that hangs.
 */
export function watchStopSignals(logger: Logger): StopSignals {
  let resolveRequested!: (signal: NodeJS.Signals) => void;
  const requested = new Promise<NodeJS.Signals>((resolve) => (resolveRequested = resolve));
  let received = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (received) {
      logger.warn({ signal }, 'second signal; exiting without waiting for the device');
      process.exit(1);
    }
    received = true;
    logger.info({ signal }, 'stopping');
    resolveRequested(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    requested,
    dispose() {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

/** Waits until the server closes (signal or client request), then flushes the device. */
export async function serveUntilStopped(
  server: { close(): Promise<void>; closed: Promise<void> },
  device: TpmDevice,
  stop: StopSignals,
  logger: Logger,
): Promise<void> {
  void stop.requested.then(() => server.close());
  await server.closed;
  try {
    await device.flush();
  } catch (err) {
    logger.error({ err }, 'the device could not make its state durable; changes since the last flush may be lost — check the state directory');
    process.exitCode = 1;
    return;
  }
  logger.info('stopped');
  writeEvent({ event: 'stopped' });
}
