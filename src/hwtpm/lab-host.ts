/**
 * A lab host's TPM as its firmware hands it over: the chip manufactured (EKs and their
 * certificates from the simulated manufacturer), powered on, started, and the host's boot chain
 * measured into it with a TCG event log beside it — what an OS finds in
 * /sys/kernel/security/tpm0/binary_bios_measurements on a real machine.
 */
import { hostname } from 'node:os';
import { join } from 'node:path';
import { ALG, CAP, SU } from '../tpm/tpm2/constants.ts';
import { Chip, type ChipOptions, type Personality } from './chip.ts';
import { MANUFACTURER_CA_FILES, openManufacturerCa, type CertificateAuthority } from './credentials/manufacturer-ca.ts';
import { writeFileAtomic } from './credentials/atomic-file.ts';
import { encodeEventLog, type EventLog } from './event-log.ts';
import { hostProfile, measureHostBoot, type MeasureHostBootOptions } from './host-boot.ts';
import { manufactureTpm2, type ManufacturedEk } from './manufacture-tpm2.ts';
import { Tpm2Client } from './tpm2-client.ts';
import { manufactureTpm12 } from './manufacture-tpm12.ts';
import { Tpm12Client } from '../tpm/tpm12/client/index.ts';

const TPM12_ST_CLEAR = 0x0001;

export const EVENT_LOG_FILE = 'eventlog.bin';
export const DEFAULT_MANUFACTURER = 'vtpmd Simulated TPM Manufacturer';

export interface LabHostOptions extends Omit<ChipOptions, 'personality' | 'store'> {
  readonly stateDir: string;
  readonly personality?: Personality;
  /** Names the host: its firmware and boot chain identities derive from it. Default: the hostname. */
  readonly hostId?: string;
  readonly manufacturer?: string;
  readonly boot?: MeasureHostBootOptions;
}

export interface LabHost {
  readonly chip: Chip;
  readonly ca: CertificateAuthority;
  readonly eks: readonly ManufacturedEk[];
  readonly eventLog: EventLog;
  readonly eventLogPath: string;
  readonly caPath: string;
}

/**
 * Opens (manufacturing on first use) the chip whose NV lives in `stateDir`, power-cycles it as a
 * host reset does, starts it and measures the host's boot into it. The event log and the
 * manufacturer's root certificate are written to the state directory.
 */
export async function bootLabHost(opts: LabHostOptions): Promise<LabHost> {
  const personality = opts.personality ?? 'tpm2';
  const chip = Chip.open({ ...opts, personality });
  const ca = await openManufacturerCa(opts.stateDir, { manufacturer: opts.manufacturer ?? DEFAULT_MANUFACTURER });
  const eks = personality === 'tpm2' ? await manufactureTpm2(chip, { ca }) : await manufactureTpm12(chip, { ca });
  // Host reset: TPM_Init, then firmware's Startup(CLEAR) and measurements.
  await chip.powerOff();
  await chip.powerOn();
  const profile = hostProfile(opts.hostId ?? hostname());
  const eventLog = await chip.exclusive(async (exec) => {
    if (personality === 'tpm12') {
      // A TPM 1.2 has one SHA-1 bank: the log is crypto-agile with that bank alone.
      const tpm = new Tpm12Client(exec);
      await tpm.startup(TPM12_ST_CLEAR);
      return measureHostBoot(async (pcr, digests) => void (await tpm.extend(pcr, digests[0]!.digest)), [ALG.SHA1], profile, opts.boot);
    }
    const tpm = new Tpm2Client(exec);
    await tpm.startup(SU.CLEAR);
    const banks = await activeBanks(tpm);
    return measureHostBoot(
      (pcr, digests) => tpm.pcrExtend(pcr, digests.map((d) => ({ hashAlg: d.alg, digest: d.digest }))),
      banks,
      profile,
      opts.boot,
    );
  });
  const eventLogPath = join(opts.stateDir, EVENT_LOG_FILE);
  await writeFileAtomic(eventLogPath, encodeEventLog(eventLog));
  return { chip, ca, eks, eventLog, eventLogPath, caPath: join(opts.stateDir, MANUFACTURER_CA_FILES.certificate) };
}

/** The PCR banks with at least one PCR allocated, in the order the chip reports them. */
export async function activeBanks(tpm: Tpm2Client): Promise<number[]> {
  const cap = await tpm.getCapability(CAP.PCRS, 0, 1);
  if (!('pcrs' in cap.capabilityData)) throw new Error('the chip did not report its PCR allocation');
  const banks = cap.capabilityData.pcrs.filter((s) => s.select.some((b) => b !== 0)).map((s) => s.hash);
  return banks.length > 0 ? banks : [ALG.SHA256];
}
