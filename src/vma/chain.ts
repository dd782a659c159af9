/**
 * Certificate path validation as a verifier needs it (RFC 5280, 6, reduced to what TPM credential
 * chains use): each link's signature, validity at the time of checking, CA flag, keyCertSign and
 * path length of every issuer, and revocation against the CRLs of the issuers that publish one.
 * The result lists every reason for refusal rather than stopping at the first.
 */
import { certificatePublicKey, signedBy, type ParsedCertificate } from '../hwtpm/credentials/x509.ts';
import { KEY_USAGE } from '../hwtpm/credentials/oids.ts';
import { basicConstraintsOf, keyUsageOf, nameAttributes } from './cert-fields.ts';
import { crlSignedBy, isRevoked, type ParsedCrl } from './crl.ts';

export interface ChainOptions {
  readonly now: Date;
  readonly crls?: readonly ParsedCrl[];
  /** Roots whose issued certificates must be checked against a current CRL from them. */
  readonly requireCrlFrom?: readonly ParsedCertificate[];
  readonly maxDepth?: number;
}

export interface ChainResult {
  readonly reasons: string[];
  /** Leaf first, root last, as far as it could be built. */
  readonly path: ParsedCertificate[];
  readonly root: ParsedCertificate | undefined;
}

export function describe(cert: ParsedCertificate): string {
  const attrs = nameAttributes(cert.subject);
  const cn = attrs.get('2.5.4.3');
  return cn ? `"${cn}"` : `serial ${cert.serial.toString('hex')}`;
}

function issuerOf(cert: ParsedCertificate, candidates: readonly ParsedCertificate[]): ParsedCertificate | undefined {
  return candidates.find((c) => c.subject.equals(cert.issuer) && safeSignedBy(cert, c));
}

function safeSignedBy(cert: ParsedCertificate, issuer: ParsedCertificate): boolean {
  try {
    return signedBy(cert, certificatePublicKey(issuer));
  } catch {
    return false;
  }
}

function checkValidity(cert: ParsedCertificate, now: Date, what: string, reasons: string[]): void {
  if (now < cert.notBefore) reasons.push(`${what} is not valid before ${cert.notBefore.toISOString()}`);
  if (now > cert.notAfter) reasons.push(`${what} expired on ${cert.notAfter.toISOString()}`);
}

function checkRevocation(cert: ParsedCertificate, issuer: ParsedCertificate, opts: ChainOptions, what: string, reasons: string[]): void {
  const crls = (opts.crls ?? []).filter((c) => c.issuer.equals(issuer.subject));
  const required = (opts.requireCrlFrom ?? []).some((r) => r.der.equals(issuer.der));
  const usable = crls.filter((c) => crlSignedBy(c, certificatePublicKey(issuer)));
  if (crls.length > usable.length) reasons.push(`a CRL claiming to be from ${describe(issuer)} is not signed by it`);
  const current = usable.filter((c) => c.thisUpdate <= opts.now && (c.nextUpdate === undefined || opts.now <= c.nextUpdate));
  if (required && current.length === 0) reasons.push(`no current CRL from ${describe(issuer)} to check ${what} against`);
  if (current.some((c) => isRevoked(c, cert.serial))) reasons.push(`${what} was revoked by ${describe(issuer)}`);
}

/**
 * Builds the path from `leaf` through `intermediates` to one of `roots` and checks it. Roots are
 * trusted as given (their own validity is still checked).
 */
export function validateChain(leaf: ParsedCertificate, intermediates: readonly ParsedCertificate[], roots: readonly ParsedCertificate[], opts: ChainOptions): ChainResult {
  const reasons: string[] = [];
  const path: ParsedCertificate[] = [leaf];
  const maxDepth = opts.maxDepth ?? 6;
  let current = leaf;
  let what = `the certificate ${describe(leaf)}`;
  checkValidity(leaf, opts.now, what, reasons);
  for (let depth = 0; depth < maxDepth; depth++) {
    const issuer = issuerOf(current, roots) ?? issuerOf(current, intermediates.filter((c) => !path.includes(c)));
    if (!issuer) {
      const named = [...roots, ...intermediates].some((c) => c.subject.equals(current.issuer));
      reasons.push(named ? `${what} does not carry a valid signature of its issuer (forged or altered)` : `${what} was issued by no trusted authority or supplied intermediate`);
      return { reasons, path, root: undefined };
    }
    const issuerWhat = `the issuing certificate ${describe(issuer)}`;
    const bc = basicConstraintsOf(issuer);
    if (!bc?.ca) reasons.push(`${issuerWhat} is not a CA certificate`);
    // pathLenConstraint counts the CA certificates that may follow the issuer below it.
    const casBelow = path.length - 1;
    if (bc?.pathLength !== undefined && casBelow > bc.pathLength) reasons.push(`${issuerWhat} allows ${bc.pathLength} intermediate CAs below it, the path has ${casBelow}`);
    const ku = keyUsageOf(issuer);
    if (ku && !ku.has(KEY_USAGE.keyCertSign)) reasons.push(`${issuerWhat} may not sign certificates (keyUsage lacks keyCertSign)`);
    checkRevocation(current, issuer, opts, what, reasons);
    path.push(issuer);
    checkValidity(issuer, opts.now, issuerWhat, reasons);
    if (roots.some((r) => r.der.equals(issuer.der))) return { reasons, path, root: issuer };
    current = issuer;
    what = issuerWhat;
  }
  reasons.push(`the certificate path from ${describe(leaf)} is longer than ${maxDepth}`);
  return { reasons, path, root: undefined };
}
