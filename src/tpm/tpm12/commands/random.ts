import { u32 } from '../../wire/codec.ts';
import { ORD } from '../constants.ts';
import { command } from '../command.ts';
import { bytes32 } from '../structures/basic.ts';

/** The most GetRandom returns: what fits a 4096-byte response after its 14-byte header. */
const MAX_RANDOM = 4096 - 14;

export const randomCommands = [
  command({
    ord: ORD.GetRandom,
    name: 'TPM_GetRandom',
    auths: [0],
    params: { bytesRequested: u32 },
    response: { randomBytes: bytes32() },
    handler(ctx, { bytesRequested }) {
      return { randomBytes: ctx.tpm.random.bytes(Math.min(bytesRequested, MAX_RANDOM)) };
    },
  }),
  command({
    ord: ORD.StirRandom,
    name: 'TPM_StirRandom',
    auths: [0],
    params: { inData: bytes32(255) },
    response: {},
    handler(ctx, { inData }) {
      ctx.tpm.random.stir(inData);
      return {};
    },
  }),
];
