import { u16 } from '../../wire/codec.ts';
import { MAX_DIGEST_SIZE } from '../../crypto/hash.ts';
import { CC } from '../constants.ts';
import { command } from '../command.ts';
import { digestBuf, sensitiveData } from '../types/basic.ts';

export const randomCommands = [
  command({
    cc: CC.GetRandom,
    name: 'GetRandom',
    handles: [],
    params: { bytesRequested: u16 },
    response: { randomBytes: digestBuf },
    // A TPM2B_DIGEST holds at most the largest digest; asking for more returns that much.
    handler: ({ tpm }, { bytesRequested }) => ({ randomBytes: tpm.random.bytes(Math.min(bytesRequested, MAX_DIGEST_SIZE)) }),
  }),
  command({
    cc: CC.StirRandom,
    name: 'StirRandom',
    nv: true,
    handles: [],
    params: { inData: sensitiveData },
    response: {},
    handler: ({ tpm }, { inData }) => {
      tpm.random.stir(inData);
      return {};
    },
  }),
];
