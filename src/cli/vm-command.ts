/**
 * `vtpmd vm …`: the control API from the command line. Every command prints the daemon's JSON
 * (a VM, or the list); errors are one line on stderr and exit code 1.
 */
import { Command, Option } from 'commander';
import { apiCommand, callApi } from './api-client.ts';

export function registerVmCommand(program: Command): Command {
  const { command: vm, run } = apiCommand(program, 'vm', 'create, list, show, stop, start and destroy VMs of a running `vtpmd serve`');
  const path = (name: string, suffix = '') => `/vms/${encodeURIComponent(name)}${suffix}`;

  vm.command('create <name>')
    .description("create a VM and its vTPM; prints the VM with its endpoints")
    .addOption(new Option('--dm <design>', 'device model').choices(['software', 'hardware']).default('software'))
    .addOption(new Option('--tpm <version>', 'TPM version').choices(['2.0', '1.2']).default('2.0'))
    .option('--migratable', 'the vTPM may later be migrated (its credentials say so)', false)
    .addOption(
      new Option('--durability <mode>', 'per-command: every state change is durable before its response; batched: saves are grouped without waiting for the disk (a crash may lose the last commands)')
        .choices(['per-command', 'batched'])
        .default('per-command'),
    )
    .action(
      run(async (api, command) => {
        const [name] = command.args as [string];
        const o = command.opts() as { dm: string; tpm: string; migratable: boolean; durability: string };
        process.stderr.write(`creating VM ${name} (${o.dm} vTPM, TPM ${o.tpm})…\n`);
        return (await callApi(api, 'POST', '/vms', { name, dm: o.dm, tpm: o.tpm, migratable: o.migratable, durability: o.durability })).json;
      }),
    );
  vm.command('list').description('every VM').action(run(async (api) => (await callApi(api, 'GET', '/vms')).json));
  vm.command('show <name>').description('one VM').action(run(async (api, c) => (await callApi(api, 'GET', path(c.args[0]!))).json));
  vm.command('stop <name>').description("close the VM's endpoint and unload its vTPM").action(run(async (api, c) => (await callApi(api, 'POST', path(c.args[0]!, '/stop'))).json));
  vm.command('start <name>').description("reopen the VM's endpoint").action(run(async (api, c) => (await callApi(api, 'POST', path(c.args[0]!, '/start'))).json));
  vm.command('credentials <name>')
    .description("write the VM's EK and platform credentials and their chain: ek.pem, platform.pem, chain.pem, vmca-root.pem")
    .requiredOption('--out <dir>', 'directory to write them to')
    .action(
      run(async (api, c) => {
        const { json } = await callApi(api, 'GET', path(c.args[0]!, '/credentials'));
        const dir = (c.opts() as { out: string }).out;
        // Loaded here: the certificate code would slow every other vm command's start.
        const { writeCredentialFiles } = await import('../daemon/credential-files.ts');
        return { written: dir, files: await writeCredentialFiles(dir, json) };
      }),
    );
  vm.command('destroy <name>')
    .description('destroy the VM and its vTPM state')
    .action(
      run(async (api, c) => {
        await callApi(api, 'DELETE', path(c.args[0]!));
        return { destroyed: c.args[0] };
      }),
    );
  return vm;
}
