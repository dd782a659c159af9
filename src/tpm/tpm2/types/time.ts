import { struct, u32, u64, yesNo } from '../../wire/codec.ts';

/** TPMS_CLOCK_INFO. */
export const clockInfo = struct({ clock: u64, resetCount: u32, restartCount: u32, safe: yesNo });

/** TPMS_TIME_INFO. */
export const timeInfo = struct({ time: u64, clockInfo });
