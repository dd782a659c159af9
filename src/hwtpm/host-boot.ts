/**
 * The lab host's measured boot, as data and as the events a measuring agent extends into the
 * hardware TPM: firmware (S-CRTM, POST code, configuration, option ROMs), the separators firmware
 * logs before handing over, the boot loader, the hypervisor it loads, and then the GVTPM components
 * the hypervisor starts.
 *
 * PCR allocation. PCRs 0–9 follow the PC Client Platform Firmware Profile and the boot loader
 * conventions (PCR 8 command lines, PCR 9 loaded images) and make up the host TCB. The GVTPM
 * manager, PSS and vMA each get a PCR of their own among the static OS PCRs 10–15, so a sealing
 * policy can name "this host TCB" and "these GVTPM components" separately and an upgrade of one
 * component moves exactly one PCR. Static PCRs are reset only by a TPM reset (a reboot), so a
 * value in them proves what ran since boot. PCR 10 is left to IMA; 16 (debug) and 23
 * (application) are resettable from locality 0, and 17–22 are reset by a dynamic launch, so
 * anyone could restore a "good" value in them and they must not anchor the TCB.
 */
import { ALG } from '../tpm/tpm2/constants.ts';
import { digest } from '../tpm/crypto/hash.ts';
import { componentImage, PROJECT_ROOT, readComponentCode, type ComponentCode } from './gvtpm-component-code.ts';
import { EventLogBuilder, eventDigests, type EventLog, type PcrEvent, type TaggedDigest } from './event-log.ts';
import { EV } from './event-types.ts';

export const HOST_PCR = {
  CRTM_AND_FIRMWARE: 0,
  PLATFORM_CONFIG: 1,
  OPTION_ROMS: 2,
  BOOT_LOADER: 4,
  BOOT_ACTIONS: 5,
  HYPERVISOR_COMMAND_LINE: 8,
  HYPERVISOR_IMAGE: 9,
} as const;

export const GVTPM_PCR = {
  MANAGER: 11,
  PSS: 12,
  VMA: 13,
} as const;

/** The PCRs holding the host TCB: firmware, boot loader and hypervisor. */
export function hostTcbPcrs(): number[] {
  return [0, 1, 2, 3, 4, 5, 6, 7, 8, 9];
}

/** A GVTPM component: what it is called, which source folder is its code, and its PCR. */
export interface GvtpmComponent {
  readonly name: string;
  /** Folder relative to the project root. */
  readonly folder: string;
  readonly pcr: number;
  /** taggedEventID of its EV_EVENT_TAG event. */
  readonly tag: number;
}

export const GVTPM_COMPONENTS: readonly GvtpmComponent[] = [
  { name: 'gvtpm-manager', folder: 'src/vtpm', pcr: GVTPM_PCR.MANAGER, tag: 1 },
  { name: 'pss', folder: 'src/pss', pcr: GVTPM_PCR.PSS, tag: 2 },
  { name: 'vma', folder: 'src/vma', pcr: GVTPM_PCR.VMA, tag: 3 },
];

/** The PCRs holding the GVTPM components. */
export function gvtpmPcrs(components: readonly GvtpmComponent[] = GVTPM_COMPONENTS): number[] {
  return components.map((c) => c.pcr);
}

/** The simulated identity of a host's boot chain. */
export interface HostProfile {
  readonly hostId: string;
  readonly firmware: { readonly vendor: string; readonly version: string; readonly crtmVersion: string };
  /** Measured into PCR 1 as the platform configuration. */
  readonly platformConfig: { readonly serialNumber: string; readonly settings: readonly string[] };
  readonly optionRoms: readonly { readonly name: string; readonly version: string }[];
  readonly bootLoader: { readonly name: string; readonly version: string; readonly path: string };
  readonly hypervisor: { readonly name: string; readonly version: string; readonly path: string; readonly commandLine: string };
}

const FIRMWARE_VENDORS = ['Lab Systems Firmware', 'Simulated BIOS Works', 'Testbed Platform UEFI'];

/**
 * A plausible boot chain derived from the host id alone: the same host always boots the same
 * chain, and two hosts differ at least in their platform configuration (serial number).
 */
