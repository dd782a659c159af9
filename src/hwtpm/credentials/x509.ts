/** X.509 v3 certificates for any key node:crypto holds (RSA or EC), signed by node:crypto. */
import type { KeyObject } from 'node:crypto';
import forge from 'node-forge';
import {
  publicKeyFromSpki,
  signatureAlgorithmByOid,
  signatureAlgorithmFor,
  signCertificateData,
  verifyCertificateData,
  type SignatureAlgorithm,
} from '../../tpm/crypto/certificate-signing.ts';
import { ASN1_TYPE as T, bits, bool, bytesOf, children, encode, explicit, isContext, isUniversal, nul, octets, oid, oidOf, parse, raw, seq, set, time, uint, utf8, type Node } from './der.ts';
import { CredentialError } from './errors.ts';

export interface Extension {
  readonly oid: string;
  readonly critical: boolean;
  /** DER of the extension's value (the content of extnValue). */
  readonly value: Buffer;
}

export interface CertificateTemplate {
  /** Magnitude of a positive serial number, at most 20 bytes. */
  readonly serial: Uint8Array;
  /** DER Name, copied verbatim from the issuer's certificate so chains match byte for byte. */
  readonly issuer: Uint8Array;
  readonly subject: Uint8Array;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly subjectPublicKeyInfo: Uint8Array;
  readonly extensions: readonly Extension[];
}

export interface ParsedCertificate {
  readonly der: Buffer;
  readonly tbs: Buffer;
  readonly serial: Buffer;
  readonly issuer: Buffer;
  readonly subject: Buffer;
  readonly notBefore: Date;
  readonly notAfter: Date;
  readonly subjectPublicKeyInfo: Buffer;
  /** The subjectPublicKey BIT STRING's bytes, which key identifiers hash. */
  readonly subjectPublicKey: Buffer;
  readonly signatureAlgorithm: string;
  readonly signature: Buffer;
  readonly extensions: readonly Extension[];
}

/** One attribute of a distinguished name. Each gets its own RDN, the common single-valued form. */
export interface NameAttribute {
  readonly oid: string;
  readonly value: string;
}

export function encodeName(attributes: readonly NameAttribute[]): Buffer {
  return encode(nameNode(attributes));
}

export function nameNode(attributes: readonly NameAttribute[]): Node {
  return seq(...attributes.map((a) => set(seq(oid(a.oid), utf8(a.value)))));
}

export function algorithmIdentifier(a: SignatureAlgorithm): Node {
  return a.nullParameters ? seq(oid(a.oid), nul()) : seq(oid(a.oid));
}

export function extensionNode(e: Extension): Node {
  return e.critical ? seq(oid(e.oid), bool(true), octets(e.value)) : seq(oid(e.oid), octets(e.value));
}

/** The DER TBSCertificate of `template` as `algorithm` will sign it. */
export function encodeTbsCertificate(template: CertificateTemplate, algorithm: SignatureAlgorithm): Buffer {
  if (template.serial.length === 0 || template.serial.length > 20) throw new CredentialError('a certificate serial number must be 1 to 20 bytes');
  if (template.notAfter.getTime() <= template.notBefore.getTime()) throw new CredentialError('a certificate must end after it begins (notAfter <= notBefore)');
  return encode(
    seq(
      explicit(0, uint(2)),
      uint(template.serial),
      algorithmIdentifier(algorithm),
      raw(template.issuer),
      seq(time(template.notBefore), time(template.notAfter)),
      raw(template.subject),
      raw(template.subjectPublicKeyInfo),
      ...(template.extensions.length ? [explicit(3, seq(...template.extensions.map(extensionNode)))] : []),
    ),
  );
}

/** Wraps signed DER (a TBSCertificate or TBSCertList) with its algorithm and signature. */
export function assembleSigned(tbs: Uint8Array, algorithm: SignatureAlgorithm, signature: Uint8Array): Buffer {
  return encode(seq(raw(tbs), algorithmIdentifier(algorithm), bits(signature)));
}

/** Assembles the TBSCertificate and signs it with the issuer's private key. */
export function issueCertificate(template: CertificateTemplate, issuerKey: KeyObject): Buffer {
  const tbs = encodeTbsCertificate(template, signatureAlgorithmFor(issuerKey));
  const signed = signCertificateData(issuerKey, tbs);
  return assembleSigned(tbs, signed.algorithm, signed.signature);
}

