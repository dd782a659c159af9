/**
 * The TPM 2.0 structures attestation evidence is made of, computed or read on the verifying side:
 * object Names, PolicyPCR digests, TPMS_ATTEST, and signatures in X.509 form.
 */
import { digest } from '../tpm/crypto/hash.ts';
import { ecdsaSignatureDer } from '../tpm/crypto/ecdsa-der.ts';
import { ALG, CC } from '../tpm/tpm2/constants.ts';
import { attest, type Attest } from '../tpm/tpm2/types/attest.ts';
import { pcrSelectionList } from '../tpm/tpm2/types/pcr.ts';
import { objectName, publicArea, type Public } from '../tpm/tpm2/types/public.ts';
import type { Signature } from '../tpm/tpm2/types/signature.ts';
import { decode, encode } from '../tpm/wire/codec.ts';
import { pcrSelection } from '../hwtpm/tpm2-client.ts';

export function encodePublicArea(pub: Public): Buffer {
  return Buffer.from(encode(publicArea, pub));
}

/** A TPMT_PUBLIC from its bytes; throws on anything else. */
export function decodePublicArea(bytes: Uint8Array): Public {
  return decode(publicArea, Buffer.from(bytes));
}

/** nameAlg || H(TPMT_PUBLIC), the Name TPM2_Certify and MakeCredential bind to. */
export function nameOf(pub: Public): Buffer {
  return objectName(pub, encodePublicArea(pub));
}

export function decodeAttest(bytes: Uint8Array): Attest {
  return decode(attest, Buffer.from(bytes));
}

/** The digest TPM2_Quote reports: H(values of the selected PCRs, in ascending index order). */
export function pcrDigest(values: readonly Uint8Array[]): Buffer {
  return digest(ALG.SHA256, ...values);
}

/**
 * The policy digest of a single TPM2_PolicyPCR over the SHA-256 bank (Part 3, 23.7): what a key
 * bound to `pcrs` holding `values` carries as its authPolicy.
 */
export function policyPcrDigest(pcrs: readonly number[], values: readonly Uint8Array[]): Buffer {
  const cc = Buffer.alloc(4);
  cc.writeUInt32BE(CC.PolicyPCR);
  const selection = Buffer.from(encode(pcrSelectionList, [pcrSelection(ALG.SHA256, pcrs)]));
  return digest(ALG.SHA256, Buffer.alloc(32), cc, selection, pcrDigest(values));
}

/** The PCR indices a TPMS_PCR_SELECTION list names in the SHA-256 bank, ascending; undefined if it names another bank. */
export function selectedSha256Pcrs(selections: readonly { hash: number; select: Buffer }[]): number[] | undefined {
  const out: number[] = [];
  for (const s of selections) {
    const any = s.select.some((b) => b !== 0);
    if (!any) continue;
    if (s.hash !== ALG.SHA256) return undefined;
    for (let i = 0; i < s.select.length * 8; i++) if (s.select[i >> 3]! & (1 << (i & 7))) out.push(i);
  }
  return out;
}

/** A TPMT_SIGNATURE as X.509 and node:crypto verify it. */
export function signatureDer(sig: Signature): Buffer {
  if (sig.sigAlg === ALG.ECDSA) return ecdsaSignatureDer(sig.r, sig.s);
  if (sig.sigAlg === ALG.RSASSA) return Buffer.from(sig.sig);
  throw new RangeError(`signature algorithm 0x${sig.sigAlg.toString(16)} is not one attestation uses`);
}
