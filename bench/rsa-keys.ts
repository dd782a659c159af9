/**
 * Fresh RSA keys and the vTPMs around them. One vTPM runs TPM2_Create of RSA-2048 keys — or
 * TPM2_CreatePrimary of RSA-2048 storage keys, each from another template, so each is derived —
 * back to back while N others run PCR_Extend. Each is measured twice in the same process: with the
 * keys made inline on the main thread (what an engine without an RSA key pool does) and made off
 * it (what every vTPM device model does: fresh keys from the pool in
 * src/tpm/crypto/rsa-key-pool.ts, derived keys with their candidates tested on libuv's threads).
 * Reports the key command's rate and latency, and the other vTPMs' PCR_Extend rate and latency
 * from each command's arrival: what one guest making keys costs every other guest. Models persist
 * nothing here, so the figures are the keys' and the engine's, not the PSS's; each command is
 * issued from an event of its own, as commands arriving on sockets are.
 *
 *   node --import tsx bench/rsa-keys.ts [--others 16] [--seconds 5] [--json]
 */
import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Tpm2Client } from '../src/hwtpm/tpm2-client.ts';
import { srkTemplate } from '../src/hwtpm/tpm2-templates.ts';
import { RsaKeyPool } from '../src/tpm/crypto/rsa-key-pool.ts';
import { ALG, RH } from '../src/tpm/tpm2/constants.ts';
import { NULL_SCHEME, NULL_SYM } from '../src/tpm/tpm2/types/public-parms.ts';
import { OBJECT_ATTR as A, type Public } from '../src/tpm/tpm2/types/public.ts';
import { Tpm2VtpmModel } from '../src/vtpm/tpm2-model.ts';
import { describeMachine } from './lib/machine.ts';
import { percentile } from './lib/stats.ts';

const { values } = parseArgs({
  options: {
    others: { type: 'string', default: '16' },
    seconds: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
  },
});
const others = Number(values.others);
const seconds = Number(values.seconds);
if (!Number.isInteger(others) || others < 1 || !(seconds > 0)) throw new RangeError('--others must be a positive integer and --seconds positive');

const RSA_2048: Public = {
  type: ALG.RSA,
  nameAlg: ALG.SHA256,
  objectAttributes: A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.decrypt | A.sign,
  authPolicy: Buffer.alloc(0),
  parameters: { type: ALG.RSA, symmetric: NULL_SYM, scheme: NULL_SCHEME, keyBits: 2048, exponent: 0 },
  unique: { rsa: Buffer.alloc(0) },
};

type Command = 'Create' | 'CreatePrimary';

interface Row {
  readonly command: Command;
  readonly keys: 'inline' | 'off-thread';
  readonly perSecond: number;
  readonly latencyMs: { p50: number; p99: number };
  readonly extendsPerSecond: number;
  readonly extendMs: { p50: number; p99: number; max: number };
}

async function started(rsaKeys: RsaKeyPool | undefined): Promise<Tpm2Client> {
  const model = await Tpm2VtpmModel.create(async () => undefined, { rsaKeys });
  const tpm = new Tpm2Client((c) => model.execute(c, 0));
  await tpm.startup();
  return tpm;
}

/** A storage-key template whose unique field makes it a template of its own, so its primary is derived anew. */
function primaryTemplate(i: number): Public {
  const unique = Buffer.alloc(256);
  createHash('sha256').update(`bench rsa-keys ${i}`).digest().copy(unique);
  return { ...srkTemplate(), unique: { rsa: unique } };
}

/** Resolves on the next turn of the event loop: a command arriving. */
const arrival = () => new Promise((r) => setImmediate(r));

async function measure(command: Command, keys: Row['keys']): Promise<Row> {
  const pool = keys === 'off-thread' ? new RsaKeyPool() : undefined;
  const creator = await started(pool);
  const srk = (await creator.createPrimary(RH.OWNER, srkTemplate())).handle;
  const extenders = await Promise.all(Array.from({ length: others }, () => started(pool)));
  const until = performance.now() + seconds * 1000;
  const made: number[] = [];
  const extendsMs: number[] = [];
  const digests = [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 7) }];
  await Promise.all([
    (async () => {
      for (let i = 0; performance.now() < until; i++) {
        const t = performance.now();
        await arrival();
        if (command === 'Create') await creator.create(srk, RSA_2048);
        else {
          const { handle } = await creator.createPrimary(RH.OWNER, primaryTemplate(i));
          made.push(performance.now() - t);
          await creator.flushContext(handle);
          continue;
        }
        made.push(performance.now() - t);
      }
    })(),
    ...extenders.map(async (tpm) => {
      while (performance.now() < until) {
        const t = performance.now();
        await arrival();
        await tpm.pcrExtend(16, digests);
        extendsMs.push(performance.now() - t);
      }
    }),
  ]);
  made.sort((a, b) => a - b);
  extendsMs.sort((a, b) => a - b);
  return {
    command,
    keys,
    perSecond: made.length / seconds,
    latencyMs: { p50: percentile(made, 50), p99: percentile(made, 99) },
    extendsPerSecond: extendsMs.length / seconds,
    extendMs: { p50: percentile(extendsMs, 50), p99: percentile(extendsMs, 99), max: extendsMs[extendsMs.length - 1]! },
  };
}

const log = (m: string) => process.stderr.write(`${m}\n`);
const rows: Row[] = [];
for (const command of ['Create', 'CreatePrimary'] as const) {
  for (const keys of ['inline', 'off-thread'] as const) {
    log(`one vTPM running ${command} of RSA-2048 keys made ${keys}, ${others} extending…`);
    rows.push(await measure(command, keys));
  }
}
const machine = describeMachine();
if (values.json) process.stdout.write(`${JSON.stringify({ machine, others, seconds, rows }, null, 2)}\n`);
else {
  const f = (n: number) => n.toFixed(n < 10 ? 2 : 1);
  console.log(`RSA-2048 keys in one vTPM, PCR_Extend in ${others} others, ${seconds} s each — ${machine.cpuModel}, ${machine.availableParallelism} cores, Node ${machine.node}`);
  console.log('command        keys made    per s   p50 / p99 ms   others PCR_Extend/s  their p50 / p99 / max ms');
  for (const r of rows) {
    const latency = `${f(r.latencyMs.p50)} / ${f(r.latencyMs.p99)}`;
    const theirs = `${f(r.extendMs.p50)} / ${f(r.extendMs.p99)} / ${f(r.extendMs.max)}`;
    console.log(`${r.command.padEnd(13)}  ${r.keys.padEnd(10)}  ${f(r.perSecond).padStart(6)}  ${latency.padStart(13)}   ${Math.round(r.extendsPerSecond).toString().padStart(19)}  ${theirs.padStart(24)}`);
  }
}
