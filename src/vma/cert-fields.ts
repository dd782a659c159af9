/** Reading the extensions TPM credentials carry out of a parsed certificate. */
import { ASN1_TYPE as T, bytesOf, children, isContext, isUniversal, oidOf, parse } from '../hwtpm/credentials/der.ts';
import { OID } from '../hwtpm/credentials/oids.ts';
import { findExtension, type ParsedCertificate } from '../hwtpm/credentials/x509.ts';
import forge from 'node-forge';

export interface BasicConstraints {
  readonly ca: boolean;
  readonly pathLength: number | undefined;
}

export function basicConstraintsOf(cert: ParsedCertificate): BasicConstraints | undefined {
  const ext = findExtension(cert, OID.basicConstraints);
  if (!ext) return undefined;
  const fields = children(parse(ext.value));
  let ca = false;
  let pathLength: number | undefined;
  for (const f of fields) {
    if (isUniversal(f, T.BOOLEAN)) ca = bytesOf(f)[0] !== 0;
    else if (isUniversal(f, T.INTEGER)) pathLength = parseInt(bytesOf(f).toString('hex') || '0', 16);
  }
  return { ca, pathLength };
}

/** KeyUsage bit positions that are set, or undefined without the extension. */
export function keyUsageOf(cert: ParsedCertificate): Set<number> | undefined {
  const ext = findExtension(cert, OID.keyUsage);
  if (!ext) return undefined;
  const b = bytesOf(parse(ext.value));
  const set = new Set<number>();
  for (let i = 0; i < (b.length - 1) * 8; i++) if (b[1 + (i >> 3)]! & (0x80 >> (i & 7))) set.add(i);
  return set;
}

export function extendedKeyUsageOf(cert: ParsedCertificate): string[] {
  const ext = findExtension(cert, OID.extKeyUsage);
  return ext ? children(parse(ext.value)).map(oidOf) : [];
}

/** The attributes of the first directoryName in subjectAltName, by OID. */
export function subjectAltDirectory(cert: ParsedCertificate): Map<string, string> {
  const out = new Map<string, string>();
  const ext = findExtension(cert, OID.subjectAltName);
  if (!ext) return out;
  for (const general of children(parse(ext.value))) {
    if (!isContext(general, 4)) continue;
    for (const rdn of children(children(general)[0]!)) {
      for (const atv of children(rdn)) {
        const [o, v] = children(atv);
        out.set(oidOf(o!), forge.util.decodeUtf8(v!.value as string));
      }
    }
    break;
  }
  return out;
}

/** The attributes of a DER Name, by OID (the last value wins for a repeated attribute). */
export function nameAttributes(name: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  for (const rdn of children(parse(name))) {
    for (const atv of children(rdn)) {
      const [o, v] = children(atv);
      out.set(oidOf(o!), forge.util.decodeUtf8(v!.value as string));
    }
  }
  return out;
}

export function subjectKeyIdOf(cert: ParsedCertificate): Buffer | undefined {
  const ext = findExtension(cert, OID.subjectKeyIdentifier);
  return ext ? bytesOf(parse(ext.value)) : undefined;
}
