/**
 * `vtpmd health`: the running daemon's GET /health as JSON, for operators and monitoring. It
 * exits 0 when the daemon says `ok`, and 1 when it is `degraded` (the reason is in `pss`) or
 * does not answer.
 */
import type { Command } from 'commander';
import { ApiError, callApi, resolveApi } from './api-client.ts';
import { stateDirFallback } from './socket-command.ts';

export function registerHealthCommand(program: Command): Command {
  return program
    .command('health')
    .description('print the running daemon\'s health as JSON; exit 1 unless it is "ok"')
    .option('--api <address>', 'the daemon: unix:///path or http://127.0.0.1:PORT (default VTPMD_API, then <state>/vtpmd.sock)')
    .action(async (opts: { api?: string }, command: Command) => {
      const api = resolveApi(opts.api, stateDirFallback(command, undefined));
      try {
        const { json } = await callApi(api, 'GET', '/health');
        process.stdout.write(`${JSON.stringify(json, null, 2)}\n`);
        if (json?.status !== 'ok') process.exitCode = 1;
      } catch (e) {
        if (!(e instanceof ApiError)) throw e;
        process.stderr.write(`vtpmd: error: ${e.message}\n`);
        process.exitCode = 1;
      }
    });
}
