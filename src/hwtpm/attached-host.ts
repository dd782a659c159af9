/**
 * A host whose TPM vtpmd attaches to (attached-tpm.ts) instead of simulating one. Its firmware
 * and boot chain measured the host TCB before vtpmd ran; vtpmd adds what the hypervisor's
 * measuring agent adds on a lab host — the GVTPM components, each into its own PCR — finds the
 * EKs the TPM's manufacturer provisioned, and writes the event log of what it measured.
 *
 * The components are measured once per reset of the TPM: their PCRs are static, so measuring
 * again at every daemon start would move them and lock the PSS out of its own storage key. A
 * component PCR still at zero is measured; one already holding exactly this code's measurement is
 * left alone; one holding anything else means other code ran as that component since the TPM was
 * reset, and vtpmd refuses to start: the PCR cannot be made to say what runs now without a reset.
 *
 * The event log is the firmware's, when the host hands it over (on Linux,
 * /sys/kernel/security/tpm0/binary_bios_measurements), followed by the component events; without
 * it, the component events alone, which is the whole log of a TPM whose firmware measured nothing
 * (swtpm). A verifier replays PCRs 0–9 (the host TCB) from the firmware's part.
 */
import { join } from 'node:path';
import type { Logger } from 'pino';
import { ALG, CC, RH } from '../tpm/tpm2/constants.ts';
import { RC, unnumbered } from '../tpm/tpm2/rc.ts';
import { digest } from '../tpm/crypto/hash.ts';
import { subjectPublicKeyInfo } from '../tpm/crypto/certificate-signing.ts';
import { publicKeyOf } from '../tpm/tpm2/objects/model.ts';
import { NV_ATTR } from '../tpm/tpm2/types/nv.ts';
import type { AttachedTpm } from './attached-tpm.ts';
import { startChip } from './chip-startup.ts';
import { writeFileAtomic } from './credentials/atomic-file.ts';
import { parseCertificate, type ParsedCertificate } from './credentials/x509.ts';
import { EventLogBuilder, decodeEventLog, encodeEventLog, EventLogError, replay, type PcrEvent } from './event-log.ts';
import { GVTPM_COMPONENTS, gvtpmComponentEvents, hostTcbPcrs, type MeasureHostBootOptions } from './host-boot.ts';
import { tpm2Turn, type HostEk, type HostPlatform } from './host-tpm.ts';
import { dmiPlatformIdentity } from './platform-identity.ts';
import { EVENT_LOG_FILE, activeBanks } from './lab-host.ts';
import { Tpm2CommandError, handleName, type Tpm2Client } from './tpm2-client.ts';
import { ensurePersistent, isMissingHandle } from './tpm2-provisioning.ts';
import { EK_SLOTS } from './tpm2-templates.ts';

export interface AttachHostOptions {
  /** Where the event log is written. */
  readonly stateDir: string;
  /** Roots the TPM's EK certificates must chain to (its manufacturer's). */
  readonly ekRoots: readonly ParsedCertificate[];
  /** The firmware's TCG event log (binary), which the component events are appended to. */
  readonly firmwareLog?: Buffer;
  readonly measure?: MeasureHostBootOptions;
  /** Where the host's SMBIOS fields are (default /sys/class/dmi/id). */
  readonly dmiDir?: string;
  readonly logger?: Logger;
}

export class AttachedHostError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AttachedHostError';
  }
}

