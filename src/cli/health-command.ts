/**
 * `vtpmd health`: the running daemon's GET /health as JSON, for operators and monitoring. It
 * exits 0 when the daemon says `ok`, and 1 when it is `degraded` (the reason is in `pss`) or
 * does not answer.
 */
import type { Command } from 'commander';
import { apiAction, callApi } from './api-client.ts';

export function registerHealthCommand(program: Command): Command {
  const health: Command = program
    .command('health')
    .description('print the running daemon\'s health as JSON; exit 1 unless it is "ok"')
    .option('--api <address>', 'the daemon: unix:///path or http://127.0.0.1:PORT (default VTPMD_API, then <state>/vtpmd.sock)')
    .action(
      apiAction(
        () => health.opts().api as string | undefined,
        async (api) => {
          const { json } = await callApi(api, 'GET', '/health');
          if (json?.status !== 'ok') process.exitCode = 1;
          return json;
        },
      ),
    );
  return health;
}