export function hostProfile(hostId: string): HostProfile {
  const h = digest(ALG.SHA256, Buffer.from(`vtpmd host profile\0${hostId}`, 'utf8'));
  const fwVersion = `${1 + (h[1]! % 3)}.${h[2]! % 20}.${h[3]!}`;
  return {
    hostId,
    firmware: { vendor: FIRMWARE_VENDORS[h[0]! % FIRMWARE_VENDORS.length]!, version: fwVersion, crtmVersion: `${fwVersion}-crtm` },
    platformConfig: {
      serialNumber: h.subarray(4, 10).toString('hex').toUpperCase(),
      settings: ['SecureBoot=disabled', 'VT-x=enabled', 'VT-d=enabled', 'TPM=enabled', 'BootOrder=disk0'],
    },
    optionRoms: [{ name: 'lab-nic-pxe', version: `3.${h[10]! % 8}` }],
    bootLoader: { name: 'GRUB', version: `2.${6 + (h[11]! % 6)}`, path: '\\EFI\\debian\\grubx64.efi' },
    hypervisor: {
      name: 'Xen',
      version: `4.${15 + (h[12]! % 5)}.${h[13]! % 4}`,
      path: '/boot/xen.gz',
      commandLine: 'dom0_mem=4096M,max:4096M dom0_max_vcpus=2 iommu=force gvtpm=on',
    },
  };
}

export type ExtendFn = (pcr: number, digests: TaggedDigest[], event: PcrEvent) => void | Promise<void>;

export interface MeasureHostBootOptions {
  /** Project root the component folders are relative to; defaults to this checkout. */
  readonly rootDir?: string;
  readonly components?: readonly GvtpmComponent[];
}

const utf16z = (s: string): Buffer => Buffer.from(`${s}\0`, 'utf16le');
const asciiz = (s: string): Buffer => Buffer.from(`${s}\0`, 'latin1');

/** What firmware and loaders hash for an image; a stand-in for the real bytes (or Authenticode digest). */
function simulatedImage(kind: string, name: string, version: string): Buffer {
  return Buffer.from(`simulated ${kind}\0${name}\0${version}`, 'utf8');
}

/** UEFI_PLATFORM_FIRMWARE_BLOB: where the measured firmware volume lies. */
function firmwareBlob(base: bigint, length: bigint): Buffer {
  const b = Buffer.alloc(16);
  b.writeBigUInt64LE(base, 0);
  b.writeBigUInt64LE(length, 8);
  return b;
}

/** UEFI_IMAGE_LOAD_EVENT with a device path holding only the end node. */
function imageLoadEvent(location: bigint, length: bigint): Buffer {
  const endOfPath = Buffer.from([0x7f, 0xff, 0x04, 0x00]);
  const b = Buffer.alloc(32);
  b.writeBigUInt64LE(location, 0);
  b.writeBigUInt64LE(length, 8);
  b.writeBigUInt64LE(0n, 16);
  b.writeBigUInt64LE(BigInt(endOfPath.length), 24);
  return Buffer.concat([b, endOfPath]);
}

/** TCG_PCClientTaggedEvent. */
function taggedEvent(tag: number, data: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt32LE(tag, 0);
  h.writeUInt32LE(data.length, 4);
  return Buffer.concat([h, data]);
}

function componentEvent(component: GvtpmComponent, code: ComponentCode, image: Buffer): Buffer {
  const sha256 = digest(ALG.SHA256, image).toString('hex');
  return taggedEvent(component.tag, Buffer.from(`${component.name} ${component.folder} files=${code.files.length} sha256=${sha256}`, 'utf8'));
}

function checkComponentPcrs(components: readonly GvtpmComponent[]): void {
  const tcb = hostTcbPcrs();
  const seen = new Set<number>();
  for (const c of components) {
    if (tcb.includes(c.pcr) || c.pcr < 10 || c.pcr > 15) throw new RangeError(`${c.name} must have a static OS PCR (10–15) outside the host TCB, not ${c.pcr}`);
    if (seen.has(c.pcr)) throw new RangeError(`${c.name} shares PCR ${c.pcr} with another component`);
    seen.add(c.pcr);
  }
}

/**
 * Produces the host's boot events in order and hands each to `extend` (which sends PCR_Extend, or
 * TPM_Extend with the SHA-1 digest, to the chip) before producing the next. Returns the log.
 */
