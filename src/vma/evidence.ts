/**
 * Checks of TPM-signed evidence shared by the VMCA and the verifier: that an attestation is what
 * the AIK signed, of the expected type, over the expected nonce. Each check returns the reasons it
 * refuses (empty when it accepts) and never throws on malformed input.
 */
import { verify, type KeyObject } from 'node:crypto';
import { ST } from '../tpm/tpm2/constants.ts';
import type { Attest } from '../tpm/tpm2/types/attest.ts';
import type { SignedAttestation } from './tpm-operations.ts';
import { decodeAttest } from './tpm-structures.ts';

export type Checked<T> = { ok: true; value: T } | { ok: false; reasons: string[] };

/** Decodes and checks a TPMS_ATTEST signed by `aik`; `type` is ST.ATTEST_QUOTE or ST.ATTEST_CERTIFY. */
export function checkAttestation(what: string, a: SignedAttestation, aik: KeyObject, type: number, nonce: Uint8Array): Checked<Attest> {
  let decoded: Attest;
  try {
    decoded = decodeAttest(a.signed);
  } catch {
    return { ok: false, reasons: [`the ${what} is not a TPMS_ATTEST made by a TPM`] };
  }
  const reasons: string[] = [];
  let signatureOk = false;
  try {
    signatureOk = verify('sha256', a.signed, aik, a.signature);
  } catch {
    signatureOk = false;
  }
  if (!signatureOk) reasons.push(`the ${what} signature does not verify under the attestation key`);
  if (decoded.type !== type) reasons.push(`the ${what} is of type 0x${decoded.type.toString(16)}, not 0x${type.toString(16)}`);
  if (!decoded.extraData.equals(Buffer.from(nonce))) reasons.push(`the ${what} does not carry the nonce it was asked for`);
  return reasons.length ? { ok: false, reasons } : { ok: true, value: decoded };
}

export const ATTEST_QUOTE = ST.ATTEST_QUOTE;
export const ATTEST_CERTIFY = ST.ATTEST_CERTIFY;
