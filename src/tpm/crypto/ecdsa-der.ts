/** ECDSA signatures between the TPM's (r, s) pair and the DER ECDSA-Sig-Value X.509 and openssl use. */

function derInteger(v: Uint8Array): Buffer {
  let i = 0;
  while (i < v.length - 1 && v[i] === 0) i++;
  const magnitude = Buffer.from(v.subarray(i));
  const body = magnitude[0]! & 0x80 ? Buffer.concat([Buffer.from([0]), magnitude]) : magnitude;
  return Buffer.concat([Buffer.from([0x02, body.length]), body]);
}

/** SEQUENCE { r INTEGER, s INTEGER } for curves up to P-384 (the body always fits a short length). */
export function ecdsaSignatureDer(r: Uint8Array, s: Uint8Array): Buffer {
  const body = Buffer.concat([derInteger(r), derInteger(s)]);
  return Buffer.concat([Buffer.from([0x30, body.length]), body]);
}
