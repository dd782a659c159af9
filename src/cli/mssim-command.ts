/**
 * `vtpmd mssim`: serves one TPM 2.0 over the Microsoft reference simulator's protocol, the one
 * tcti-mssim speaks: command port P, platform port P+1. Foreground only; SIGINT or SIGTERM (or a
 * client's STOP) stop it cleanly: listeners closed, the device flushed; a second signal exits at
 * once.
 *
 * Machine-readable output. Once both ports listen, exactly one line is written to stdout:
 *
 *   {"event":"listening","command":"tcp://127.0.0.1:2321","platform":"tcp://127.0.0.1:2322","port":2321}
 *
 * `command` and `platform` are `tcp://HOST:PORT` (IPv6 hosts in brackets); `port` is P, the value
 * for `-T mssim:host=HOST,port=P`, the real one when port 0 was asked for. After a clean stop one
 * more line follows:
 *
 *   {"event":"stopped"}
 */
import type { Command } from 'commander';
import type { Logger } from 'pino';
import { OptionError, parsePort, parseTpmstateOption, startMssimServer } from '../transport/index.ts';
import { failUsage, openOrFail, serveUntilStopped, stateDirFallback, watchStopSignals, writeEvent, type OpenDevice } from './socket-command.ts';

export const DEFAULT_MSSIM_PORT = 2321;

interface MssimOptions {
  port?: string;
  bindaddr?: string;
  tpmstate?: string;
}

/** Adds `vtpmd mssim`; state directory and parseAsync() as for registerSocketCommand. */
export function registerMssimCommand(program: Command, openDevice: OpenDevice, logger: Logger, defaultStateDir?: string): Command {
  return program
    .command('mssim')
    .description('serve a TPM 2.0 over the MS TPM simulator protocol (command port P, platform port P+1), as tcti-mssim expects')
    .option('--port <port>', `command port P; the platform port is P+1; 0 picks a free pair (default ${DEFAULT_MSSIM_PORT})`)
    .option('--bindaddr <address>', 'address to listen on (default 127.0.0.1)')
    .option('--tpmstate <options>', 'dir=D: where the TPM keeps its state')
    .action(async (opts: MssimOptions, command: Command) => {
      const log = logger.child({ command: 'mssim' });
      const stop = watchStopSignals(log);
      try {
        let port: number;
        let stateDir: string;
        try {
          port = opts.port === undefined ? DEFAULT_MSSIM_PORT : parsePort('--port', opts.port);
          if (port === 65535) throw new OptionError('--port: the platform port P+1 must exist; choose a port below 65535');
          stateDir = opts.tpmstate === undefined ? stateDirFallback(command, defaultStateDir) : parseTpmstateOption(opts.tpmstate);
        } catch (err) {
          failUsage(command, err);
        }
        // The simulator protocol exists for TPM 2.0 only.
        const device = await openOrFail(command, openDevice, { stateDir, tpm2: true });
        let server;
        try {
          server = await startMssimServer(device, { port, ...(opts.bindaddr === undefined ? {} : { bindaddr: opts.bindaddr }), logger: log });
        } catch (err) {
          await device.flush().catch(() => undefined);
          failUsage(command, err);
        }
        writeEvent({ event: 'listening', command: server.command, platform: server.platform, port: server.port });
        await serveUntilStopped(server, device, stop, log);
      } finally {
        stop.dispose();
      }
    });
}
