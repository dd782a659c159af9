import { CC } from '../constants.ts';
import { command } from '../command.ts';
import { publicParms } from '../types/public-parms.ts';

export const testParmsCommands = [
  command({
    cc: CC.TestParms,
    name: 'TestParms',
    handles: [],
    // Decoding is the test: every algorithm, key size, curve, mode and scheme the codecs accept
    // is one the engine implements, and anything else fails with its specific code.
    params: { parameters: publicParms },
    response: {},
    handler: () => ({}),
  }),
];
