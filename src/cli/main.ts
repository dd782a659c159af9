import { Command, Option } from 'commander';
import type { TpmDevice } from '../tpm/device.ts';
import { createLogger } from './logger.ts';
import { registerMssimCommand } from './mssim-command.ts';
import { registerServeCommand } from './serve-command.ts';
import { registerVmCommand } from './vm-command.ts';
import { registerHealthCommand } from './health-command.ts';
import { registerUpgradeCommand } from './upgrade-command.ts';
import { registerBenchCommand } from './bench-command.ts';
import { registerSocketCommand, type OpenDeviceOptions } from './socket-command.ts';

const logger = createLogger();

/**
 * Opens the TPM whose state lives in `stateDir`; internal faults are logged, never shown to
 * clients. Engines load on demand, so commands that only talk to a daemon start quickly.
 */
async function openDevice({ stateDir, tpm2, chip }: OpenDeviceOptions): Promise<TpmDevice> {
  const log = logger.child({ tpmstate: stateDir });
  const onInternalError = (e: unknown) => log.error({ err: e }, 'internal TPM fault; the command got a failure response');
  if (chip) {
    const { bootLabHost } = await import('../hwtpm/lab-host.ts');
    const host = await bootLabHost({ stateDir, personality: tpm2 ? 'tpm2' : 'tpm12', onInternalError });
    log.info({ eventLog: host.eventLogPath, manufacturerCa: host.caPath, fresh: host.chip.fresh }, 'lab host booted: chip manufactured and host boot measured');
    return host.chip;
  }
  if (tpm2) return (await import('../tpm/tpm2/device.ts')).openTpm2Device(stateDir, { onInternalError });
  return (await import('../tpm/tpm12/device.ts')).openTpm12Device(stateDir, { onInternalError });
}

const program = new Command()
  .name('vtpmd')
  .description('Per-VM TPMs anchored in the host TPM: TPM 2.0 engine, vTPM manager, protected storage and attestation')
  .addOption(
    new Option('--state <dir>', 'state directory shared by every subcommand').env('VTPMD_STATE').default('./vtpmd-state'),
  )
  .showHelpAfterError();

// Both read the global --state at run time unless --tpmstate names a directory.
registerSocketCommand(program, openDevice, logger);
registerMssimCommand(program, openDevice, logger);
registerServeCommand(program, logger);
registerVmCommand(program);
registerHealthCommand(program);
registerUpgradeCommand(program);
registerBenchCommand(program);

try {
  await program.parseAsync(process.argv);
} catch (e) {
  const message = e instanceof Error ? e.message : String(e);
  process.stderr.write(`vtpmd: ${message}\n`);
  process.exitCode = 1;
}
