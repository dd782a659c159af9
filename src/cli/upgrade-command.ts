/**
 * `vtpmd upgrade stage <dir>` / `vtpmd upgrade cancel`: with the running daemon, seal its keys to
 * the vtpmd code in <dir> as well and let its device models continue the vTPMs' state, so that
 * this code finds the vTPMs once it runs in place of the present one (src/daemon/code-upgrade.ts);
 * or drop what was staged.
 */
import type { Command } from 'commander';
import { resolve } from 'node:path';
import { ApiError, apiCommand, callApi } from './api-client.ts';

export function registerUpgradeCommand(program: Command): Command {
  const { command: upgrade, run } = apiCommand(program, 'upgrade', "let new vtpmd code open this host's vTPMs: seal the daemon's keys to it before it replaces the running code");

  upgrade
    .command('stage [dir]')
    .description(
      "seal the PSS storage key and the key-binding key to what the vtpmd code in [dir] (default: the running code) and the boot chain of --boot-log (default: the present one) will measure as, and let the new code's device models continue the vTPMs' state; then stop vtpmd, install the update, and start it (after a host reboot, with a host TPM)",
    )
    .option('--boot-log <file>', "the TCG event log (binary) of a boot of the updated firmware, boot loader or hypervisor, as /sys/kernel/security/tpm0/binary_bios_measurements holds it")
    .action(
      run(async (api, command) => {
        const dir = command.args[0] as string | undefined;
        const bootLog = (command.opts() as { bootLog?: string }).bootLog;
        if (dir === undefined && bootLog === undefined) throw new ApiError('give the new vtpmd code (a folder), --boot-log, or both');
        const request = { ...(dir !== undefined ? { code: resolve(dir) } : {}), ...(bootLog !== undefined ? { bootLog: resolve(bootLog) } : {}) };
        process.stderr.write(`staging the upgrade${dir !== undefined ? ` to the vtpmd code in ${request.code}` : ''}${bootLog !== undefined ? ` with the boot chain of ${request.bootLog}` : ''}…\n`);
        return (await callApi(api, 'POST', '/upgrade', request)).json;
      }),
    );
  upgrade
    .command('cancel')
    .description('drop a staged upgrade: the keys stay sealed to the running code only')
    .action(run(async (api) => (await callApi(api, 'DELETE', '/upgrade')).json));
  return upgrade;
}
