/**
 * The remote challenger: issues nonces, and judges a quote with the credentials behind it — the
 * AIK credential from a trusted privacy CA, bound to an EK certificate that chains to a TPM
 * manufacturer (a chip) or through a vMA to the VMCA (a vTPM) and is not revoked — against the
 * event log the quoted PCRs must replay to and a policy of reference values. It tells a vTPM from
 * a chip by the TPM model the credentials name. Whatever it is fed, it answers with a verdict and
 * every reason for refusing; it does not throw.
 */
import { createHash, randomBytes } from 'node:crypto';
import { bytesOf, children, parse } from '../hwtpm/credentials/der.ts';
import { OID } from '../hwtpm/credentials/oids.ts';
import { certificatePublicKey, findExtension, parseCertificate, type ParsedCertificate } from '../hwtpm/credentials/x509.ts';
import { decodeEventLog } from '../hwtpm/event-log.ts';
import { extendedKeyUsageOf, subjectAltDirectory } from './cert-fields.ts';
import { validateChain } from './chain.ts';
import { parseCrl, type ParsedCrl } from './crl.ts';
import { ATTEST_QUOTE, checkAttestation } from './evidence.ts';
import { TCG_OID, VTPMD_OID } from './oids.ts';
import { replaySha256 } from './reference-values.ts';
import type { SignedAttestation } from './tpm-operations.ts';
import { decodeAttest, pcrDigest, selectedSha256Pcrs } from './tpm-structures.ts';

export type TpmKind = 'vtpm' | 'chip';

export interface VerifierOptions {
  readonly privacyCaRoots: readonly ParsedCertificate[];
  readonly manufacturerRoots: readonly ParsedCertificate[];
  readonly vmcaRoots: readonly ParsedCertificate[];
  /** The VMCAs' current CRLs (DER); a vTPM is accepted only with a current one. */
  readonly crls: () => Promise<readonly Buffer[]> | readonly Buffer[];
  readonly now?: () => Date;
  /** How long an issued nonce stays acceptable; default 5 minutes. */
  readonly nonceTtlMs?: number;
}

export interface AttestationEvidence {
  readonly quote: SignedAttestation;
  readonly aikCertificate: Buffer;
  readonly ekCertificate: Buffer;
  /** Certificates between the EK certificate and its root (the vMA's delegation). */
  readonly ekChain: readonly Buffer[];
  /** TCG event log of the quoted TPM's measurements. */
  readonly eventLog: Buffer;
}

export interface ReferencePolicy {
  /** The PCRs (SHA-256 bank) the quote must cover, exactly. */
  readonly pcrs: readonly number[];
  /** Expected values, PCR index → hex; PCRs not named are reported but not judged. */
  readonly expected: Readonly<Record<string, string>>;
  /** Accept only this kind of TPM. */
  readonly kind?: TpmKind;
}

export type VerificationResult =
  | { readonly ok: true; readonly kind: TpmKind; readonly model: string; readonly pcrs: Readonly<Record<string, string>> }
  | { readonly ok: false; readonly reasons: string[] };

/** A TPM model naming the GVTPM software is a vTPM's; anything else is a chip's. */
export function kindOfModel(model: string): TpmKind {
  return /\bGVTPM\b/.test(model) ? 'vtpm' : 'chip';
}

export class Verifier {
  private readonly issued = new Map<string, number>();
  private readonly used = new Set<string>();

  constructor(private readonly opts: VerifierOptions) {}

  challenge(): Buffer {
    const n = randomBytes(32);
    this.issued.set(n.toString('hex'), Date.now() + (this.opts.nonceTtlMs ?? 300_000));
    return n;
  }

  async verify(evidence: AttestationEvidence, policy: ReferencePolicy): Promise<VerificationResult> {
    try {
      const reasons = await this.check(evidence, policy);
      return reasons.ok ? reasons : { ok: false, reasons: reasons.reasons };
    } catch (e) {
      return { ok: false, reasons: [`the evidence could not be evaluated: ${(e as Error).message}`] };
    }
  }

  private consumeNonce(nonce: Buffer, reasons: string[]): void {
    const key = nonce.toString('hex');
    const expires = this.issued.get(key);
    if (expires !== undefined) {
      this.issued.delete(key);
      this.used.add(key);
      if (expires < Date.now()) reasons.push('the quote answers a nonce that has expired');
      return;
    }
    reasons.push(this.used.has(key) ? 'the quote replays a nonce that was already used' : 'the quote does not answer a nonce this verifier issued');
  }

