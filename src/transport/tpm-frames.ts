/**
 * The few TPM wire facts a transport needs without parsing commands: the 10-byte header that
 * frames every command and response, and the bare error responses a transport answers itself when
 * a frame never reaches the device. Values from tss2_tpm2_types.h (TPM 2.0) and the TPM 1.2 Main
 * specification; both families share the header layout tag(2) size(4) code(4).
 */
import type { TpmDevice } from '../tpm/device.ts';
import { asBuffer } from '../tpm/wire/buffer.ts';

export type TpmFamily = TpmDevice['family'];

export const TPM_HEADER_SIZE = 10;

/** Offset of the big-endian u32 size field in a command or response header. */
export const HEADER_SIZE_OFFSET = 2;

const TPM2_ST_NO_SESSIONS = 0x8001;
const TPM12_TAG_RQU_COMMAND = 0x00c1;
const TPM12_TAG_RSP_COMMAND = 0x00c4;

export const TPM2_RC_FAILURE = 0x101;
export const TPM2_RC_COMMAND_SIZE = 0x142;
export const TPM2_RC_LOCALITY = 0x907;
export const TPM12_FAIL = 0x09;
export const TPM12_BAD_PARAM_SIZE = 0x19;
export const TPM12_BAD_LOCALITY = 0x3d;

const TPM2_CC_STARTUP = 0x144;
const TPM12_ORD_STARTUP = 0x99;

/** A header-only response carrying `rc`, tagged as the family requires for error responses. */
export function errorResponse(family: TpmFamily, rc: number): Uint8Array {
  const out = Buffer.alloc(TPM_HEADER_SIZE);
  out.writeUInt16BE(family === 'tpm2' ? TPM2_ST_NO_SESSIONS : TPM12_TAG_RSP_COMMAND, 0);
  out.writeUInt32BE(TPM_HEADER_SIZE, HEADER_SIZE_OFFSET);
  out.writeUInt32BE(rc >>> 0, 6);
  return out;
}

/** What swtpm answers while the TPM is not initialised (before CMD_INIT, after CMD_STOP) or the device failed. */
export function failureResponse(family: TpmFamily): Uint8Array {
  return errorResponse(family, family === 'tpm2' ? TPM2_RC_FAILURE : TPM12_FAIL);
}

/** The answer to a frame whose size field cannot describe an acceptable command. */
export function commandSizeResponse(family: TpmFamily): Uint8Array {
  return errorResponse(family, family === 'tpm2' ? TPM2_RC_COMMAND_SIZE : TPM12_BAD_PARAM_SIZE);
}

/** The answer to a command sent at a locality the device cannot be asked for (above 4). */
export function localityResponse(family: TpmFamily): Uint8Array {
  return errorResponse(family, family === 'tpm2' ? TPM2_RC_LOCALITY : TPM12_BAD_LOCALITY);
}

export type StartupType = 'clear' | 'state' | 'deactivated';

/**
 * TPM2_Startup / TPM_Startup as swtpm's `--flags startup-*` sends it. TPM 2.0 has no
 * "deactivated" startup.
 */
export function startupCommand(family: TpmFamily, type: StartupType): Uint8Array {
  const out = Buffer.alloc(12);
  if (family === 'tpm2') {
    if (type === 'deactivated') throw new RangeError('TPM 2.0 has no deactivated startup');
    out.writeUInt16BE(TPM2_ST_NO_SESSIONS, 0);
    out.writeUInt32BE(12, HEADER_SIZE_OFFSET);
    out.writeUInt32BE(TPM2_CC_STARTUP, 6);
    out.writeUInt16BE(type === 'clear' ? 0 : 1, 10); // TPM_SU_CLEAR / TPM_SU_STATE
  } else {
    out.writeUInt16BE(TPM12_TAG_RQU_COMMAND, 0);
    out.writeUInt32BE(12, HEADER_SIZE_OFFSET);
    out.writeUInt32BE(TPM12_ORD_STARTUP, 6);
    out.writeUInt16BE(type === 'clear' ? 1 : type === 'state' ? 2 : 3, 10); // TPM_ST_*
  }
  return out;
}

/** The response code of a response, or undefined when it is too short to carry one. */
export function responseCode(response: Uint8Array): number | undefined {
  if (response.length < TPM_HEADER_SIZE) return undefined;
  return asBuffer(response).readUInt32BE(6);
}
