/**
 * The VMCA: an external certificate authority, with its own root and its own directory, that
 * delegates vTPM endorsement to a vMA once it has seen, in TPM-signed evidence, that the vMA's
 * signing key lives in a genuine hwTPM and can sign only while the host TCB, the GVTPM framework
 * and the vMA itself are in a configuration on its approved list. The delegation is a CA
 * certificate with pathLen 0; when an approved configuration turns out vulnerable the VMCA
 * withdraws it and revokes every delegation made to it in its CRL.
 *
 *   <dir>/vmca-root.pem, vmca-root.key   the root
 *   <dir>/vmca-state.json                approved configurations, issued and revoked delegations
 */
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { keyIdentifier, subjectPublicKeyInfo } from '../tpm/crypto/certificate-signing.ts';
import { systemEntropy } from '../tpm/crypto/random.ts';
import { publicKeyOf } from '../tpm/tpm2/objects/model.ts';
import { OBJECT_ATTR as A, type Public } from '../tpm/tpm2/types/public.ts';
import { writeFileAtomic } from '../hwtpm/credentials/atomic-file.ts';
import { bool, bytesOf, children, encode, parse, seq, utf8 } from '../hwtpm/credentials/der.ts';
import { authorityKeyIdentifier, basicConstraints, keyUsage, subjectKeyIdentifier } from '../hwtpm/credentials/extensions.ts';
import type { CertificateAuthority } from '../hwtpm/credentials/manufacturer-ca.ts';
import { KEY_USAGE, OID } from '../hwtpm/credentials/oids.ts';
import { certificatePublicKey, encodeName, parseCertificate, randomSerial, toPem, type ParsedCertificate } from '../hwtpm/credentials/x509.ts';
import { decodeEventLog } from '../hwtpm/event-log.ts';
import { extendedKeyUsageOf, subjectAltDirectory } from './cert-fields.ts';
import { validateChain } from './chain.ts';
import { issueCertificateWith, softwareSigner } from './chip-signed-x509.ts';
import { CRL_REASON, issueCrl, type RevokedEntry } from './crl.ts';
import { ATTEST_CERTIFY, ATTEST_QUOTE, checkAttestation } from './evidence.ts';
import { VmaError } from './errors.ts';
import { TCG_OID, VTPMD_OID } from './oids.ts';
import { mismatchedPcrs, replaySha256, vmaPcrs, type ApprovedConfiguration } from './reference-values.ts';
import { openRootCa } from './root-ca.ts';
import type { SignedAttestation } from './tpm-operations.ts';
import { decodePublicArea, nameOf, pcrDigest, policyPcrDigest, selectedSha256Pcrs } from './tpm-structures.ts';

export const VMCA_FILES = { certificate: 'vmca-root.pem', key: 'vmca-root.key', state: 'vmca-state.json' } as const;
const STATE_VERSION = 1;

/** What a vMA sends to be delegated to: everything signed by its hwTPM AIK over the VMCA's nonce. */
export interface VmaEvidence {
  readonly hostId: string;
  readonly migratable: boolean;
  /** The AIK's credential from a privacy CA the VMCA trusts. */
  readonly aikCertificate: Buffer;
  /** TPMT_PUBLIC of the vMA's signing key. */
  readonly signingKeyPublic: Buffer;
  /** TPM2_Certify of the signing key by the AIK. */
  readonly certification: SignedAttestation;
  /** TPM2_Quote by the AIK of the PCRs the signing key is bound to. */
  readonly quote: SignedAttestation;
  /** The host's TCG event log. */
  readonly eventLog: Buffer;
}

export interface VmcaOptions {
  readonly dir: string;
  /** Roots of the privacy CAs whose AIK credentials the VMCA accepts (asked for at each request). */
  readonly privacyCaRoots: () => readonly ParsedCertificate[];
  readonly now?: () => Date;
  /** Validity of a delegation; default 365 days. */
  readonly delegationDays?: number;
  /** How far ahead each CRL promises the next; default 7 days. */
  readonly crlDays?: number;
}

interface IssuedRecord {
  serial: string;
  configuration: string;
  hostId: string;
  migratable: boolean;
  notAfter: string;
}

interface RevokedRecord {
  serial: string;
  revokedAt: string;
  reason: number;
}

interface State {
  version: number;
  crlNumber: number;
  approved: ApprovedConfiguration[];
  issued: IssuedRecord[];
  revoked: RevokedRecord[];
}

const SIGNING_KEY_REQUIRED = A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.sign;

export class Vmca {
  private readonly nonces = new Set<string>();
  private cachedCrl: { number: number; der: Buffer; nextUpdate: Date } | undefined;

  private constructor(
    readonly ca: CertificateAuthority,
    private state: State,
    private readonly opts: VmcaOptions,
  ) {}

