import { u32 } from '../../wire/codec.ts';
import { ET, ORD, STAG } from '../constants.ts';
import { command } from '../command.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { digest20, fixed } from '../structures/basic.ts';
import { counterValue, type CounterValue } from '../structures/flags.ts';
import { verifyOwner } from '../auth/entities.ts';
import type { Counter } from '../state/nv-state.ts';
import type { Tpm12Engine } from '../engine.ts';

function find(tpm: Tpm12Engine, id: number): Counter {
  const c = tpm.nv.counters.find((x) => x.id === id);
  if (!c) throw new Tpm12Error(RC.BAD_COUNTER);
  return c;
}

function valueOf(c: Counter): CounterValue {
  return { tag: STAG.COUNTER_VALUE, label: c.label, counter: c.value };
}

function release(tpm: Tpm12Engine, c: Counter): void {
  tpm.nv.counters = tpm.nv.counters.filter((x) => x !== c);
  if (tpm.activeCounter === c.id) tpm.activeCounter = null;
  tpm.markNvDirty();
}

export const counterCommands = [
  command({
    ord: ORD.CreateCounter,
    name: 'TPM_CreateCounter',
    auths: [1],
    params: { authData: digest20, label: fixed(4) },
    response: { countID: u32, counterValue },
    handler(ctx, { authData, label }) {
      const tpm = ctx.tpm;
      verifyOwner(ctx, 0, { osapOnly: true });
      if (tpm.nv.counters.length >= tpm.maxCounters) throw new Tpm12Error(RC.SIZE);
      const auth = ctx.adip(0, authData);
      // A new counter starts above every existing one, so a counter cannot be re-created at an old value.
      const start = tpm.nv.counters.reduce((m, c) => Math.max(m, c.value), 0) + 1;
      const c: Counter = { id: tpm.nv.nextCounterId, label, value: start, auth };
      tpm.nv.nextCounterId = (tpm.nv.nextCounterId + 1) >>> 0;
      tpm.nv.counters.push(c);
      tpm.markNvDirty();
      return { countID: c.id, counterValue: valueOf(c) };
    },
  }),
  command({
    ord: ORD.IncrementCounter,
    name: 'TPM_IncrementCounter',
    auths: [1],
    params: { countID: u32 },
    response: { count: counterValue },
    handler(ctx, { countID }) {
      const tpm = ctx.tpm;
      const c = find(tpm, countID);
      ctx.verify(0, c.auth, { types: [ET.COUNTER], value: countID });
      // Only one counter may advance between two TPM_Startup(ST_CLEAR).
      if (tpm.activeCounter !== null && tpm.activeCounter !== countID) throw new Tpm12Error(RC.BAD_COUNTER);
      if (c.value === 0xffffffff) throw new Tpm12Error(RC.BAD_COUNTER);
      c.value++;
      tpm.activeCounter = countID;
      tpm.markNvDirty();
      return { count: valueOf(c) };
    },
  }),
  command({
    ord: ORD.ReadCounter,
    name: 'TPM_ReadCounter',
    auths: [0],
    params: { countID: u32 },
    response: { count: counterValue },
    handler(ctx, { countID }) {
      return { count: valueOf(find(ctx.tpm, countID)) };
    },
  }),
  command({
    ord: ORD.ReleaseCounter,
    name: 'TPM_ReleaseCounter',
    auths: [1],
    params: { countID: u32 },
    response: {},
    handler(ctx, { countID }) {
      const c = find(ctx.tpm, countID);
      ctx.verify(0, c.auth, { types: [ET.COUNTER], value: countID });
      release(ctx.tpm, c);
      return {};
    },
  }),
  command({
    ord: ORD.ReleaseCounterOwner,
    name: 'TPM_ReleaseCounterOwner',
    auths: [1],
    params: { countID: u32 },
    response: {},
    handler(ctx, { countID }) {
      verifyOwner(ctx, 0);
      release(ctx.tpm, find(ctx.tpm, countID));
      return {};
    },
  }),
];
