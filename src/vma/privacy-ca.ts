/**
 * The privacy CA: certifies attestation identity keys (AIKs) of TPMs it can tell are genuine — a
 * hwTPM whose EK certificate chains to a manufacturer's root, or a vTPM whose EK certificate
 * chains through a vMA to the VMCA's root. The proof that the AIK lives in the TPM holding that EK
 * is the TPM 2.0 credential protocol: MakeCredential here, ActivateCredential there.
 *
 * The AIK credential carries the TPM's manufacturer, model and version copied from the EK
 * certificate (so a verifier learns what kind of TPM signed a quote without seeing the EK
 * certificate) and a binding to that EK certificate, and the tcg-kp-AIKCertificate purpose.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { subjectPublicKeyInfo } from '../tpm/crypto/certificate-signing.ts';
import { systemEntropy } from '../tpm/crypto/random.ts';
import { publicKeyOf } from '../tpm/tpm2/objects/model.ts';
import { OBJECT_ATTR as A, type Public } from '../tpm/tpm2/types/public.ts';
import { encode, octets, raw, seq, uint } from '../hwtpm/credentials/der.ts';
import { authorityKeyIdentifier, basicConstraints, extendedKeyUsage, keyUsage, subjectAltNameDirectory } from '../hwtpm/credentials/extensions.ts';
import type { CertificateAuthority } from '../hwtpm/credentials/manufacturer-ca.ts';
import { KEY_USAGE, OID } from '../hwtpm/credentials/oids.ts';
import { certificatePublicKey, parseCertificate, randomSerial, toPem, type Extension, type ParsedCertificate } from '../hwtpm/credentials/x509.ts';
import { extendedKeyUsageOf, subjectAltDirectory } from './cert-fields.ts';
import { validateChain } from './chain.ts';
import { issueCertificateWith, softwareSigner } from './chip-signed-x509.ts';
import type { ParsedCrl } from './crl.ts';
import { VmaError } from './errors.ts';
import { makeCredential } from './make-credential.ts';
import { TCG_OID, VTPMD_OID } from './oids.ts';
import { openRootCa } from './root-ca.ts';
import { decodePublicArea, nameOf } from './tpm-structures.ts';

export const PRIVACY_CA_FILES = { certificate: 'privacy-ca.pem', key: 'privacy-ca.key' } as const;

export interface EkTrust {
  /** Roots an EK certificate may chain to. */
  readonly roots: readonly ParsedCertificate[];
  /** CRLs current at the time of asking (the VMCA's). */
  readonly crls?: () => Promise<readonly ParsedCrl[]>;
  /** Roots whose certificates must be checked against a current CRL. */
  readonly requireCrlFrom?: readonly ParsedCertificate[];
}

export interface PrivacyCaOptions {
  readonly dir: string;
  readonly ekTrust: EkTrust;
  readonly now?: () => Date;
  /** How long an AIK credential is valid; default 365 days. */
  readonly validityDays?: number;
  /** How long a challenge waits for its answer; default 5 minutes. */
  readonly challengeTtlMs?: number;
}

export interface AikRequest {
  readonly ekCertificate: Buffer;
  /** Intermediates between the EK certificate and its root (a vMA's delegation certificate). */
  readonly ekChain?: readonly Buffer[];
  /** TPMT_PUBLIC of the EK, as the TPM reports it (ReadPublic). */
  readonly ekPublic: Buffer;
  /** TPMT_PUBLIC of the AIK. */
  readonly aikPublic: Buffer;
}

export interface AikChallenge {
  readonly id: string;
  readonly credentialBlob: Buffer;
  readonly secret: Buffer;
}

interface Pending {
  readonly expected: Buffer;
  readonly expires: number;
  readonly ek: ParsedCertificate;
  readonly aik: Public;
}

const AIK_ATTRIBUTES = A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.restricted | A.sign;

export class PrivacyCa {
  private readonly pending = new Map<string, Pending>();

  private constructor(
    readonly ca: CertificateAuthority,
    private readonly opts: PrivacyCaOptions,
  ) {}

  static async open(opts: PrivacyCaOptions): Promise<PrivacyCa> {
    const ca = await openRootCa(opts.dir, {
      certificateFile: PRIVACY_CA_FILES.certificate,
      keyFile: PRIVACY_CA_FILES.key,
      keyHeader: 'vtpmd privacy CA key, format 1',
      name: [
        { oid: OID.organizationName, value: 'vtpmd Privacy CA' },
        { oid: OID.commonName, value: 'vtpmd Privacy CA Root' },
      ],
      ...(opts.now ? { now: opts.now } : {}),
    });
    return new PrivacyCa(ca, opts);
  }

