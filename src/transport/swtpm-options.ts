/**
 * swtpm's command-line sub-option syntax (`--server type=tcp,port=2321,bindaddr=…`), so scripts
 * written for `swtpm socket` work against `vtpmd socket`. Options swtpm has but we do not
 * implement are rejected by name rather than silently ignored: a script that asks for fd passing
 * or socket ownership must learn that it did not get it.
 */
import type { Endpoint } from './endpoint.ts';
import { OptionError } from './errors.ts';
import type { SwtpmFlags } from './swtpm-server.ts';

export const DEFAULT_DATA_PORT = 2321;

export interface ServerSpec {
  endpoint: Endpoint;
  /** `disconnect`: close the data connection after each response. */
  disconnect: boolean;
}

type SubOptions = Map<string, string | true>;

interface Grammar {
  /** Sub-options taking a value. */
  values: readonly string[];
  /** Sub-options that are bare words. */
  words?: readonly string[];
  /** swtpm sub-options vtpmd does not implement. */
  unsupported?: readonly string[];
}

/** `--server [type=tcp][,port=P][,bindaddr=A][,disconnect]` or `--server type=unixio,path=F[,mode=0…]`. */
export function parseServerOption(value: string, defaultPort = DEFAULT_DATA_PORT): ServerSpec {
  const options = parseSubOptions('--server', value, {
    values: ['type', 'port', 'bindaddr', 'path', 'mode'],
    words: ['disconnect'],
    unsupported: ['fd', 'ifname', 'uid', 'gid'],
  });
  const type = options.get('type') ?? 'tcp';
  return { endpoint: endpointOf('--server', type, options, defaultPort), disconnect: options.has('disconnect') };
}

/** `--ctrl type=tcp,port=Q[,bindaddr=A]` or `--ctrl type=unixio,path=F[,mode=0…]`. */
export function parseCtrlOption(value: string): Endpoint {
  const options = parseSubOptions('--ctrl', value, {
    values: ['type', 'port', 'bindaddr', 'path', 'mode'],
    unsupported: ['fd', 'clientfd', 'ifname', 'uid', 'gid'],
  });
  const type = options.get('type');
  if (type === undefined) throw new OptionError('--ctrl: type= is required (type=tcp or type=unixio)');
  return endpointOf('--ctrl', type, options, undefined);
}

/** `--tpmstate dir=D`; returns D. */
export function parseTpmstateOption(value: string): string {
  const options = parseSubOptions('--tpmstate', value, { values: ['dir'], unsupported: ['mode', 'backend-uri'] });
  const dir = options.get('dir');
  if (typeof dir !== 'string') throw new OptionError('--tpmstate: dir=<directory> is required');
  return dir;
}

/** `--flags [not-need-init][,startup-clear|startup-state|startup-deactivated|startup-none]`. */
export function parseFlagsOption(value: string): SwtpmFlags {
  const flags: SwtpmFlags = {};
  let startupSeen: string | undefined;
  for (const word of splitList('--flags', value)) {
    if (word === 'not-need-init') {
      flags.notNeedInit = true;
      continue;
    }
    const startup = /^startup-(clear|state|deactivated|none)$/.exec(word)?.[1];
    if (startup === undefined) {
      throw new OptionError(
        `--flags: unknown flag '${word}'; supported: not-need-init, startup-clear, startup-state, startup-deactivated, startup-none`,
      );
    }
    if (startupSeen !== undefined) throw new OptionError(`--flags: '${startupSeen}' and '${word}' exclude each other`);
    startupSeen = word;
    // As in swtpm, startup-none sends nothing and does not imply not-need-init.
    if (startup !== 'none') flags.startup = startup as NonNullable<SwtpmFlags['startup']>;
  }
  return flags;
}

export function parsePort(option: string, text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    throw new OptionError(`${option}: port must be a number from 0 to 65535 (0 picks a free port), not '${text}'`);
  }
  return Number(text);
}

function endpointOf(option: string, type: string | true, options: SubOptions, defaultPort: number | undefined): Endpoint {
  const only = (allowed: string[], forType: string): void => {
    for (const key of options.keys()) {
      if (key !== 'type' && key !== 'disconnect' && !allowed.includes(key)) {
        throw new OptionError(`${option}: '${key}' does not apply to type=${forType}`);
      }
    }
  };
  if (type === 'tcp') {
    only(['port', 'bindaddr'], 'tcp');
    const port = options.get('port');
    if (port === undefined && defaultPort === undefined) throw new OptionError(`${option}: type=tcp needs port=<number>`);
    const bindaddr = options.get('bindaddr');
    return {
      type: 'tcp',
      port: port === undefined ? defaultPort! : parsePort(option, String(port)),
      ...(typeof bindaddr === 'string' ? { bindaddr } : {}),
    };
  }
  if (type === 'unixio') {
    only(['path', 'mode'], 'unixio');
    const path = options.get('path');
    if (typeof path !== 'string') throw new OptionError(`${option}: type=unixio needs path=<socket file>`);
    const mode = options.get('mode');
    return { type: 'unixio', path, ...(typeof mode === 'string' ? { mode: parseMode(option, mode) } : {}) };
  }
  throw new OptionError(`${option}: unknown type '${String(type)}'; supported: tcp, unixio`);
}

function parseMode(option: string, text: string): number {
  // swtpm insists on a leading 0 so nobody writes 770 meaning 0770.
  if (!/^0[0-7]{1,4}$/.test(text)) throw new OptionError(`${option}: mode must be octal with a leading 0 (e.g. 0770), not '${text}'`);
  return parseInt(text, 8);
}

function parseSubOptions(option: string, value: string, grammar: Grammar): SubOptions {
  const words = grammar.words ?? [];
  const options: SubOptions = new Map();
  for (const item of splitList(option, value)) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    if (grammar.unsupported?.includes(key)) {
      throw new OptionError(`${option}: '${key}' is a swtpm sub-option that vtpmd does not support`);
    }
    const takesValue = grammar.values.includes(key);
    if (!takesValue && !words.includes(key)) {
      const known = [...grammar.values, ...words].join(', ');
      throw new OptionError(`${option}: unknown sub-option '${key}'; supported: ${known}`);
    }
    if (options.has(key)) throw new OptionError(`${option}: '${key}' is given twice`);
    if (takesValue) {
      const text = eq < 0 ? '' : item.slice(eq + 1);
      if (text === '') throw new OptionError(`${option}: '${key}' needs a value (${key}=…)`);
      options.set(key, text);
    } else {
      if (eq >= 0) throw new OptionError(`${option}: '${key}' takes no value`);
      options.set(key, true);
    }
  }
  return options;
}

function splitList(option: string, value: string): string[] {
  const items = value.split(',').map((item) => item.trim());
  if (items.some((item) => item === '')) throw new OptionError(`${option}: empty item in '${value}'`);
  return items;
}
