import { checked, i8, u64 } from '../../wire/codec.ts';
import { CC } from '../constants.ts';
import { command } from '../command.ts';
import { RC, TpmError } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { rhProvision } from '../types/handles.ts';
import { timeInfo } from '../types/time.ts';

/** Clock may not be set past this: the top 16 bits stay clear so it can never wrap. */
const CLOCK_MAX = 0xffff000000000000n;

export function currentTimeInfo(tpm: Tpm2Engine) {
  return {
    time: tpm.clock.time,
    clockInfo: { clock: tpm.clock.clock, resetCount: tpm.nv.resetCount, restartCount: tpm.nv.restartCount, safe: tpm.nv.clockSafe },
  };
}

export const clockCommands = [
  command({
    cc: CC.ReadClock,
    name: 'ReadClock',
    handles: [],
    params: {},
    response: { currentTime: timeInfo },
    handler: ({ tpm }) => ({ currentTime: currentTimeInfo(tpm) }),
  }),
  command({
    cc: CC.ClockSet,
    name: 'ClockSet',
    handles: [{ name: 'auth', type: rhProvision, auth: 'user' }],
    params: { newTime: u64 },
    response: {},
    nv: true,
    handler: ({ tpm }, { newTime }) => {
      // Clock only moves forward: setting it back would let old tickets and quotes look fresh.
      if (newTime > CLOCK_MAX || newTime < tpm.clock.clock) throw TpmError.parameter(RC.VALUE, 1);
      tpm.clock.set(newTime);
      tpm.persistClock();
      return {};
    },
  }),
  command({
    cc: CC.ClockRateAdjust,
    name: 'ClockRateAdjust',
    handles: [{ name: 'auth', type: rhProvision, auth: 'user' }],
    params: { rateAdjust: checked(i8, (v) => v >= -3 && v <= 3, RC.VALUE) },
    response: {},
    handler: ({ tpm }, { rateAdjust }) => {
      tpm.clock.adjust(rateAdjust);
      return {};
    },
  }),
];
