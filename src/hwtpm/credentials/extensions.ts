/** Builders for the X.509 v3 extensions TPM credentials carry (RFC 5280 4.2). */
import { encode, explicit, ia5, implicitBytes, namedBits, octets, oid, seq, set, bool, uint, type Node } from './der.ts';
import { OID } from './oids.ts';
import { nameNode, type Extension, type NameAttribute } from './x509.ts';

export function basicConstraints(ca: boolean, pathLength?: number): Extension {
  // cA DEFAULT FALSE: DER omits it, so an end-entity's value is an empty SEQUENCE.
  const fields: Node[] = ca ? [bool(true), ...(pathLength === undefined ? [] : [uint(pathLength)])] : [];
  return { oid: OID.basicConstraints, critical: true, value: encode(seq(...fields)) };
}

export function keyUsage(usages: readonly number[]): Extension {
  return { oid: OID.keyUsage, critical: true, value: encode(namedBits(usages)) };
}

export function subjectKeyIdentifier(keyId: Uint8Array): Extension {
  return { oid: OID.subjectKeyIdentifier, critical: false, value: encode(octets(keyId)) };
}

export function authorityKeyIdentifier(keyId: Uint8Array): Extension {
  return { oid: OID.authorityKeyIdentifier, critical: false, value: encode(seq(implicitBytes(0, keyId))) };
}

export function extendedKeyUsage(purposes: readonly string[]): Extension {
  return { oid: OID.extKeyUsage, critical: false, value: encode(seq(...purposes.map(oid))) };
}

/**
 * subjectAltName holding one directoryName. Name is a CHOICE, so its [4] tag is explicit. Critical
 * whenever the subject is empty (RFC 5280 4.2.1.6), as it is in an EK certificate.
 */
export function subjectAltNameDirectory(attributes: readonly NameAttribute[], critical: boolean): Extension {
  return { oid: OID.subjectAltName, critical, value: encode(seq(explicit(4, nameNode(attributes)))) };
}

export interface DirectoryAttribute {
  readonly oid: string;
  readonly value: Node;
}

export function subjectDirectoryAttributes(attributes: readonly DirectoryAttribute[]): Extension {
  return { oid: OID.subjectDirectoryAttributes, critical: false, value: encode(seq(...attributes.map((a) => seq(oid(a.oid), set(a.value))))) };
}

export interface CertificatePolicy {
  readonly oid: string;
  /** Where the certification practice statement lives, if published. */
  readonly cpsUri?: string;
}

export function certificatePolicies(policies: readonly CertificatePolicy[]): Extension {
  const info = policies.map((p) => (p.cpsUri === undefined ? seq(oid(p.oid)) : seq(oid(p.oid), seq(seq(oid(OID.cpsQualifier), ia5(p.cpsUri))))));
  return { oid: OID.certificatePolicies, critical: false, value: encode(seq(...info)) };
}
