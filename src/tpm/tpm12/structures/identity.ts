import { struct, u16, u32 } from '../../wire/codec.ts';
import { STAG } from '../constants.ts';
import { bytes16, bytes32, digest20, fixed, structTag } from './basic.ts';
import { pubkey } from './key.ts';
import { pcrInfoShort } from './pcr.ts';

/** TPM_SYMMETRIC_KEY. */
export const symmetricKey = struct({ algId: u32, encScheme: u16, data: bytes16(256) });
export type SymmetricKey = ReturnType<typeof symmetricKey.decode>;

/** TPM_ASYM_CA_CONTENTS: what a privacy CA encrypts to the EK for ActivateIdentity. */
export const asymCaContents = struct({ sessionKey: symmetricKey, idDigest: digest20 });

/** TPM_EK_BLOB: the 1.2 wrapper ActivateIdentity also accepts. */
export const ekBlob = struct({ tag: structTag(STAG.EK_BLOB), ekType: u16, blob: bytes32(512) });

/** TPM_EK_BLOB_ACTIVATE. */
export const ekBlobActivate = struct({ tag: structTag(STAG.EK_BLOB_ACTIVATE), sessionKey: symmetricKey, idDigest: digest20, pcrInfo: pcrInfoShort });

/** TPM_IDENTITY_CONTENTS: what the identity binding signs. */
export const identityContents = struct({ ver: fixed(4), ordinal: u32, labelPrivCADigest: digest20, identityPubKey: pubkey });