  get root(): ParsedCertificate {
    return this.ca.certificate;
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  /** Checks the EK credential and the AIK's attributes, and returns the credential the TPM must activate. */
  async challenge(req: AikRequest): Promise<AikChallenge> {
    const ek = parseCertificate(req.ekCertificate, 'the EK certificate');
    const chain = (req.ekChain ?? []).map((c, i) => parseCertificate(c, `EK chain certificate ${i + 1}`));
    const trust = this.opts.ekTrust;
    const result = validateChain(ek, chain, trust.roots, {
      now: this.now(),
      crls: trust.crls ? await trust.crls() : [],
      ...(trust.requireCrlFrom ? { requireCrlFrom: trust.requireCrlFrom } : {}),
    });
    if (result.reasons.length > 0) throw new VmaError('bad-credential', `the EK certificate is not acceptable: ${result.reasons.join('; ')}`);
    if (!extendedKeyUsageOf(ek).includes(OID.tcgKpEkCertificate)) {
      throw new VmaError('bad-credential', 'the certificate is not an EK certificate (no tcg-kp-EKCertificate purpose)');
    }
    const ekPublic = decodePublicOrThrow(req.ekPublic, 'EK');
    if (!subjectPublicKeyInfo(publicKeyOf(ekPublic)).equals(ek.subjectPublicKeyInfo)) {
      throw new VmaError('bad-evidence', 'the EK public area is not the key the EK certificate certifies');
    }
    const aik = decodePublicOrThrow(req.aikPublic, 'AIK');
    if ((aik.objectAttributes & AIK_ATTRIBUTES) !== AIK_ATTRIBUTES || aik.objectAttributes & A.decrypt) {
      throw new VmaError('bad-evidence', 'the AIK must be a fixedTPM, fixedParent, TPM-generated, restricted signing key');
    }
    this.expire();
    const expected = randomBytes(32);
    const id = randomUUID();
    this.pending.set(id, { expected, expires: Date.now() + (this.opts.challengeTtlMs ?? 300_000), ek, aik });
    return { id, ...makeCredential(ekPublic, nameOf(aik), expected) };
  }

  /** Issues the AIK credential once the TPM proves it activated the challenge's credential. */
  async complete(id: string, activated: Uint8Array): Promise<Buffer> {
    this.expire();
    const p = this.pending.get(id);
    if (!p) throw new VmaError('unknown-challenge', 'no such challenge is waiting (it expired or was already answered): request a new one');
    this.pending.delete(id);
    if (activated.length !== p.expected.length || !timingSafeEqual(activated, p.expected)) {
      throw new VmaError('activation-failed', 'the TPM did not recover the credential: the AIK and the EK are not in the same TPM');
    }
    return this.issue(p.ek, p.aik);
  }

  private expire(): void {
    const now = Date.now();
    for (const [id, p] of this.pending) if (p.expires < now) this.pending.delete(id);
  }

  private async issue(ek: ParsedCertificate, aik: Public): Promise<Buffer> {
    const tpm = subjectAltDirectory(ek);
    const notBefore = new Date(Math.floor(this.now().getTime() / 1000) * 1000);
    const notAfter = new Date(notBefore.getTime() + (this.opts.validityDays ?? 365) * 86_400_000);
    const extensions: Extension[] = [
      subjectAltNameDirectory(
        [OID.tcgTpmManufacturer, OID.tcgTpmModel, OID.tcgTpmVersion].map((oid) => ({ oid, value: tpm.get(oid) ?? '' })),
        true,
      ),
      basicConstraints(false),
      keyUsage([KEY_USAGE.digitalSignature]),
      extendedKeyUsage([TCG_OID.kpAikCertificate]),
      authorityKeyIdentifier(this.ca.keyId),
      ekBindingExtension(ek),
    ];
    return issueCertificateWith(
      {
        serial: randomSerial(systemEntropy),
        issuer: this.ca.certificate.subject,
        subject: encode(seq()),
        notBefore,
        notAfter,
        subjectPublicKeyInfo: subjectPublicKeyInfo(publicKeyOf(aik)),
        extensions,
      },
      softwareSigner(this.ca.privateKey, certificatePublicKey(this.ca.certificate)),
    );
  }

  get rootPem(): string {
    return toPem(this.ca.certificate.der);
  }
}

/** EkBinding: the EK certificate's issuer, serial and SHA-256 digest. */
export function ekBindingExtension(ek: ParsedCertificate): Extension {
  const value = encode(seq(raw(ek.issuer), uint(ek.serial), octets(createHash('sha256').update(ek.der).digest())));
  return { oid: VTPMD_OID.ekBinding, critical: false, value };
}

function decodePublicOrThrow(bytes: Buffer, what: string): Public {
  try {
    return decodePublicArea(bytes);
  } catch {
    throw new VmaError('bad-evidence', `the ${what} public area is not a TPMT_PUBLIC`);
  }
}
