/**
 * The virtual manufacturer authority: the vTPMs' manufacturer. Its signing keys live in the hwTPM,
 * bound to the PCRs of the host TCB, the GVTPM framework and the vMA itself, so they sign only
 * while the host runs what the VMCA approved; one key per migration policy, so migratable and
 * non-migratable vTPMs carry credentials from different issuers. At start it gets its hwTPM AIK
 * certified by the privacy CA, has the AIK certify each signing key and quote the bound PCRs, and
 * sends that with the host event log to the VMCA for a delegation certificate.
 *
 * The AIK and signing keys are made with the chip's TPM 2.0 commands directly (under the SRK, in
 * the chip's exclusive turn) because TPM2_Certify and TPM2_ActivateCredential need them loaded
 * side by side in one turn, which the opaque ChipClient blobs do not allow.
 */
import type { KeyObject } from 'node:crypto';
import { keyIdentifier, subjectPublicKeyInfo } from '../tpm/crypto/certificate-signing.ts';
import { publicKeyOf } from '../tpm/tpm2/objects/model.ts';
import { bytesOf, children, parse } from '../hwtpm/credentials/der.ts';
import { DEFAULT_IDENTITY } from '../tpm/tpm2/capability/properties.ts';
import { OID } from '../hwtpm/credentials/oids.ts';
import { parseCertificate, type ParsedCertificate } from '../hwtpm/credentials/x509.ts';
import { tpm2Turn, type HostTpm } from '../hwtpm/host-tpm.ts';
import { decodeEventLog, type EventLog } from '../hwtpm/event-log.ts';
import { GVTPM_COMPONENTS, hostTcbPcrs } from '../hwtpm/host-boot.ts';
import { labPlatformIdentity, type PlatformIdentity } from '../hwtpm/platform-identity.ts';
import { HANDLES } from '../hwtpm/tpm2-templates.ts';
import { enrollAik, type AikIssuer, type TpmRunner } from './aik-enrollment.ts';
import { subjectAltDirectory } from './cert-fields.ts';
import type { AsyncSigner } from './chip-signed-x509.ts';
import { VmaError } from './errors.ts';
import { replaySha256, vmaPcrs } from './reference-values.ts';
import { certify, createPcrBoundKey, quote, signWithPcrBoundKey, withLoaded, type KeyBlob, type SignedAttestation } from './tpm-operations.ts';
import { encodePublicArea, pcrDigest } from './tpm-structures.ts';
import type { VmaEvidence } from './vmca.ts';
import { issuePlatformCertificate, issueVtpmEkCertificate, type PlatformTcb, type VtpmIssuer } from './vtpm-credentials.ts';

/** The VMCA as the vMA reaches it. */
export interface DelegatingAuthority {
  challenge(): Buffer | Promise<Buffer>;
  delegate(nonce: Uint8Array, evidence: VmaEvidence): Promise<Buffer>;
}

export interface VmaOptions {
  readonly chip: HostTpm;
  readonly hostId: string;
  /** The host's TCG event log (binary). */
  readonly eventLog: Buffer;
  /** The chip's EK used for AIK enrollment, and its certificate. */
  readonly ek: { readonly handle: number; readonly certificate: Buffer };
  readonly privacyCa: AikIssuer;
  readonly vmca: DelegatingAuthority;
  /** What platform certificates say the host is; default the simulated lab host's (labPlatformIdentity). */
  readonly platform?: PlatformIdentity;
  readonly now?: () => Date;
}

export interface VtpmEkInfo {
  readonly migratable: boolean;
  readonly manufacturerId?: number | string;
  readonly firmwareVersion?: number;
}

/** What a VM's owner gets: its vTPM's credentials and the chain up to the VMCA root. */
export interface VmCredentials {
  readonly ekCertificate: Buffer;
  readonly platformCertificate: Buffer;
  /** The vMA's delegation certificate (and any intermediates), leaf-most first. */
  readonly chain: readonly Buffer[];
  readonly vmcaRoot: Buffer;
}

interface SigningKey {
  readonly key: KeyBlob;
  readonly issuer: VtpmIssuer;
}

export class VirtualManufacturerAuthority {
  private constructor(
    private readonly opts: VmaOptions,
    readonly aik: { readonly key: KeyBlob; readonly certificate: Buffer },
    private readonly keys: { readonly migratable: SigningKey; readonly fixed: SigningKey },
    readonly platform: PlatformTcb,
    readonly hwTpmModel: string,
  ) {}