function readTime(n: Node): Date {
  const s = typeof n.value === 'string' ? n.value : '';
  let d: Date | undefined;
  if (isUniversal(n, T.UTCTIME)) d = forge.asn1.utcTimeToDate(s);
  else if (isUniversal(n, T.GENERALIZEDTIME)) d = forge.asn1.generalizedTimeToDate(s);
  if (!d || Number.isNaN(d.getTime())) throw new TypeError('validity holds no valid UTCTime or GeneralizedTime');
  return d;
}

function readExtension(n: Node): Extension {
  const parts = children(n);
  const critical = parts.length === 3 && bytesOf(parts[1]!)[0] !== 0;
  return { oid: oidOf(parts[0]!), critical, value: bytesOf(parts[parts.length - 1]!) };
}

/** Parses the fields this project needs; anything malformed is a CredentialError naming `what`. */
export function parseCertificate(der: Uint8Array, what = 'certificate'): ParsedCertificate {
  try {
    const top = children(parse(der));
    const [tbsNode, sigAlgNode, sigNode] = top;
    if (top.length !== 3 || !tbsNode || !sigAlgNode || !sigNode) throw new TypeError('not a Certificate SEQUENCE of three');
    const tbsParts = children(tbsNode);
    let i = 0;
    if (tbsParts[0] && isContext(tbsParts[0], 0)) i++;
    const serial = bytesOf(tbsParts[i++]!);
    i++; // signature AlgorithmIdentifier, repeated outside the TBS
    const issuer = encode(tbsParts[i++]!);
    const validity = children(tbsParts[i++]!);
    const subject = encode(tbsParts[i++]!);
    const spkiNode = tbsParts[i++]!;
    const spkiParts = children(spkiNode);
    const spkBits = bytesOf(spkiParts[1]!);
    let extensions: Extension[] = [];
    for (; i < tbsParts.length; i++) {
      if (isContext(tbsParts[i]!, 3)) extensions = children(children(tbsParts[i]!)[0]!).map(readExtension);
    }
    const sigBits = bytesOf(sigNode);
    return {
      der: Buffer.from(der),
      tbs: encode(tbsNode),
      serial,
      issuer,
      subject,
      notBefore: readTime(validity[0]!),
      notAfter: readTime(validity[1]!),
      subjectPublicKeyInfo: encode(spkiNode),
      subjectPublicKey: spkBits.subarray(1),
      signatureAlgorithm: oidOf(children(sigAlgNode)[0]!),
      signature: sigBits.subarray(1),
      extensions,
    };
  } catch (e) {
    if (e instanceof CredentialError) throw e;
    throw new CredentialError(`${what} is not a well-formed X.509 certificate (${(e as Error).message})`);
  }
}

/** Whether `cert` carries a valid signature by `issuerPublicKey`. */
export function signedBy(cert: ParsedCertificate, issuerPublicKey: KeyObject): boolean {
  const algorithm = signatureAlgorithmByOid(cert.signatureAlgorithm);
  return algorithm !== undefined && verifyCertificateData(issuerPublicKey, algorithm, cert.tbs, cert.signature);
}

export function certificatePublicKey(cert: ParsedCertificate): KeyObject {
  return publicKeyFromSpki(cert.subjectPublicKeyInfo);
}

export function findExtension(cert: ParsedCertificate, extOid: string): Extension | undefined {
  return cert.extensions.find((e) => e.oid === extOid);
}

export function toPem(der: Uint8Array, label = 'CERTIFICATE'): string {
  const b64 = Buffer.from(der).toString('base64').replace(/.{1,64}/g, '$&\n');
  return `-----BEGIN ${label}-----\n${b64}-----END ${label}-----\n`;
}

/** The DER of the first PEM block with `label`, or undefined when there is none. */
export function fromPem(text: string, label = 'CERTIFICATE'): Buffer | undefined {
  return allFromPem(text, label)[0];
}

/** The DER of every PEM block with `label`, in order (a bundle holds several). */
export function allFromPem(text: string, label = 'CERTIFICATE'): Buffer[] {
  return [...text.matchAll(new RegExp(`-----BEGIN ${label}-----([A-Za-z0-9+/=\\s]*)-----END ${label}-----`, 'g'))].map((m) => Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64'));
}

/**
 * A random positive serial of 16 bytes. The top bit is cleared so it is positive and the next one
 * set so DER never shortens it: every serial has the same length and 126 bits of entropy.
 */
export function randomSerial(entropy: (n: number) => Buffer): Buffer {
  const b = Buffer.from(entropy(16));
  b[0] = (b[0]! & 0x7f) | 0x40;
  return b;
}
