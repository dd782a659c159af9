/**
 * TPM 1.2 constants (Main specification part 2, revision 116): command tags, ordinals, entity
 * types, key usages and schemes, structure tags, capability areas and properties.
 */

export const TAG = {
  RQU_COMMAND: 0x00c1,
  RQU_AUTH1_COMMAND: 0x00c2,
  RQU_AUTH2_COMMAND: 0x00c3,
  RSP_COMMAND: 0x00c4,
  RSP_AUTH1_COMMAND: 0x00c5,
  RSP_AUTH2_COMMAND: 0x00c6,
} as const;

export const ORD = {
  OIAP: 0x0a,
  OSAP: 0x0b,
  TakeOwnership: 0x0d,
  Extend: 0x14,
  PCRRead: 0x15,
  Quote: 0x16,
  Seal: 0x17,
  Unseal: 0x18,
  DirWriteAuth: 0x19,
  DirRead: 0x1a,
  CreateWrapKey: 0x1f,
  LoadKey: 0x20,
  GetPubKey: 0x21,
  CertifyKey: 0x32,
  Sign: 0x3c,
  Quote2: 0x3e,
  LoadKey2: 0x41,
  GetRandom: 0x46,
  StirRandom: 0x47,
  SelfTestFull: 0x50,
  ContinueSelfTest: 0x53,
  GetTestResult: 0x54,
  OwnerClear: 0x5b,
  ForceClear: 0x5d,
  GetCapability: 0x65,
  PhysicalEnable: 0x6f,
  PhysicalDisable: 0x70,
  SetOwnerInstall: 0x71,
  PhysicalSetDeactivated: 0x72,
  CreateEndorsementKeyPair: 0x78,
  MakeIdentity: 0x79,
  ActivateIdentity: 0x7a,
  ReadPubek: 0x7c,
  OwnerReadPubek: 0x7d,
  Terminate_Handle: 0x96,
  Init: 0x97,
  SaveState: 0x98,
  Startup: 0x99,
  FlushSpecific: 0xba,
  PCR_Reset: 0xc8,
  NV_DefineSpace: 0xcc,
  NV_WriteValue: 0xcd,
  NV_WriteValueAuth: 0xce,
  NV_ReadValue: 0xcf,
  NV_ReadValueAuth: 0xd0,
  CreateCounter: 0xdc,
  IncrementCounter: 0xdd,
  ReadCounter: 0xde,
  ReleaseCounter: 0xdf,
  ReleaseCounterOwner: 0xe0,
  TSC_PhysicalPresence: 0x4000000a,
} as const;

/** TPM_ENTITY_TYPE, low byte; the high byte names the ADIP scheme. */
export const ET = {
  KEYHANDLE: 0x01,
  OWNER: 0x02,
  DATA: 0x03,
  SRK: 0x04,
  KEY: 0x05,
  REVOKE: 0x06,
  COUNTER: 0x0a,
  NV: 0x0b,
  OPERATOR: 0x0c,
  RESERVED_HANDLE: 0x40,
} as const;

/** ADIP encryption schemes (high byte of TPM_ENTITY_TYPE). */
export const ET_XOR = 0x00;
export const ET_AES128_CTR = 0x06;

/** Reserved key handles. */
export const KH = {
  SRK: 0x40000000,
  OWNER: 0x40000001,
  REVOKE: 0x40000002,
  TRANSPORT: 0x40000003,
  OPERATOR: 0x40000004,
  ADMIN: 0x40000005,
  EK: 0x40000006,
} as const;

export const ST = { CLEAR: 0x0001, STATE: 0x0002, DEACTIVATED: 0x0003 } as const;

export const PID = { OIAP: 0x0001, OSAP: 0x0002, ADIP: 0x0003, ADCP: 0x0004, OWNER: 0x0005, DSAP: 0x0006, TRANSPORT: 0x0007 } as const;

export const ALG = { RSA: 0x01, DES: 0x02, TDES: 0x03, SHA: 0x04, HMAC: 0x05, AES128: 0x06, MGF1: 0x07, AES192: 0x08, AES256: 0x09, XOR: 0x0a } as const;

export const PP = {
  HW_DISABLE: 0x0200,
  CMD_DISABLE: 0x0100,
  LIFETIME_LOCK: 0x0080,
  HW_ENABLE: 0x0040,
  CMD_ENABLE: 0x0020,
  NOTPRESENT: 0x0010,
  PRESENT: 0x0008,
  LOCK: 0x0004,
} as const;

export const KEY_USAGE = {
  SIGNING: 0x0010,
  STORAGE: 0x0011,
  IDENTITY: 0x0012,
  AUTHCHANGE: 0x0013,
  BIND: 0x0014,
  LEGACY: 0x0015,
  MIGRATE: 0x0016,
} as const;

export const ES = { NONE: 0x0001, RSAESPKCSv15: 0x0002, RSAESOAEP_SHA1_MGF1: 0x0003, SYM_CTR: 0x0004, SYM_OFB: 0x0005 } as const;

export const SS = { NONE: 0x0001, RSASSAPKCS1v15_SHA1: 0x0002, RSASSAPKCS1v15_DER: 0x0003, RSASSAPKCS1v15_INFO: 0x0004 } as const;

export const AUTH_USAGE = { NEVER: 0x00, ALWAYS: 0x01, PRIV_USE_ONLY: 0x03 } as const;

export const KEY_FLAG = { REDIRECTION: 0x1, MIGRATABLE: 0x2, IS_VOLATILE: 0x4, PCR_IGNORED_ON_READ: 0x8, MIGRATE_AUTHORITY: 0x10 } as const;

