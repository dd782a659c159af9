/**
 * TPM 2.0 response codes (Part 2, TPM_RC) and the error type handlers throw. Format-one codes
 * carry the position of the failing handle, parameter or session; the dispatcher adds it for
 * decoding failures, handlers add it where they know it.
 */
export const RC = {
  SUCCESS: 0x000,
  BAD_TAG: 0x01e,
  // Format zero, version 1 (RC_VER1 = 0x100)
  INITIALIZE: 0x100,
  FAILURE: 0x101,
  SEQUENCE: 0x103,
  DISABLED: 0x120,
  EXCLUSIVE: 0x121,
  AUTH_TYPE: 0x124,
  AUTH_MISSING: 0x125,
  POLICY: 0x126,
  PCR: 0x127,
  PCR_CHANGED: 0x128,
  UPGRADE: 0x12d,
  TOO_MANY_CONTEXTS: 0x12e,
  AUTH_UNAVAILABLE: 0x12f,
  REBOOT: 0x130,
  UNBALANCED: 0x131,
  COMMAND_SIZE: 0x142,
  COMMAND_CODE: 0x143,
  AUTHSIZE: 0x144,
  AUTH_CONTEXT: 0x145,
  NV_RANGE: 0x146,
  NV_SIZE: 0x147,
  NV_LOCKED: 0x148,
  NV_AUTHORIZATION: 0x149,
  NV_UNINITIALIZED: 0x14a,
  NV_SPACE: 0x14b,
  NV_DEFINED: 0x14c,
  BAD_CONTEXT: 0x150,
  CPHASH: 0x151,
  PARENT: 0x152,
  NEEDS_TEST: 0x153,
  NO_RESULT: 0x154,
  SENSITIVE: 0x155,
  // Format one (RC_FMT1 = 0x080)
  ASYMMETRIC: 0x081,
  ATTRIBUTES: 0x082,
  HASH: 0x083,
  VALUE: 0x084,
  HIERARCHY: 0x085,
  KEY_SIZE: 0x087,
  MGF: 0x088,
  MODE: 0x089,
  TYPE: 0x08a,
  HANDLE: 0x08b,
  KDF: 0x08c,
  RANGE: 0x08d,
  AUTH_FAIL: 0x08e,
  NONCE: 0x08f,
  PP: 0x090,
  SCHEME: 0x092,
  SIZE: 0x095,
  SYMMETRIC: 0x096,
  TAG: 0x097,
  SELECTOR: 0x098,
  INSUFFICIENT: 0x09a,
  SIGNATURE: 0x09b,
  KEY: 0x09c,
  POLICY_FAIL: 0x09d,
  INTEGRITY: 0x09f,
  TICKET: 0x0a0,
  RESERVED_BITS: 0x0a1,
  BAD_AUTH: 0x0a2,
  EXPIRED: 0x0a3,
  POLICY_CC: 0x0a4,
  BINDING: 0x0a5,
  CURVE: 0x0a6,
  ECC_POINT: 0x0a7,
  // Warnings (RC_WARN = 0x900)
  CONTEXT_GAP: 0x901,
  OBJECT_MEMORY: 0x902,
  SESSION_MEMORY: 0x903,
  MEMORY: 0x904,
  SESSION_HANDLES: 0x905,
  OBJECT_HANDLES: 0x906,
  LOCALITY: 0x907,
  YIELDED: 0x908,
  CANCELED: 0x909,
  TESTING: 0x90a,
  REFERENCE_H0: 0x910,
  REFERENCE_S0: 0x918,
  NV_RATE: 0x920,
  LOCKOUT: 0x921,
  RETRY: 0x922,
  NV_UNAVAILABLE: 0x923,
} as const;

const FMT1 = 0x080;
const RC_P = 0x040;
const RC_S = 0x800;

export function isFormatOne(rc: number): boolean {
  return (rc & FMT1) !== 0;
}

/** True if a format-one code already names a handle, parameter or session. */
function isNumbered(rc: number): boolean {
  return (rc & 0xf00) !== 0;
}

/** Numbers a format-one code for handle n (1–7); other codes pass through unchanged. */
export function atHandle(rc: number, n: number): number {
  return isFormatOne(rc) && !isNumbered(rc) ? rc | ((n & 0x7) << 8) : rc;
}

/** Numbers a format-one code for parameter n (1–15). */
export function atParameter(rc: number, n: number): number {
  return isFormatOne(rc) && !isNumbered(rc) ? rc | RC_P | ((n & 0xf) << 8) : rc;
}

/** Numbers a format-one code for session n (1–7). */
export function atSession(rc: number, n: number): number {
  return isFormatOne(rc) && !isNumbered(rc) ? rc | RC_S | ((n & 0x7) << 8) : rc;
}

/** A code without its handle, parameter or session number: what the failure was, not where. */
export function unnumbered(rc: number): number {
  return isFormatOne(rc) ? rc & (FMT1 | 0x3f) : rc;
}

const NAMES: ReadonlyMap<number, string> = new Map(Object.entries(RC).map(([name, code]) => [code, `TPM_RC_${name}`]));

/** The TPM_RC_ name of a code, numbered or not (TPM_RC_BAD_AUTH for 0x9a2); undefined for one this table lacks. */
export function rcName(rc: number): string | undefined {
  return NAMES.get(unnumbered(rc));
}

/** A TPM-level failure: becomes a response code on the wire, never a thrown error. */
export class TpmError extends Error {
  constructor(readonly rc: number, message?: string) {
    super(message ?? `TPM_RC 0x${rc.toString(16).padStart(3, '0')}`);
    this.name = 'TpmError';
  }

  static handle(rc: number, n: number, message?: string): TpmError {
    return new TpmError(atHandle(rc, n), message);
  }

  static parameter(rc: number, n: number, message?: string): TpmError {
    return new TpmError(atParameter(rc, n), message);
  }

  static session(rc: number, n: number, message?: string): TpmError {
    return new TpmError(atSession(rc, n), message);
  }
}