  private async check(e: AttestationEvidence, policy: ReferencePolicy): Promise<VerificationResult> {
    const now = this.opts.now?.() ?? new Date();
    const reasons: string[] = [];
    const parsed = (der: Buffer, what: string): ParsedCertificate | undefined => {
      try {
        return parseCertificate(der, what);
      } catch (err) {
        reasons.push((err as Error).message);
        return undefined;
      }
    };
    const aikCert = parsed(e.aikCertificate, 'the AIK credential');
    const ekCert = parsed(e.ekCertificate, 'the EK credential');
    const chain = e.ekChain.map((c, i) => parsed(c, `EK chain certificate ${i + 1}`)).filter((c): c is ParsedCertificate => c !== undefined);
    let nonce: Buffer | undefined;
    try {
      nonce = decodeAttest(e.quote.signed).extraData;
    } catch {
      reasons.push('the quote is not a TPMS_ATTEST made by a TPM');
    }
    if (nonce) this.consumeNonce(nonce, reasons);
    if (!aikCert || !ekCert) return { ok: false, reasons };

    // AIK credential: from a trusted privacy CA, for this EK certificate.
    reasons.push(...validateChain(aikCert, [], this.opts.privacyCaRoots, { now }).reasons.map((r) => `AIK credential: ${r}`));
    if (!extendedKeyUsageOf(aikCert).includes(TCG_OID.kpAikCertificate)) reasons.push('the AIK credential lacks the tcg-kp-AIKCertificate purpose');
    const binding = findExtension(aikCert, VTPMD_OID.ekBinding);
    const boundDigest = binding ? bytesOf(children(parse(binding.value))[2]!) : undefined;
    if (!boundDigest?.equals(createHash('sha256').update(ekCert.der).digest())) reasons.push('the AIK credential was issued for another EK certificate');

    // What kind of TPM, and whether its EK chains to the authority for that kind.
    const model = subjectAltDirectory(ekCert).get(OID.tcgTpmModel) ?? '';
    const kind = kindOfModel(model);
    if ((subjectAltDirectory(aikCert).get(OID.tcgTpmModel) ?? '') !== model) reasons.push('the AIK credential names another TPM model than the EK credential');
    if (policy.kind && policy.kind !== kind) reasons.push(`the policy accepts a ${policy.kind === 'vtpm' ? 'vTPM' : 'hardware TPM'}, the credentials name a ${kind === 'vtpm' ? 'vTPM' : 'hardware TPM'} ("${model}")`);
    const crls: ParsedCrl[] = [];
    for (const der of await this.opts.crls()) {
      try {
        crls.push(parseCrl(der));
      } catch (err) {
        reasons.push((err as Error).message);
      }
    }
    const roots = kind === 'vtpm' ? this.opts.vmcaRoots : this.opts.manufacturerRoots;
    const ekChain = validateChain(ekCert, chain, roots, { now, crls, requireCrlFrom: this.opts.vmcaRoots });
    reasons.push(...ekChain.reasons.map((r) => `EK credential: ${r}`));
    if (!extendedKeyUsageOf(ekCert).includes(OID.tcgKpEkCertificate)) reasons.push('the EK credential lacks the tcg-kp-EKCertificate purpose');

    // The quote itself.
    const q = checkAttestation('quote', e.quote, certificatePublicKey(aikCert), ATTEST_QUOTE, nonce ?? Buffer.alloc(0));
    if (!q.ok) {
      reasons.push(...q.reasons);
      return { ok: false, reasons };
    }
    const quoted = q.value.attested as { pcrSelect: { hash: number; select: Buffer }[]; pcrDigest: Buffer };
    const selected = selectedSha256Pcrs(quoted.pcrSelect);
    const wanted = [...policy.pcrs].sort((a, b) => a - b);
    if (!selected || selected.join(',') !== wanted.join(',')) {
      reasons.push(`the quote covers PCRs ${selected?.join(',') ?? 'of another bank'}, the policy asks for ${wanted.join(',')}`);
      return { ok: false, reasons };
    }
    let values: Buffer[];
    try {
      values = replaySha256(decodeEventLog(e.eventLog), wanted);
    } catch (err) {
      reasons.push(`the event log cannot be replayed (${(err as Error).message})`);
      return { ok: false, reasons };
    }
    if (!pcrDigest(values).equals(quoted.pcrDigest)) reasons.push('the event log does not replay to the quoted PCR values');
    wanted.forEach((p, i) => {
      const expected = policy.expected[String(p)];
      if (expected !== undefined && expected.toLowerCase() !== values[i]!.toString('hex')) reasons.push(`PCR ${p} holds ${values[i]!.toString('hex')}, the reference value is ${expected}`);
    });
    if (reasons.length) return { ok: false, reasons };
    return { ok: true, kind, model, pcrs: Object.fromEntries(wanted.map((p, i) => [String(p), values[i]!.toString('hex')])) };
  }
}