  static async open(opts: VmaOptions): Promise<VirtualManufacturerAuthority> {
    const run = chipRunner(opts.chip);
    const hwModel = subjectAltDirectory(parseCertificate(opts.ek.certificate, 'the chip EK certificate')).get(OID.tcgTpmModel);
    if (!hwModel) throw new VmaError('bad-credential', 'the chip EK certificate names no TPM model; re-provision the chip');
    const aik = await enrollAik(run, opts.privacyCa, { parent: HANDLES.SRK, ekHandle: opts.ek.handle, ekCertificate: opts.ek.certificate });
    const delegate = async (migratable: boolean): Promise<SigningKey> => {
      const pcrs = vmaPcrs();
      const nonce = Buffer.from(await opts.vmca.challenge());
      const { key, certification, pcrQuote } = await run(async (tpm) => {
        const key = await createPcrBoundKey(tpm, HANDLES.SRK, pcrs);
        return withLoaded(tpm, HANDLES.SRK, aik.aik, async (aikHandle) => ({
          key,
          certification: await withLoaded(tpm, HANDLES.SRK, key, (h) => certify(tpm, h, aikHandle, nonce)),
          pcrQuote: await quote(tpm, aikHandle, pcrs, nonce),
        }));
      });
      const der = await opts.vmca.delegate(nonce, {
        hostId: opts.hostId,
        migratable,
        aikCertificate: aik.certificate,
        signingKeyPublic: encodePublicArea(key.inPublic),
        certification,
        quote: pcrQuote,
        eventLog: opts.eventLog,
      });
      const certificate = parseCertificate(der, 'the VMCA delegation certificate');
      const publicKey = publicKeyOf(key.inPublic);
      if (!certificate.subjectPublicKeyInfo.equals(subjectPublicKeyInfo(publicKey))) {
        throw new VmaError('bad-credential', 'the VMCA delegated to another key than the vMA asked for');
      }
      const signer: AsyncSigner = { publicKey, sign: (data) => run((tpm) => withLoaded(tpm, HANDLES.SRK, key, (h) => signWithPcrBoundKey(tpm, h, pcrs, data))) };
      return { key, issuer: { signer, certificate, keyId: keyIdentifier(bytesOf(children(parse(certificate.subjectPublicKeyInfo))[1]!).subarray(1)) } };
    };
    const migratable = await delegate(true);
    const fixed = await delegate(false);
    return new VirtualManufacturerAuthority(opts, { key: aik.aik, certificate: aik.certificate }, { migratable, fixed }, platformTcb(opts.hostId, opts.platform ?? labPlatformIdentity(opts.hostId), opts.eventLog, hwModel), hwModel);
  }

  /** The delegation certificate of the key that signs vTPMs of this migration policy. */
  delegation(migratable: boolean): ParsedCertificate {
    return this.issuerFor(migratable).certificate;
  }

  private issuerFor(migratable: boolean): VtpmIssuer {
    return (migratable ? this.keys.migratable : this.keys.fixed).issuer;
  }

  private now(): Date {
    return new Date(Math.floor((this.opts.now?.() ?? new Date()).getTime() / 1000) * 1000);
  }

  async issueEkCertificate(ekPublicKey: KeyObject, info: VtpmEkInfo): Promise<Buffer> {
    return issueVtpmEkCertificate(this.issuerFor(info.migratable), {
      ekPublicKey,
      manufacturerId: info.manufacturerId ?? DEFAULT_IDENTITY.manufacturer,
      firmwareVersion: info.firmwareVersion ?? DEFAULT_IDENTITY.firmwareVersion[0],
      hwTpmModel: this.hwTpmModel,
      notBefore: this.now(),
    });
  }

  async issuePlatformCertificate(ekCertificate: Buffer, vmName: string, migratable: boolean): Promise<Buffer> {
    const issuer = this.issuerFor(migratable);
    return issuePlatformCertificate(issuer, {
      ekCertificate: parseCertificate(ekCertificate, 'the vTPM EK certificate'),
      platform: this.platform,
      vmName,
      migratable,
      notBefore: this.now(),
      notAfter: issuer.certificate.notAfter,
    });
  }

  /** The full credential set of a vTPM whose EK certificate this vMA issued. */
  async credentials(ekCertificate: Buffer, vmName: string, migratable: boolean, vmcaRoot: Buffer): Promise<VmCredentials> {
    return {
      ekCertificate,
      platformCertificate: await this.issuePlatformCertificate(ekCertificate, vmName, migratable),
      chain: [this.delegation(migratable).der],
      vmcaRoot,
    };
  }

  /** A quote of the chip's PCRs by the vMA's hwTPM AIK (whose credential is `aik.certificate`). */
  quoteChip(pcrs: readonly number[], nonce: Uint8Array): Promise<SignedAttestation> {
    const run = chipRunner(this.opts.chip);
    return run((tpm) => withLoaded(tpm, HANDLES.SRK, this.aik.key, (h) => quote(tpm, h, pcrs, nonce)));
  }
}

export function chipRunner(chip: HostTpm): TpmRunner {
  return (job) => tpm2Turn(chip, job);
}

function platformTcb(hostId: string, identity: PlatformIdentity, eventLog: Buffer, hwModel: string): PlatformTcb {
  const log: EventLog = decodeEventLog(eventLog);
  const tcb = hostTcbPcrs();
  return {
    hostId,
    platformManufacturer: identity.manufacturer,
    platformModel: `${identity.model} with GVTPM on ${hwModel}`,
    platformVersion: identity.version,
    platformSerial: identity.serial,
    hostTcbPcrs: tcb,
    hostTcbDigest: pcrDigest(replaySha256(log, tcb)),
    components: GVTPM_COMPONENTS.map((c) => ({ name: c.name, pcr: c.pcr, value: replaySha256(log, [c.pcr])[0]! })),
  };
}
