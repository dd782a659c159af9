/**
 * What a platform certificate says the host is: its maker, model, version and serial number. A
 * lab host's are those of its simulated boot chain (host-boot.ts hostProfile); a real host's are
 * what its firmware reports in SMBIOS, which Linux shows under /sys/class/dmi/id. Nothing is made
 * up for a real host: a field the firmware does not report (or only root may read) says so.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { hostProfile } from './host-boot.ts';

export interface PlatformIdentity {
  readonly manufacturer: string;
  readonly model: string;
  readonly version: string;
  readonly serial: string;
}

export const NOT_REPORTED = 'not reported';

/** The simulated lab host's identity: its firmware vendor, the lab host model, its hypervisor, its serial number. */
export function labPlatformIdentity(hostId: string): PlatformIdentity {
  const profile = hostProfile(hostId);
  return {
    manufacturer: profile.firmware.vendor,
    model: 'vtpmd lab host',
    version: `${profile.hypervisor.name} ${profile.hypervisor.version}`,
    serial: profile.platformConfig.serialNumber,
  };
}

/** The SMBIOS system fields under `dmiDir`; a missing, unreadable or blank one is NOT_REPORTED. */
export async function dmiPlatformIdentity(dmiDir = '/sys/class/dmi/id'): Promise<PlatformIdentity> {
  const field = async (name: string): Promise<string> => {
    try {
      const value = (await readFile(join(dmiDir, name), 'utf8')).trim();
      return value === '' ? NOT_REPORTED : value;
    } catch {
      return NOT_REPORTED;
    }
  };
  return { manufacturer: await field('sys_vendor'), model: await field('product_name'), version: await field('product_version'), serial: await field('product_serial') };
}
