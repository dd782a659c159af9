import { codec, struct, u8, u16, u32, type Codec } from '../../wire/codec.ts';
import { Writer } from '../../wire/buffer.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { STAG } from '../constants.ts';
import { bytes32, digest20, STRUCT_VER_11 } from './basic.ts';

/** TPM_RSA_KEY_PARMS. An empty exponent means the default, 65537. */
export const rsaKeyParms = struct({ keyLength: u32, numPrimes: u32, exponent: bytes32(256) });
export type RsaKeyParms = ReturnType<typeof rsaKeyParms.decode>;

/** TPM_KEY_PARMS; `parms` stays raw (TPM_RSA_KEY_PARMS for RSA keys). */
export const keyParms = struct({ algorithmID: u32, encScheme: u16, sigScheme: u16, parms: bytes32(1024) });
export type KeyParms = ReturnType<typeof keyParms.decode>;

/** TPM_STORE_PUBKEY is a sized byte string: the modulus for RSA. */
export const storePubkey = bytes32(512);

/** TPM_PUBKEY. */
export const pubkey = struct({ algorithmParms: keyParms, pubKey: storePubkey });
export type PubKey = ReturnType<typeof pubkey.decode>;

/**
 * TPM_KEY (version 1.1, starting with TPM_STRUCT_VER) and TPM_KEY12 (starting with
 * TPM_TAG_KEY12 and a fill), decoded into one shape. PCRInfo is TPM_PCR_INFO in a TPM_KEY and
 * TPM_PCR_INFO_LONG in a TPM_KEY12, kept raw here.
 */
export interface Key {
  key12: boolean;
  keyUsage: number;
  keyFlags: number;
  authDataUsage: number;
  algorithmParms: KeyParms;
  pcrInfo: Buffer;
  pubKey: Buffer;
  encData: Buffer;
}

const pcrInfoBytes = bytes32(256);
const encDataBytes = bytes32(1024);

function encodePublicPart(w: Writer, v: Key): void {
  if (v.key12) w.u16(STAG.KEY12).u16(0);
  else w.bytes(STRUCT_VER_11);
  w.u16(v.keyUsage).u32(v.keyFlags).u8(v.authDataUsage);
  keyParms.encode(w, v.algorithmParms);
  pcrInfoBytes.encode(w, v.pcrInfo);
  storePubkey.encode(w, v.pubKey);
}

export const key: Codec<Key> = codec(
  (w, v) => {
    encodePublicPart(w, v);
    encDataBytes.encode(w, v.encData);
  },
  (r) => {
    const first = r.u16();
    const second = r.u16();
    let key12: boolean;
    if (first === STAG.KEY12) {
      if (second !== 0) throw new Tpm12Error(RC.INVALID_STRUCTURE);
      key12 = true;
    } else if (first === 0x0101) {
      key12 = false;
    } else {
      throw new Tpm12Error(first >> 8 === 1 ? RC.BAD_VERSION : RC.INVALID_STRUCTURE);
    }
    const keyUsage = r.u16();
    const keyFlags = r.u32();
    const authDataUsage = u8.decode(r);
    const algorithmParms = keyParms.decode(r);
    const pcrInfo = pcrInfoBytes.decode(r);
    const pubKey = storePubkey.decode(r);
    const encData = encDataBytes.decode(r);
    return { key12, keyUsage, keyFlags, authDataUsage, algorithmParms, pcrInfo, pubKey, encData };
  },
);

/** The bytes pubDataDigest covers: every TPM_KEY field but encDataSize and encData. */
export function keyPublicBytes(k: Key): Buffer {
  const out = new Writer(512);
  encodePublicPart(out, k);
  return Buffer.from(out.finish());
}

/** TPM_STORE_ASYMKEY: what encData holds, encrypted to the parent. */
export const storeAsymkey = struct({
  payload: u8,
  usageAuth: digest20,
  migrationAuth: digest20,
  pubDataDigest: digest20,
  privKey: bytes32(512),
});
export type StoreAsymkey = ReturnType<typeof storeAsymkey.decode>;