/** TPM_PAYLOAD_TYPE. */
export const PT = { ASYM: 0x01, BIND: 0x02, MIGRATE: 0x03, MAINT: 0x04, SEAL: 0x05 } as const;

/** TPM_STRUCTURE_TAG values. */
export const STAG = {
  SIGNINFO: 0x0005,
  PCR_INFO_LONG: 0x0006,
  EK_BLOB: 0x000c,
  EK_BLOB_AUTH: 0x000d,
  COUNTER_VALUE: 0x000e,
  STORED_DATA12: 0x0016,
  NV_ATTRIBUTES: 0x0017,
  NV_DATA_PUBLIC: 0x0018,
  PERMANENT_FLAGS: 0x001f,
  STCLEAR_FLAGS: 0x0020,
  KEY12: 0x0028,
  CERTIFY_INFO2: 0x0029,
  EK_BLOB_ACTIVATE: 0x002b,
  CAP_VERSION_INFO: 0x0030,
  QUOTE_INFO2: 0x0036,
  DA_INFO: 0x0037,
  DA_ACTION_TYPE: 0x0039,
} as const;

export const EK_TYPE = { ACTIVATE: 0x0001, AUTH: 0x0002 } as const;

/** TPM_RESOURCE_TYPE. */
export const RT = { KEY: 0x01, AUTH: 0x02, HASH: 0x03, TRANS: 0x04, CONTEXT: 0x05, COUNTER: 0x06, DELEGATE: 0x07, DAA_TPM: 0x08, DAA_V0: 0x09, DAA_V1: 0x0a } as const;

export const CAP = {
  ORD: 0x01,
  ALG: 0x02,
  PID: 0x03,
  FLAG: 0x04,
  PROPERTY: 0x05,
  VERSION: 0x06,
  KEY_HANDLE: 0x07,
  CHECK_LOADED: 0x08,
  SYM_MODE: 0x09,
  KEY_STATUS: 0x0c,
  NV_LIST: 0x0d,
  MFR: 0x10,
  NV_INDEX: 0x11,
  TRANS_ALG: 0x12,
  HANDLE: 0x14,
  TRANS_ES: 0x15,
  AUTH_ENCRYPT: 0x17,
  SELECT_SIZE: 0x18,
  DA_LOGIC: 0x19,
  VERSION_VAL: 0x1a,
} as const;

export const CAP_FLAG = { PERMANENT: 0x108, VOLATILE: 0x109 } as const;

export const CAP_PROP = {
  PCR: 0x101,
  DIR: 0x102,
  MANUFACTURER: 0x103,
  KEYS: 0x104,
  MIN_COUNTER: 0x107,
  AUTHSESS: 0x10a,
  TRANSESS: 0x10b,
  COUNTERS: 0x10c,
  MAX_AUTHSESS: 0x10d,
  MAX_TRANSESS: 0x10e,
  MAX_COUNTERS: 0x10f,
  MAX_KEYS: 0x110,
  OWNER: 0x111,
  CONTEXT: 0x112,
  MAX_CONTEXT: 0x113,
  FAMILYROWS: 0x114,
  TIS_TIMEOUT: 0x115,
  STARTUP_EFFECT: 0x116,
  DELEGATE_ROW: 0x117,
  MAX_DAASESS: 0x119,
  DAASESS: 0x11a,
  CONTEXT_DIST: 0x11b,
  DAA_INTERRUPT: 0x11c,
  SESSIONS: 0x11d,
  MAX_SESSIONS: 0x11e,
  CMK_RESTRICTION: 0x11f,
  DURATION: 0x120,
  ACTIVE_COUNTER: 0x122,
  MAX_NV_AVAILABLE: 0x123,
  INPUT_BUFFER: 0x124,
} as const;

/** TPM_NV_INDEX values and bits. */
export const NV_INDEX = {
  LOCK: 0xffffffff,
  INDEX0: 0x00000000,
  DIR: 0x10000001,
  EKCert: 0x1000f000,
  T_BIT: 0x80000000,
  P_BIT: 0x40000000,
  U_BIT: 0x20000000,
  D_BIT: 0x10000000,
} as const;

/** TPM_NV_ATTRIBUTES bits. */
export const NV_PER = {
  READ_STCLEAR: 0x80000000,
  AUTHREAD: 0x00040000,
  OWNERREAD: 0x00020000,
  PPREAD: 0x00010000,
  GLOBALLOCK: 0x00008000,
  WRITE_STCLEAR: 0x00004000,
  WRITEDEFINE: 0x00002000,
  WRITEALL: 0x00001000,
  AUTHWRITE: 0x00000004,
  OWNERWRITE: 0x00000002,
  PPWRITE: 0x00000001,
} as const;

/** The attribute bits TPM_NV_DefineSpace accepts. */
export const NV_PER_DEFINED = 0x8007f007;

export const DIGEST_SIZE = 20;
export const NONCE_SIZE = 20;
/** Bytes of one authorization block in a command: handle, nonceOdd, continue, HMAC. */
export const AUTH_IN_SIZE = 4 + 20 + 1 + 20;
/** Bytes of one authorization block in a response: nonceEven, continue, HMAC. */
export const AUTH_OUT_SIZE = 20 + 1 + 20;
/** OAEP label for everything the TPM encrypts to a storage key or the EK. */
export const OAEP_LABEL = Buffer.from('TCPA', 'latin1');
