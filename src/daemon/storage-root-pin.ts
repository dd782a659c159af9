/**
 * Which SRK of the host TPM secrets may cross the bus under (chip-client-tpm2.ts says why that
 * matters): decided before the PSS unseals its storage key, the first secret of a start.
 *
 * The SRK's Name is recorded in the state directory at its first start and must be the chip's at
 * every start after. Where the host trusts manufacturer roots (--ek-ca, and always for the
 * simulated chip), the SRK is also proven at every start to be a key of the chip whose EK they
 * certify (srk-proof.ts): the record alone holds against something that comes to answer in the
 * TPM's place later, the proof also against one that was there from the first start. The
 * certificate chain is checked as of the first proof, which the record keeps: the manufacturer
 * vouched for the chip then, and the credential activated at every start shows it is the same
 * chip now, so a chain that expires later (intermediate CAs do) does not lock the vTPMs out.
 *
 * A chip that fails either is not refused here: its client refuses every seal and unseal
 * ('untrusted-srk'). A PSS made before then opens refusing every vTPM ('untrusted-chip') and says
 * why, the daemon staying up for the operator to see it; a first start cannot make one at all.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ChipRefusal, type ChipClient } from '../hwtpm/chip-client.ts';
import { Tpm2ChipClient } from '../hwtpm/chip-client-tpm2.ts';
import { writeFileAtomic } from '../hwtpm/credentials/atomic-file.ts';
import { tpm2Turn, type HostPlatform } from '../hwtpm/host-tpm.ts';
import { readSrk } from '../hwtpm/tpm2-provisioning.ts';
import { proveSrk, SrkProofError } from '../vtpm/srk-proof.ts';

/** The state directory's record of its host TPM's SRK: its Name in hex, and `proven TIME` once proven. */
export const SRK_NAME_FILE = 'hwsrk-name';

interface Recorded {
  readonly name: Buffer;
  readonly provenAt?: Date;
}

/**
 * Pins `client` to the host TPM's SRK as the module comment says; returns the Name pinned, or
 * undefined when none is (a TPM 1.2 chip, whose client sends no secret under its SRK, or an SRK
 * that is not trusted).
 */
export async function pinStorageRoot(
  platform: Pick<HostPlatform, 'tpm' | 'ekRoots'>,
  client: ChipClient,
  stateDir: string,
  logger?: Logger,
  now: Date = new Date(),
): Promise<Buffer | undefined> {
  if (!(client instanceof Tpm2ChipClient)) return undefined;
  const file = join(stateDir, SRK_NAME_FILE);
  const recorded = await readRecorded(file);
  const proving = platform.ekRoots.length > 0;
  const provenAt = recorded?.provenAt ?? now;
  let name: Buffer;
  try {
    name = await tpm2Turn(platform.tpm, async (tpm) => (proving ? proveSrk(tpm, platform.ekRoots, provenAt) : (await readSrk(tpm)).name));
  } catch (e) {
    if (!(e instanceof SrkProofError || e instanceof ChipRefusal)) throw e;
    return distrust(client, e.message, logger);
  }
  if (recorded && !recorded.name.equals(name)) {
    return distrust(client, `its SRK (Name ${name.toString('hex')}) is not the one recorded in ${file} at this state directory's first start (${recorded.name.toString('hex')})`, logger);
  }
  if (!recorded && !proving) logger?.warn({ srk: name.toString('hex') }, "no manufacturer roots to prove the host TPM's SRK against (--ek-ca): its Name is recorded as the TPM reports it");
  // Recorded at the first start, and again at the first proof of an SRK recorded unproven.
  if (!recorded || (proving && !recorded.provenAt)) {
    await writeFileAtomic(file, `${name.toString('hex')}\n${proving ? `proven ${provenAt.toISOString()}\n` : ''}`, 0o600);
  }
  client.pinStorageRoot(name);
  return name;
}

async function readRecorded(file: string): Promise<Recorded | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw e;
  }
  // A Name is a hash algorithm identifier and a digest: never shorter than SHA-1's 22 bytes.
  const m = /^((?:[0-9a-f]{2}){22,})\n(?:proven (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\n)?$/.exec(text);
  const provenAt = m?.[2] === undefined ? undefined : new Date(m[2]);
  if (!m || (provenAt && Number.isNaN(provenAt.getTime()))) {
    throw new Error(`${file} does not hold an SRK Name in hex (and the time it was proven); restore it, or remove it to trust the TPM's present SRK`);
  }
  return { name: Buffer.from(m[1]!, 'hex'), ...(provenAt ? { provenAt } : {}) };
}

function distrust(client: Tpm2ChipClient, why: string, logger: Logger | undefined): undefined {
  logger?.error(`the host TPM is not trusted with sealed secrets: ${why}`);
  client.pinStorageRoot(new Error(why));
  return undefined;
}