export async function measureHostBoot(extend: ExtendFn, banks: readonly number[], profile: HostProfile, options: MeasureHostBootOptions = {}): Promise<EventLog> {
  checkComponentPcrs(options.components ?? GVTPM_COMPONENTS);
  const log = new EventLogBuilder(banks);
  const emit = async (e: PcrEvent) => extend(e.pcrIndex, e.digests.map((d) => ({ alg: d.alg, digest: Buffer.from(d.digest) })), e);
  const { firmware, platformConfig, bootLoader, hypervisor } = profile;

  await emit(log.measure(HOST_PCR.CRTM_AND_FIRMWARE, EV.S_CRTM_VERSION, utf16z(firmware.crtmVersion)));
  await emit(
    log.measure(HOST_PCR.CRTM_AND_FIRMWARE, EV.S_CRTM_CONTENTS, firmwareBlob(0xfffc0000n, 0x40000n), simulatedImage('s-crtm', firmware.vendor, firmware.crtmVersion)),
  );
  await emit(log.measure(HOST_PCR.CRTM_AND_FIRMWARE, EV.POST_CODE, Buffer.from('POST CODE', 'latin1'), simulatedImage('firmware', firmware.vendor, firmware.version)));
  const config = [`SerialNumber=${platformConfig.serialNumber}`, ...platformConfig.settings].join('\n');
  await emit(log.measure(HOST_PCR.PLATFORM_CONFIG, EV.PLATFORM_CONFIG_FLAGS, Buffer.from(config, 'utf8')));
  for (const [i, rom] of profile.optionRoms.entries()) {
    const image = simulatedImage('option rom', rom.name, rom.version);
    await emit(log.measure(HOST_PCR.OPTION_ROMS, EV.EFI_BOOT_SERVICES_DRIVER, imageLoadEvent(0xc0000n + BigInt(i) * 0x10000n, BigInt(image.length)), image));
  }
  await emit(log.measure(HOST_PCR.BOOT_LOADER, EV.EFI_ACTION, Buffer.from('Calling EFI Application from Boot Option', 'latin1')));
  for (let pcr = 0; pcr <= 7; pcr++) await emit(log.measure(pcr, EV.SEPARATOR, Buffer.alloc(4)));
  const loader = simulatedImage('boot loader', bootLoader.name, bootLoader.version);
  await emit(log.measure(HOST_PCR.BOOT_LOADER, EV.EFI_BOOT_SERVICES_APPLICATION, imageLoadEvent(0x7e000000n, BigInt(loader.length)), loader));
  // As GRUB does: the image into PCR 9 logged by path, the command line into PCR 8 logged with a
  // prefix and hashed without it.
  await emit(log.measure(HOST_PCR.HYPERVISOR_IMAGE, EV.IPL, asciiz(hypervisor.path), simulatedImage('hypervisor', hypervisor.name, hypervisor.version)));
  await emit(
    log.measure(HOST_PCR.HYPERVISOR_COMMAND_LINE, EV.IPL, asciiz(`kernel_cmdline: ${hypervisor.commandLine}`), Buffer.from(hypervisor.commandLine, 'latin1')),
  );
  await emit(log.measure(HOST_PCR.BOOT_ACTIONS, EV.EFI_ACTION, Buffer.from('Exit Boot Services Invocation', 'latin1')));
  await emit(log.measure(HOST_PCR.BOOT_ACTIONS, EV.EFI_ACTION, Buffer.from('Exit Boot Services Returned with Success', 'latin1')));

  for (const event of await gvtpmComponentEvents(log, options)) await emit(event);
  return log.log;
}

/** Each GVTPM component with its code as read from `options.rootDir` (default: this checkout). */
async function measuredComponents(options: MeasureHostBootOptions): Promise<{ component: GvtpmComponent; code: ComponentCode; image: Buffer }[]> {
  const components = options.components ?? GVTPM_COMPONENTS;
  checkComponentPcrs(components);
  const rootDir = options.rootDir ?? PROJECT_ROOT;
  const out = [];
  for (const component of components) {
    const code = await readComponentCode(rootDir, component.name, component.folder);
    out.push({ component, code, image: componentImage(code) });
  }
  return out;
}

/**
 * Logs one EV_EVENT_TAG event per GVTPM component, measuring its code, into `log`; returns them
 * for the caller to extend.
 */
export async function gvtpmComponentEvents(log: EventLogBuilder, options: MeasureHostBootOptions = {}): Promise<PcrEvent[]> {
  return (await measuredComponents(options)).map(({ component, code, image }) =>
    log.record(component.pcr, EV.EVENT_TAG, componentEvent(component, code, image), eventDigests(log.banks, image)),
  );
}

/**
 * What each GVTPM component's PCR holds, in one bank, once the code under `options.rootDir` is
 * measured into it after a reset: its one event extended into zeros.
 */
export async function gvtpmPcrValues(hash: 'sha256' | 'sha1', options: MeasureHostBootOptions = {}): Promise<Map<number, Buffer>> {
  const alg = hash === 'sha256' ? ALG.SHA256 : ALG.SHA1;
  const values = new Map<number, Buffer>();
  for (const { component, image } of await measuredComponents(options)) {
    const measured = digest(alg, image);
    values.set(component.pcr, digest(alg, Buffer.concat([Buffer.alloc(measured.length), measured])));
  }
  return values;
}