  static async open(opts: VmcaOptions): Promise<Vmca> {
    const ca = await openRootCa(opts.dir, {
      certificateFile: VMCA_FILES.certificate,
      keyFile: VMCA_FILES.key,
      keyHeader: 'vtpmd VMCA root key, format 1',
      name: [
        { oid: OID.organizationName, value: 'vtpmd VMCA' },
        { oid: OID.commonName, value: 'vtpmd Virtual Manufacturer Root CA' },
      ],
      ...(opts.now ? { now: opts.now } : {}),
    });
    return new Vmca(ca, await loadState(join(opts.dir, VMCA_FILES.state)), opts);
  }

  get root(): ParsedCertificate {
    return this.ca.certificate;
  }

  get rootPem(): string {
    return toPem(this.ca.certificate.der);
  }

  get approved(): readonly ApprovedConfiguration[] {
    return this.state.approved;
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  async approve(config: ApprovedConfiguration): Promise<void> {
    this.state.approved = [...this.state.approved.filter((c) => c.name !== config.name), config];
    await this.save();
  }

  /** A fresh nonce the next evidence must be signed over; each is good for one request. */
  challenge(): Buffer {
    const n = randomBytes(32);
    this.nonces.add(n.toString('hex'));
    return n;
  }

  /** Checks the evidence and issues the vMA's delegation certificate (DER). */
  async delegate(nonce: Uint8Array, evidence: VmaEvidence): Promise<Buffer> {
    const key = Buffer.from(nonce).toString('hex');
    if (!this.nonces.delete(key)) throw new VmaError('unknown-challenge', 'the nonce was not issued by this VMCA or was already used: ask for a new challenge');
    const { config, signingKey } = this.check(nonce, evidence);
    const now = this.now();
    const notBefore = new Date(Math.floor(now.getTime() / 1000) * 1000);
    const notAfter = new Date(notBefore.getTime() + (this.opts.delegationDays ?? 365) * 86_400_000);
    const spki = subjectPublicKeyInfo(publicKeyOf(signingKey));
    const keyId = keyIdentifier(bytesOf(children(parse(spki))[1]!).subarray(1));
    const serial = randomSerial(systemEntropy);
    const policy = evidence.migratable ? 'migratable' : 'non-migratable';
    const der = await issueCertificateWith(
      {
        serial,
        issuer: this.ca.certificate.subject,
        subject: encodeName([
          { oid: OID.organizationName, value: 'vtpmd Virtual Manufacturer Authority' },
          { oid: OID.organizationalUnitName, value: evidence.hostId },
          { oid: OID.commonName, value: `vMA ${evidence.hostId} (${policy} vTPMs)` },
        ]),
        notBefore,
        notAfter,
        subjectPublicKeyInfo: spki,
        extensions: [
          basicConstraints(true, 0),
          keyUsage([KEY_USAGE.digitalSignature, KEY_USAGE.keyCertSign]),
          subjectKeyIdentifier(keyId),
          authorityKeyIdentifier(this.ca.keyId),
          { oid: VTPMD_OID.delegationInfo, critical: false, value: encode(seq(utf8(config.name), bool(evidence.migratable))) },
        ],
      },
      softwareSigner(this.ca.privateKey, certificatePublicKey(this.ca.certificate)),
    );
    this.state.issued.push({ serial: serial.toString('hex'), configuration: config.name, hostId: evidence.hostId, migratable: evidence.migratable, notAfter: notAfter.toISOString() });
    await this.save();
    return der;
  }

  /** Withdraws an approved configuration and revokes every delegation made to a vMA running it. */
  async withdrawConfiguration(name: string): Promise<number> {
    this.state.approved = this.state.approved.filter((c) => c.name !== name);
    const serials = this.state.issued.filter((i) => i.configuration === name).map((i) => i.serial);
    this.addRevoked(serials, CRL_REASON.keyCompromise);
    await this.save();
    return serials.length;
  }

  async revoke(serial: Uint8Array, reason: number = CRL_REASON.unspecified): Promise<void> {
    this.addRevoked([Buffer.from(serial).toString('hex')], reason);
    await this.save();
  }

  /** The current CRL (DER), reissued after every revocation and before the last one lapses. */
  async crl(): Promise<Buffer> {
    const now = this.now();
    if (this.cachedCrl && this.cachedCrl.number === this.state.crlNumber && this.cachedCrl.nextUpdate.getTime() - now.getTime() > 86_400_000) return this.cachedCrl.der;
    const thisUpdate = new Date(Math.floor(now.getTime() / 1000) * 1000);
    const nextUpdate = new Date(thisUpdate.getTime() + (this.opts.crlDays ?? 7) * 86_400_000);
    const revoked: RevokedEntry[] = this.state.revoked.map((r) => ({ serial: Buffer.from(r.serial, 'hex'), revokedAt: new Date(r.revokedAt), reason: r.reason }));
    const der = await issueCrl(
      { issuer: this.ca.certificate.subject, issuerKeyId: this.ca.keyId, thisUpdate, nextUpdate, crlNumber: this.state.crlNumber, revoked },
      softwareSigner(this.ca.privateKey, certificatePublicKey(this.ca.certificate)),
    );
    this.cachedCrl = { number: this.state.crlNumber, der, nextUpdate };
    return der;
  }

  private addRevoked(serials: readonly string[], reason: number): void {
    const at = this.now().toISOString();
    const known = new Set(this.state.revoked.map((r) => r.serial));
    for (const s of serials) if (!known.has(s)) this.state.revoked.push({ serial: s, revokedAt: at, reason });
    this.state.crlNumber++;
  }

  private check(nonce: Uint8Array, e: VmaEvidence): { config: ApprovedConfiguration; signingKey: Public } {
    const refuse = (reasons: string[]): never => {
      throw new VmaError('bad-evidence', `the VMCA refuses the vMA's evidence: ${reasons.join('; ')}`);
    };
    let aikCert: ParsedCertificate;
    try {
      aikCert = parseCertificate(e.aikCertificate, 'the AIK credential');
    } catch (err) {
      return refuse([(err as Error).message]);
    }
    const chain = validateChain(aikCert, [], this.opts.privacyCaRoots(), { now: this.now() });
    const reasons = [...chain.reasons];
    if (!extendedKeyUsageOf(aikCert).includes(TCG_OID.kpAikCertificate)) reasons.push('the AIK credential lacks the tcg-kp-AIKCertificate purpose');
    if (/GVTPM/.test(subjectAltDirectory(aikCert).get(OID.tcgTpmModel) ?? '')) reasons.push('the AIK belongs to a vTPM; a vMA must attest with its hwTPM');
    if (reasons.length) refuse(reasons);
    const aik = certificatePublicKey(aikCert);

    const pcrs = vmaPcrs();
    const q = checkAttestation('quote', e.quote, aik, ATTEST_QUOTE, nonce);
    if (!q.ok) return refuse(q.reasons);
    const quoted = q.value.attested as { pcrSelect: { hash: number; select: Buffer }[]; pcrDigest: Buffer };
    const selected = selectedSha256Pcrs(quoted.pcrSelect);
    if (!selected || selected.join(',') !== pcrs.join(',')) refuse([`the quote covers PCRs ${selected?.join(',') ?? 'of another bank'}, not the host TCB, GVTPM and vMA PCRs ${pcrs.join(',')}`]);
    let values: Buffer[];
    try {
      values = replaySha256(decodeEventLog(e.eventLog), pcrs);
    } catch (err) {
      return refuse([`the event log cannot be replayed (${(err as Error).message})`]);
    }
    if (!pcrDigest(values).equals(quoted.pcrDigest)) refuse(['the event log does not replay to the quoted PCR values']);
    const config = this.state.approved.find((c) => mismatchedPcrs(c, pcrs, values).length === 0 && pcrs.every((p) => c.pcrs[String(p)] !== undefined));
    if (!config) {
      const closest = this.state.approved.map((c) => ({ c, diff: mismatchedPcrs(c, pcrs, values) })).sort((a, b) => a.diff.length - b.diff.length)[0];
      throw new VmaError(
        'unapproved-configuration',
        closest ? `the host runs no approved configuration (nearest, "${closest.c.name}", differs in PCRs ${closest.diff.join(', ')})` : 'the VMCA has no approved configuration',
      );
    }

    const c = checkAttestation('key certification', e.certification, aik, ATTEST_CERTIFY, nonce);
    if (!c.ok) return refuse(c.reasons);
    let signingKey: Public;
    try {
      signingKey = decodePublicArea(e.signingKeyPublic);
      publicKeyOf(signingKey);
    } catch {
      return refuse(['the signing key public area is not a TPMT_PUBLIC of an asymmetric key']);
    }
    const certified = c.value.attested as { name: Buffer };
    if (!certified.name.equals(nameOf(signingKey))) refuse(['the certification is of another key than the one to delegate to']);
    const attrs = signingKey.objectAttributes;
    if ((attrs & SIGNING_KEY_REQUIRED) !== SIGNING_KEY_REQUIRED || attrs & A.userWithAuth || attrs & A.restricted) {
      refuse(['the signing key must be a fixedTPM, fixedParent, TPM-generated, unrestricted signing key usable only through its policy']);
    }
    const expectedPolicy = policyPcrDigest(pcrs, pcrs.map((p) => Buffer.from(config.pcrs[String(p)]!, 'hex')));
    if (!signingKey.authPolicy.equals(expectedPolicy)) refuse([`the signing key is not bound to the PCR values of configuration "${config.name}"`]);
    return { config, signingKey };
  }

  private async save(): Promise<void> {
    await writeFileAtomic(join(this.opts.dir, VMCA_FILES.state), JSON.stringify(this.state, null, 2), 0o600);
  }
}

async function loadState(path: string): Promise<State> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { version: STATE_VERSION, crlNumber: 1, approved: [], issued: [], revoked: [] };
    throw new VmaError('bad-state', `cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, path);
  }
  let s: State;
  try {
    s = JSON.parse(text) as State;
  } catch {
    throw new VmaError('bad-state', `${path} is not JSON: restore it from backup`, path);
  }
  if (s.version !== STATE_VERSION) throw new VmaError('bad-state', `${path} has format ${s.version}; this version reads format ${STATE_VERSION}`, path);
  return s;
}