export async function attachHost(tpm: AttachedTpm, opts: AttachHostOptions): Promise<HostPlatform> {
  await startChip(tpm);
  if (tpm.leftoversFlushed > 0) {
    opts.logger?.warn({ tpm: tpm.name, flushed: tpm.leftoversFlushed }, 'the host TPM held transient objects or sessions that nobody holds any more (a vtpmd stopped in mid-operation?): flushed them');
  }
  const { events, eks } = await tpm2Turn(tpm, async (client) => {
    await checkHierarchyAuth(client);
    const log = opts.firmwareLog ? await firmwareLogBuilder(client, opts.firmwareLog, opts.logger) : new EventLogBuilder(await activeBanks(client));
    const components = await gvtpmComponentEvents(log, opts.measure);
    let measured = 0;
    for (const event of components) {
      if (await measureOnce(client, event)) measured++;
    }
    opts.logger?.info({ tpm: tpm.name, measured, already: components.length - measured }, 'GVTPM components measured into the host TPM');
    return { events: log.log, eks: await provisionedEks(client) };
  });
  if (eks.length === 0) opts.logger?.warn({ tpm: tpm.name }, 'the host TPM holds no EK certificate at 0x1c00002 or 0x1c0000a: its keys cannot be proven to be a certified TPM’s');
  const eventLogPath = join(opts.stateDir, EVENT_LOG_FILE);
  await writeFileAtomic(eventLogPath, encodeEventLog(events));
  return { tpm, name: tpm.name, ekRoots: opts.ekRoots, eks, eventLogPath, identity: await dmiPlatformIdentity(opts.dmiDir), close: () => tpm.close() };
}

/**
 * A log that goes on from the firmware's. It must leave the component PCRs to vtpmd; a host TCB
 * PCR it does not replay to is logged (the vMA's delegation will be refused for it), not fatal.
 */
async function firmwareLogBuilder(tpm: Tpm2Client, bytes: Buffer, logger: Logger | undefined): Promise<EventLogBuilder> {
  let builder: EventLogBuilder;
  try {
    builder = EventLogBuilder.continuing(decodeEventLog(bytes));
  } catch (e) {
    if (e instanceof EventLogError || e instanceof RangeError) throw new AttachedHostError(`the firmware event log is unusable: ${e.message}`);
    throw e;
  }
  const componentPcrs = new Set(GVTPM_COMPONENTS.map((c) => c.pcr));
  const taken = builder.log.events.find((e) => componentPcrs.has(e.pcrIndex) && e.digests.some((d) => d.digest.some((b) => b !== 0)));
  if (taken) throw new AttachedHostError(`the firmware event log measures into PCR ${taken.pcrIndex}, which vtpmd's components use`);
  const replayed = replay(builder.log);
  const tcb = hostTcbPcrs();
  for (const [alg, values] of replayed) {
    let actual: Buffer[];
    try {
      actual = await tpm.pcrRead(alg, tcb);
    } catch {
      logger?.warn({ bank: alg }, 'the firmware event log has a bank the host TPM does not report');
      continue;
    }
    const differ = tcb.filter((pcr, i) => !actual[i]!.equals(values[pcr]!));
    if (differ.length > 0) logger?.warn({ bank: alg, pcrs: differ }, 'the firmware event log does not replay to these PCRs of the host TPM');
  }
  return builder;
}

/**
 * Whether the TPM takes the owner and endorsement authorizations vtpmd holds, asked by commands
 * that change nothing: an audit status change with no algorithm and no commands, and PolicySecret
 * in a trial session. Hierarchy authorizations are outside dictionary-attack protection, so a
 * wrong one costs nothing but this refusal.
 */
async function checkHierarchyAuth(tpm: Tpm2Client): Promise<void> {
  const refused = (e: unknown) => e instanceof Tpm2CommandError && (unnumbered(e.rc) === RC.BAD_AUTH || unnumbered(e.rc) === RC.AUTH_FAIL);
  const told = (handle: number, option: string) =>
    tpm.hierarchyAuthValue(handle).length > 0 ? `the authorization in ${option} is not its own` : `it is not empty (give it with ${option})`;
  try {
    await tpm.withHierarchyAuth(RH.OWNER, [handleName(RH.OWNER)], (auth) => tpm.call(CC.SetCommandCodeAuditStatus, [RH.OWNER], [auth], { auditAlg: ALG.NULL, setList: [], clearList: [] }));
  } catch (e) {
    if (refused(e)) throw new AttachedHostError(`the host TPM refused its owner authorization: ${told(RH.OWNER, '--owner-auth-file')}`);
    throw e;
  }
  const session = await tpm.startPolicySession(true);
  try {
    await tpm.withHierarchyAuth(RH.ENDORSEMENT, [handleName(RH.ENDORSEMENT), handleName(session)], (auth) =>
      tpm.call(CC.PolicySecret, [RH.ENDORSEMENT, session], [auth], { nonceTPM: Buffer.alloc(0), cpHashA: Buffer.alloc(0), policyRef: Buffer.alloc(0), expiration: 0 }),
    );
  } catch (e) {
    if (refused(e)) throw new AttachedHostError(`the host TPM refused its endorsement authorization: ${told(RH.ENDORSEMENT, '--endorsement-auth-file')}`);
    throw e;
  } finally {
    await tpm.flushContext(session).catch(() => undefined);
  }
}

