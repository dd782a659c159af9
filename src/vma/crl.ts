/**
 * X.509 v2 certificate revocation lists (RFC 5280, 5): what the VMCA publishes when a vMA
 * configuration it delegated to is found vulnerable, and what verifiers check chains against.
 */
import forge from 'node-forge';
import type { KeyObject } from 'node:crypto';
import { signatureAlgorithmByOid, signatureAlgorithmFor, verifyCertificateData } from '../tpm/crypto/certificate-signing.ts';
import { ASN1_TYPE as T, bytesOf, children, encode, explicit, isContext, isUniversal, oidOf, parse, raw, seq, time, uint, type Node } from '../hwtpm/credentials/der.ts';
import { authorityKeyIdentifier } from '../hwtpm/credentials/extensions.ts';
import type { Extension } from '../hwtpm/credentials/x509.ts';
import type { AsyncSigner } from './chip-signed-x509.ts';
import { algorithmIdentifier, assembleSigned, extensionNode } from '../hwtpm/credentials/x509.ts';
import { VmaError } from './errors.ts';
import { VTPMD_OID } from './oids.ts';

/** CRLReason values (RFC 5280 5.3.1) this project uses. */
export const CRL_REASON = { unspecified: 0, keyCompromise: 1, cessationOfOperation: 5 } as const;

export interface RevokedEntry {
  readonly serial: Buffer;
  readonly revokedAt: Date;
  readonly reason: number;
}

export interface CrlTemplate {
  /** DER Name of the issuer, copied from its certificate. */
  readonly issuer: Uint8Array;
  readonly issuerKeyId: Uint8Array;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date;
  readonly crlNumber: number;
  readonly revoked: readonly RevokedEntry[];
}

export interface ParsedCrl {
  readonly der: Buffer;
  readonly tbs: Buffer;
  readonly issuer: Buffer;
  readonly thisUpdate: Date;
  readonly nextUpdate: Date | undefined;
  readonly crlNumber: number | undefined;
  readonly revoked: readonly RevokedEntry[];
  readonly signatureAlgorithm: string;
  readonly signature: Buffer;
}

const enumerated = (n: number): Node => forge.asn1.create(forge.asn1.Class.UNIVERSAL, T.ENUMERATED, false, String.fromCharCode(n));

function entryNode(e: RevokedEntry): Node {
  const reason: Extension = { oid: VTPMD_OID.crlReason, critical: false, value: encode(enumerated(e.reason)) };
  return seq(uint(e.serial), time(e.revokedAt), seq(extensionNode(reason)));
}

export async function issueCrl(t: CrlTemplate, signer: AsyncSigner): Promise<Buffer> {
  if (t.nextUpdate.getTime() <= t.thisUpdate.getTime()) throw new VmaError('bad-state', 'a CRL must be next updated after it is issued');
  const algorithm = signatureAlgorithmFor(signer.publicKey);
  const extensions: Extension[] = [authorityKeyIdentifier(t.issuerKeyId), { oid: VTPMD_OID.crlNumber, critical: false, value: encode(uint(t.crlNumber)) }];
  const tbs = encode(
    seq(
      uint(1),
      algorithmIdentifier(algorithm),
      raw(t.issuer),
      time(t.thisUpdate),
      time(t.nextUpdate),
      ...(t.revoked.length ? [seq(...t.revoked.map(entryNode))] : []),
      explicit(0, seq(...extensions.map(extensionNode))),
    ),
  );
  return assembleSigned(tbs, algorithm, await signer.sign(tbs));
}

function readTime(n: Node): Date {
  const s = typeof n.value === 'string' ? n.value : '';
  const d = isUniversal(n, T.UTCTIME) ? forge.asn1.utcTimeToDate(s) : isUniversal(n, T.GENERALIZEDTIME) ? forge.asn1.generalizedTimeToDate(s) : undefined;
  if (!d || Number.isNaN(d.getTime())) throw new TypeError('a CRL time is neither UTCTime nor GeneralizedTime');
  return d;
}

const isTime = (n: Node | undefined): n is Node => n !== undefined && (isUniversal(n, T.UTCTIME) || isUniversal(n, T.GENERALIZEDTIME));

function readEntry(n: Node): RevokedEntry {
  const [serial, date, exts] = children(n);
  let reason: number = CRL_REASON.unspecified;
  if (exts) {
    for (const e of children(exts)) {
      const parts = children(e);
      if (oidOf(parts[0]!) === VTPMD_OID.crlReason) reason = bytesOf(parse(bytesOf(parts[parts.length - 1]!)))[0] ?? 0;
    }
  }
  return { serial: stripSign(bytesOf(serial!)), revokedAt: readTime(date!), reason };
}

/** An INTEGER's magnitude, as certificate serials are compared. */
function stripSign(b: Buffer): Buffer {
  return b.length > 1 && b[0] === 0 ? b.subarray(1) : b;
}

export function parseCrl(der: Uint8Array, what = 'CRL'): ParsedCrl {
  try {
    const [tbsNode, sigAlg, sig] = children(parse(der));
    if (!tbsNode || !sigAlg || !sig) throw new TypeError('not a CertificateList SEQUENCE of three');
    const parts = children(tbsNode);
    let i = 0;
    if (parts[i] && isUniversal(parts[i]!, T.INTEGER)) i++;
    i++; // signature AlgorithmIdentifier, repeated outside
    const issuer = encode(parts[i++]!);
    const thisUpdate = readTime(parts[i++]!);
    const nextUpdate = isTime(parts[i]) ? readTime(parts[i++]!) : undefined;
    let revoked: RevokedEntry[] = [];
    if (parts[i] && isUniversal(parts[i]!, T.SEQUENCE)) revoked = children(parts[i++]!).map(readEntry);
    let crlNumber: number | undefined;
    if (parts[i] && isContext(parts[i]!, 0)) {
      for (const e of children(children(parts[i]!)[0]!)) {
        const p = children(e);
        if (oidOf(p[0]!) === VTPMD_OID.crlNumber) crlNumber = parseInt(bytesOf(parse(bytesOf(p[p.length - 1]!))).toString('hex') || '0', 16);
      }
    }
    return {
      der: Buffer.from(der),
      tbs: encode(tbsNode),
      issuer,
      thisUpdate,
      nextUpdate,
      crlNumber,
      revoked,
      signatureAlgorithm: oidOf(children(sigAlg)[0]!),
      signature: bytesOf(sig).subarray(1),
    };
  } catch (e) {
    throw new VmaError('bad-credential', `${what} is not a well-formed X.509 v2 CRL (${(e as Error).message})`);
  }
}

export function crlSignedBy(crl: ParsedCrl, issuerPublicKey: KeyObject): boolean {
  const algorithm = signatureAlgorithmByOid(crl.signatureAlgorithm);
  return algorithm !== undefined && verifyCertificateData(issuerPublicKey, algorithm, crl.tbs, crl.signature);
}

export function isRevoked(crl: ParsedCrl, serial: Uint8Array): boolean {
  const s = stripSign(Buffer.from(serial));
  return crl.revoked.some((r) => r.serial.equals(s));
}
