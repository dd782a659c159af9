/** TPM 1.2 return codes (part 2, section 16) and the error handlers throw. */
export const RC = {
  SUCCESS: 0,
  AUTHFAIL: 1,
  BADINDEX: 2,
  BAD_PARAMETER: 3,
  AUDITFAILURE: 4,
  CLEAR_DISABLED: 5,
  DEACTIVATED: 6,
  DISABLED: 7,
  DISABLED_CMD: 8,
  FAIL: 9,
  BAD_ORDINAL: 10,
  INSTALL_DISABLED: 11,
  INVALID_KEYHANDLE: 12,
  KEYNOTFOUND: 13,
  INAPPROPRIATE_ENC: 14,
  MIGRATEFAIL: 15,
  INVALID_PCR_INFO: 16,
  NOSPACE: 17,
  NOSRK: 18,
  NOTSEALED_BLOB: 19,
  OWNER_SET: 20,
  RESOURCES: 21,
  SHORTRANDOM: 22,
  SIZE: 23,
  WRONGPCRVAL: 24,
  BAD_PARAM_SIZE: 25,
  SHA_THREAD: 26,
  SHA_ERROR: 27,
  FAILEDSELFTEST: 28,
  AUTH2FAIL: 29,
  BADTAG: 30,
  IOERROR: 31,
  ENCRYPT_ERROR: 32,
  DECRYPT_ERROR: 33,
  INVALID_AUTHHANDLE: 34,
  NO_ENDORSEMENT: 35,
  INVALID_KEYUSAGE: 36,
  WRONG_ENTITYTYPE: 37,
  INVALID_POSTINIT: 38,
  INAPPROPRIATE_SIG: 39,
  BAD_KEY_PROPERTY: 40,
  BAD_MIGRATION: 41,
  BAD_SCHEME: 42,
  BAD_DATASIZE: 43,
  BAD_MODE: 44,
  BAD_PRESENCE: 45,
  BAD_VERSION: 46,
  NOTRESETABLE: 50,
  NOTLOCAL: 51,
  BAD_TYPE: 52,
  INVALID_RESOURCE: 53,
  NO_NV_PERMISSION: 56,
  AUTH_CONFLICT: 59,
  AREA_LOCKED: 60,
  BAD_LOCALITY: 61,
  READ_ONLY: 62,
  PER_NOWRITE: 63,
  WRITE_LOCKED: 65,
  BAD_ATTRIBUTES: 66,
  INVALID_STRUCTURE: 67,
  KEY_OWNER_CONTROL: 68,
  BAD_COUNTER: 69,
  NOT_FULLWRITE: 70,
  MAXNVWRITES: 72,
  RESOURCEMISSING: 74,
  BAD_HANDLE: 88,
  RETRY: 0x800,
  NEEDS_SELFTEST: 0x801,
} as const;

/** A TPM 1.2 command failure: the return code goes on the wire, the message (never secret) to logs. */
export class Tpm12Error extends Error {
  constructor(readonly rc: number, message?: string) {
    super(message ?? `TPM 1.2 return code ${rc} (0x${rc.toString(16)})`);
    this.name = 'Tpm12Error';
  }
}

export function fail(rc: number, message?: string): never {
  throw new Tpm12Error(rc, message);
}

/** A stored TPM 1.2 state that cannot be used (torn, corrupted, unknown version). */
export class Tpm12StateError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Tpm12StateError';
  }
}
