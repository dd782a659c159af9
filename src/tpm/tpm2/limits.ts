/** Implementation limits reported by GetCapability and enforced by the dispatcher. */
export const MAX_COMMAND_SIZE = 4096;
export const MAX_RESPONSE_SIZE = 4096;
/** Clock is written to NV at least this often (ms), as TPM_PT_CLOCK_UPDATE reports. */
export const CLOCK_UPDATE_INTERVAL = 1 << 22;
/** Persistent object slots (TPM_PT_HR_PERSISTENT_MIN). */
export const MAX_PERSISTENT = 7;
