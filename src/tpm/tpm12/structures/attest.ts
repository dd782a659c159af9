import { struct, u8, u16, u32 } from '../../wire/codec.ts';
import { STAG } from '../constants.ts';
import { bytes16, bytes32, digest20, fixed, bool, structTag } from './basic.ts';
import { keyParms } from './key.ts';
import { pcrInfoShort } from './pcr.ts';

/** TPM_QUOTE_INFO: version 1.1.0.0, "QUOT", composite hash, external data. */
export const quoteInfo = struct({ version: fixed(4), fixed: fixed(4), digestValue: digest20, externalData: digest20 });

/** TPM_QUOTE_INFO2: "QUT2", external data, the quoted PCRs as TPM_PCR_INFO_SHORT. */
export const quoteInfo2 = struct({ tag: structTag(STAG.QUOTE_INFO2), fixed: fixed(4), externalData: digest20, infoShort: pcrInfoShort });

/** TPM_CERTIFY_INFO (1.1): PCRInfo is a TPM_PCR_INFO, kept raw. */
export const certifyInfo = struct({
  version: fixed(4),
  keyUsage: u16,
  keyFlags: u32,
  authDataUsage: u8,
  algorithmParms: keyParms,
  pubkeyDigest: digest20,
  data: digest20,
  parentPCRStatus: bool,
  pcrInfo: bytes32(256),
});

/** TPM_CERTIFY_INFO2: PCRInfo is a TPM_PCR_INFO_SHORT, kept raw. */
export const certifyInfo2 = struct({
  tag: structTag(STAG.CERTIFY_INFO2),
  fill: u8,
  payloadType: u8,
  keyUsage: u16,
  keyFlags: u32,
  authDataUsage: u8,
  algorithmParms: keyParms,
  pubkeyDigest: digest20,
  data: digest20,
  parentPCRStatus: bool,
  pcrInfo: bytes32(256),
  migrationAuthority: bytes32(256),
});

/** TPM_CAP_VERSION_INFO. */
export const capVersionInfo = struct({
  tag: structTag(STAG.CAP_VERSION_INFO),
  version: fixed(4),
  specLevel: u16,
  errataRev: u8,
  tpmVendorID: fixed(4),
  vendorSpecific: bytes16(256),
});
export type CapVersionInfo = ReturnType<typeof capVersionInfo.decode>;
