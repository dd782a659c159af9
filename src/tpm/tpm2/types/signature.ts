import { codec, type Codec } from '../../wire/codec.ts';
import { digestSize } from '../../crypto/hash.ts';
import { ALG } from '../constants.ts';
import { RC, TpmError } from '../rc.ts';
import { algHash } from './basic.ts';
import { eccParameter, rsaKeyBuf } from './public.ts';
import type { Scheme } from './public-parms.ts';

/**
 * The signature schemes this TPM implements (TPMI_ALG_SIG_SCHEME): RSASSA-PKCS1-v1_5, RSA-PSS,
 * ECDSA and HMAC. ECDAA, SM2 and EC-Schnorr are not implemented, so they are not values of the
 * interface type: unmarshaling them is TPM_RC_SCHEME, as for any unknown scheme.
 */
export const SIG_SCHEMES: readonly number[] = [ALG.RSASSA, ALG.RSAPSS, ALG.ECDSA, ALG.HMAC];

/** TPMT_SIG_SCHEME: the scheme and its hash (TPMS_SCHEME_HASH / TPMS_SCHEME_HMAC); NULL has none. */
export type SigScheme = Scheme;

export const NULL_SIG_SCHEME: SigScheme = { scheme: ALG.NULL, hashAlg: ALG.NULL };

/** TPMT_SIG_SCHEME+ (TPM_ALG_NULL allowed). */
export const sigScheme: Codec<SigScheme> = codec(
  (w, v) => {
    w.u16(v.scheme);
    if (v.scheme !== ALG.NULL) w.u16(v.hashAlg);
  },
  (r) => {
    const scheme = r.u16();
    if (scheme === ALG.NULL) return { scheme, hashAlg: ALG.NULL };
    if (!SIG_SCHEMES.includes(scheme)) throw new TpmError(RC.SCHEME);
    return { scheme, hashAlg: algHash.decode(r) };
  },
);

/**
 * TPMT_SIGNATURE, flattened by arm (the same shape as types/policy.ts's Signature): an RSA
 * signature is the modulus-sized integer, an ECDSA one the pair (r, s), an HMAC one a TPMT_HA.
 */
export type Signature =
  | { sigAlg: typeof ALG.NULL }
  | { sigAlg: typeof ALG.RSASSA | typeof ALG.RSAPSS; hash: number; sig: Buffer }
  | { sigAlg: typeof ALG.ECDSA; hash: number; r: Buffer; s: Buffer }
  | { sigAlg: typeof ALG.HMAC; hash: number; digest: Buffer };

export type RsaSignature = Extract<Signature, { sig: Buffer }>;
export type EccSignature = Extract<Signature, { r: Buffer }>;
export type HmacSignature = Extract<Signature, { digest: Buffer }>;

export const NULL_SIGNATURE: Signature = { sigAlg: ALG.NULL };

/**
 * TPMT_SIGNATURE (its sigAlg is +TPMI_ALG_SIG_SCHEME: TPM_ALG_NULL is an empty signature). An
 * unimplemented scheme is TPM_RC_SCHEME, a bad hash TPM_RC_HASH (the HMAC arm's TPMT_HA does not
 * take TPM_ALG_NULL here).
 */
export const signature: Codec<Signature> = codec(
  (w, v) => {
    w.u16(v.sigAlg);
    switch (v.sigAlg) {
      case ALG.NULL:
        return;
      case ALG.RSASSA:
      case ALG.RSAPSS:
        w.u16(v.hash);
        rsaKeyBuf.encode(w, v.sig);
        return;
      case ALG.ECDSA:
        w.u16(v.hash);
        eccParameter.encode(w, v.r);
        eccParameter.encode(w, v.s);
        return;
      case ALG.HMAC:
        w.u16(v.hash);
        w.bytes(v.digest);
        return;
    }
  },
  (r): Signature => {
    const sigAlg = r.u16();
    switch (sigAlg) {
      case ALG.NULL:
        return { sigAlg };
      case ALG.RSASSA:
      case ALG.RSAPSS:
        return { sigAlg, hash: algHash.decode(r), sig: rsaKeyBuf.decode(r) };
      case ALG.ECDSA: {
        const hash = algHash.decode(r);
        return { sigAlg, hash, r: eccParameter.decode(r), s: eccParameter.decode(r) };
      }
      case ALG.HMAC: {
        const hash = algHash.decode(r);
        return { sigAlg, hash, digest: Buffer.from(r.bytes(digestSize(hash))) };
      }
      default:
        throw new TpmError(RC.SCHEME);
    }
  },
);
