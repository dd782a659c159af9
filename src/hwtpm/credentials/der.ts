/**
 * DER building blocks over forge.asn1. Certificates are assembled here rather than with forge.pki
 * because forge.pki holds only RSA keys, and TPM EK and CA keys are just as often ECC.
 */
import forge from 'node-forge';

const { asn1 } = forge;
const T = asn1.Type;
const C = asn1.Class;

export type Node = forge.asn1.Asn1;

const bin = (b: Uint8Array): string => Buffer.from(b).toString('binary');

export const seq = (...items: Node[]): Node => asn1.create(C.UNIVERSAL, T.SEQUENCE, true, items);
export const set = (...items: Node[]): Node => asn1.create(C.UNIVERSAL, T.SET, true, items);
export const oid = (dotted: string): Node => asn1.create(C.UNIVERSAL, T.OID, false, asn1.oidToDer(dotted).getBytes());
export const utf8 = (s: string): Node => asn1.create(C.UNIVERSAL, T.UTF8, false, forge.util.encodeUtf8(s));
export const ia5 = (s: string): Node => asn1.create(C.UNIVERSAL, T.IA5STRING, false, s);
export const bool = (v: boolean): Node => asn1.create(C.UNIVERSAL, T.BOOLEAN, false, v ? '\xff' : '\x00');
export const nul = (): Node => asn1.create(C.UNIVERSAL, T.NULL, false, '');
export const octets = (b: Uint8Array): Node => asn1.create(C.UNIVERSAL, T.OCTETSTRING, false, bin(b));
/** [n] EXPLICIT: a constructed context tag wrapping one element. */
export const explicit = (tag: number, inner: Node): Node => asn1.create(C.CONTEXT_SPECIFIC, tag, true, [inner]);
/** [n] IMPLICIT primitive: the context tag replaces the element's own. */
export const implicitBytes = (tag: number, b: Uint8Array): Node => asn1.create(C.CONTEXT_SPECIFIC, tag, false, bin(b));

function evenHex(n: number): string {
  const h = n.toString(16);
  return h.length % 2 ? `0${h}` : h;
}

/** A non-negative INTEGER from its magnitude, minimally encoded. */
export function uint(magnitude: Uint8Array | number): Node {
  let b = typeof magnitude === 'number' ? Buffer.from(evenHex(magnitude), 'hex') : Buffer.from(magnitude);
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  b = b.subarray(i);
  if (b.length === 0) b = Buffer.alloc(1);
  if (b[0]! & 0x80) b = Buffer.concat([Buffer.alloc(1), b]);
  return asn1.create(C.UNIVERSAL, T.INTEGER, false, bin(b));
}

/** A BIT STRING holding whole bytes (keys, signatures). */
export const bits = (b: Uint8Array): Node => asn1.create(C.UNIVERSAL, T.BITSTRING, false, '\x00' + bin(b));

/** A named-bit BIT STRING (KeyUsage) with trailing zero bits dropped, as DER requires. */
export function namedBits(positions: readonly number[]): Node {
  const top = Math.max(...positions);
  const bytes = Buffer.alloc(Math.floor(top / 8) + 1);
  for (const n of positions) bytes[n >> 3]! |= 0x80 >> (n & 7);
  const unused = 7 - (top & 7);
  return asn1.create(C.UNIVERSAL, T.BITSTRING, false, String.fromCharCode(unused) + bin(bytes));
}

/** UTCTime through 2049, GeneralizedTime after, per RFC 5280 4.1.2.5. */
export function time(d: Date): Node {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const rest = `${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}Z`;
  const y = d.getUTCFullYear();
  if (y >= 1950 && y < 2050) return asn1.create(C.UNIVERSAL, T.UTCTIME, false, p(y % 100) + rest);
  return asn1.create(C.UNIVERSAL, T.GENERALIZEDTIME, false, p(y, 4) + rest);
}

/** Embeds already-encoded DER (a Name copied from the issuer, a SubjectPublicKeyInfo). */
export function raw(der: Uint8Array): Node {
  return asn1.fromDer(bin(der), { strict: true, parseAllBytes: true, decodeBitStrings: false } as unknown as boolean);
}

export function encode(node: Node): Buffer {
  return Buffer.from(asn1.toDer(node).getBytes(), 'binary');
}

/** Strict DER parse; forge's own exceptions are replaced by the caller's message. */
export function parse(der: Uint8Array): Node {
  return asn1.fromDer(bin(der), { strict: true, parseAllBytes: true, decodeBitStrings: false } as unknown as boolean);
}

export function children(n: Node): Node[] {
  if (!Array.isArray(n.value)) throw new TypeError('expected a constructed element');
  return n.value;
}

export function bytesOf(n: Node): Buffer {
  if (typeof n.value !== 'string') throw new TypeError('expected a primitive element');
  return Buffer.from(n.value, 'binary');
}

export function oidOf(n: Node): string {
  if (n.tagClass !== C.UNIVERSAL || n.type !== T.OID) throw new TypeError('expected an OBJECT IDENTIFIER');
  return asn1.derToOid(n.value as string);
}

export function isUniversal(n: Node, type: number): boolean {
  return n.tagClass === C.UNIVERSAL && n.type === type;
}

export function isContext(n: Node, tag: number): boolean {
  return n.tagClass === C.CONTEXT_SPECIFIC && n.type === tag;
}

export { T as ASN1_TYPE };
