import { u32, yesNo } from '../../wire/codec.ts';
import { CC } from '../constants.ts';
import { command } from '../command.ts';
import { RC } from '../rc.ts';
import { algList, maxBuffer } from '../types/basic.ts';

/**
 * Self tests. The algorithms are those of node:crypto, exercised on every use, so every test
 * passes at once and nothing is ever left to do.
 */
export const selfTestCommands = [
  command({
    cc: CC.SelfTest,
    name: 'SelfTest',
    nv: true,
    handles: [],
    params: { fullTest: yesNo },
    response: {},
    handler: () => ({}),
  }),
  command({
    cc: CC.IncrementalSelfTest,
    name: 'IncrementalSelfTest',
    nv: true,
    handles: [],
    params: { toTest: algList },
    response: { toDoList: algList },
    handler: () => ({ toDoList: [] }),
  }),
  command({
    cc: CC.GetTestResult,
    name: 'GetTestResult',
    handles: [],
    params: {},
    response: { outData: maxBuffer, testResult: u32 },
    handler: () => ({ outData: Buffer.alloc(0), testResult: RC.SUCCESS }),
  }),
];