/** Extends `event` unless its PCR already holds exactly it (see the module comment); true when it extended. */
async function measureOnce(tpm: Tpm2Client, event: PcrEvent): Promise<boolean> {
  let fresh = true;
  let measured = true;
  for (const d of event.digests) {
    const [value] = await tpm.pcrRead(d.alg, [event.pcrIndex]);
    if (!value) throw new AttachedHostError(`the host TPM returned no value for PCR ${event.pcrIndex}`);
    const zero = Buffer.alloc(value.length);
    fresh &&= value.equals(zero);
    measured &&= value.equals(digest(d.alg, zero, d.digest));
  }
  if (measured) return false;
  if (!fresh) {
    throw new AttachedHostError(
      `PCR ${event.pcrIndex} of the host TPM already holds a measurement other than this code's: other GVTPM code ran since the TPM was last reset, and only a reset (a host reboot) lets it measure what runs now`,
    );
  }
  await tpm.pcrExtend(
    event.pcrIndex,
    event.digests.map((d) => ({ hashAlg: d.alg, digest: Buffer.from(d.digest) })),
  );
  return true;
}

/** The TCG default EKs whose certificates the TPM holds, each persisted at its handle (created there from its template if missing). */
async function provisionedEks(tpm: Tpm2Client): Promise<HostEk[]> {
  const out: HostEk[] = [];
  for (const slot of EK_SLOTS) {
    const der = await readNvCertificate(tpm, slot.certificateIndex);
    if (!der) continue;
    const certificate = parseCertificate(der, `the host TPM's EK certificate at 0x${slot.certificateIndex.toString(16)}`);
    const outPublic = await ensurePersistent(tpm, RH.ENDORSEMENT, slot.handle, slot.template());
    if (!subjectPublicKeyInfo(publicKeyOf(outPublic)).equals(certificate.subjectPublicKeyInfo)) {
      throw new AttachedHostError(`the key at 0x${slot.handle.toString(16)} is not the EK that the certificate at 0x${slot.certificateIndex.toString(16)} certifies`);
    }
    out.push({ handle: slot.handle, certificateIndex: slot.certificateIndex, certificate: der });
  }
  return out;
}

/** The contents of a certificate index, read with the first authorization its attributes allow; undefined when the index is absent. */
async function readNvCertificate(tpm: Tpm2Client, index: number): Promise<Buffer | undefined> {
  let attributes: number;
  let size: number;
  try {
    ({ attributes, dataSize: size } = await tpm.nvReadPublic(index));
  } catch (e) {
    if (isMissingHandle(e)) return undefined;
    throw e;
  }
  if (!(attributes & NV_ATTR.WRITTEN)) return undefined;
  const auth = attributes & NV_ATTR.AUTHREAD ? index : attributes & NV_ATTR.OWNERREAD ? RH.OWNER : attributes & NV_ATTR.PPREAD ? RH.PLATFORM : undefined;
  if (auth === undefined) throw new AttachedHostError(`the certificate index 0x${index.toString(16)} allows no read vtpmd can authorize`);
  return tpm.nvRead(auth, index, size);
}
