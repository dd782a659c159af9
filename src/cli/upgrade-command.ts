/**
 * `vtpmd upgrade stage <dir>` / `vtpmd upgrade cancel`: with the running daemon, seal its keys to
 * the vtpmd code in <dir> as well and let its device models continue the vTPMs' state, so that
 * this code finds the vTPMs once it runs in place of the present one (src/daemon/code-upgrade.ts);
 * or drop what was staged.
 */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { apiCommand, callApi } from './api-client.ts';

export function registerUpgradeCommand(program: Command): Command {
  const { command: upgrade, run } = apiCommand(program, 'upgrade', "let new vtpmd code open this host's vTPMs: seal the daemon's keys to it before it replaces the running code");

  upgrade
    .command('stage <dir>')
    .description("seal the PSS storage key and the key-binding key to what the vtpmd code in <dir> will measure as, and let its device models continue the vTPMs' state; then stop vtpmd, install that code, and start it (after a host reboot, with a host TPM)")
    .action(
      run(async (api, command) => {
        const dir = resolve(command.args[0]!);
        process.stderr.write(`staging the upgrade to the vtpmd code in ${dir}…\n`);
        return (await callApi(api, 'POST', '/upgrade', { code: dir })).json;
      }),
    );
  upgrade
    .command('cancel')
    .description('drop a staged upgrade: the keys stay sealed to the running code only')
    .action(run(async (api) => (await callApi(api, 'DELETE', '/upgrade')).json));
  return upgrade;
}
