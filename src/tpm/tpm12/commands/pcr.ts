import { u32 } from '../../wire/codec.ts';
import { ORD } from '../constants.ts';
import { command } from '../command.ts';
import { digest20 } from '../structures/basic.ts';
import { pcrSelection } from '../structures/pcr.ts';

export const pcrCommands = [
  command({
    ord: ORD.Extend,
    name: 'TPM_Extend',
    auths: [0],
    params: { pcrNum: u32, inDigest: digest20 },
    response: { outDigest: digest20 },
    whenDisabled: true,
    whenDeactivated: true,
    handler(ctx, { pcrNum, inDigest }) {
      return { outDigest: ctx.tpm.pcrs.extend(pcrNum, inDigest, ctx.locality) };
    },
  }),
  command({
    ord: ORD.PCRRead,
    name: 'TPM_PCRRead',
    auths: [0],
    params: { pcrIndex: u32 },
    response: { outDigest: digest20 },
    whenDisabled: true,
    whenDeactivated: true,
    handler(ctx, { pcrIndex }) {
      return { outDigest: ctx.tpm.pcrs.read(pcrIndex) };
    },
  }),
  command({
    ord: ORD.PCR_Reset,
    name: 'TPM_PCR_Reset',
    auths: [0],
    params: { pcrSelection },
    response: {},
    whenDisabled: true,
    whenDeactivated: true,
    handler(ctx, { pcrSelection: select }) {
      ctx.tpm.pcrs.reset(select, ctx.locality);
      return {};
    },
  }),
];
