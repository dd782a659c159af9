/**
 * `vtpmd health`: the running daemon's GET /health as JSON, for operators and monitoring. It
 * exits 0 when the daemon says `ok`, and 1 when it is `degraded` (the reason is in `pss`) or
 * does not answer.
 */
import type { Command } from 'commander';
import { apiCommand, callApi } from './api-client.ts';

export function registerHealthCommand(program: Command): Command {
  const { command: health, run } = apiCommand(program, 'health', 'print the running daemon\'s health as JSON; exit 1 unless it is "ok"');
  return health.action(
    run(async (api) => {
      const { json } = await callApi(api, 'GET', '/health');
      if (json?.status !== 'ok') process.exitCode = 1;
      return json;
    }),
  );
}
