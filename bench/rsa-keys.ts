/**
 * Fresh RSA keys and the vTPMs around them. One vTPM runs TPM2_Create of RSA-2048 keys back to
 * back while N others run PCR_Extend; measured twice in the same process: with keys made inline
 * on the main thread (what an engine without a pool does) and with the RSA key pool
 * (src/tpm/crypto/rsa-key-pool.ts, what every vTPM device model uses), which makes them on
 * libuv's threads. Reports the Create rate and latency, and the other vTPMs' PCR_Extend rate and
 * latency: what one guest making keys costs every other guest. Models persist nothing here, so
 * the figures are the key generation and the engine's, not the PSS's; each command is issued from
 * an event of its own, as commands arriving on sockets are.
 *
 *   node --import tsx bench/rsa-keys.ts [--others 16] [--seconds 5] [--json]
 */
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

interface Row {
  readonly mode: 'inline' | 'pool';
  readonly createsPerSecond: number;
  readonly createMs: { p50: number; p99: number };
  readonly extendsPerSecond: number;
  readonly extendMs: { p50: number; p99: number; max: number };
}

async function started(rsaKeys: RsaKeyPool | undefined): Promise<Tpm2Client> {
  const model = await Tpm2VtpmModel.create(async () => undefined, { rsaKeys });
  const tpm = new Tpm2Client((c) => model.execute(c, 0));
  await tpm.startup();
  return tpm;
}

async function measure(mode: Row['mode']): Promise<Row> {
  const pool = mode === 'pool' ? new RsaKeyPool() : undefined;
  const creator = await started(pool);
  const srk = (await creator.createPrimary(RH.OWNER, srkTemplate())).handle;
  const extenders = await Promise.all(Array.from({ length: others }, () => started(pool)));
  const until = performance.now() + seconds * 1000;
  const creates: number[] = [];
  const extendsMs: number[] = [];
  const digests = [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 7) }];
  await Promise.all([
    (async () => {
      while (performance.now() < until) {
        const t = performance.now();
        await new Promise((r) => setImmediate(r));
        await creator.create(srk, RSA_2048);
        creates.push(performance.now() - t);
      }
    })(),
    ...extenders.map(async (tpm) => {
      while (performance.now() < until) {
        // Each command arrives as its own event, as a guest's do over a socket, and waits for the
        // thread from then on.
        const t = performance.now();
        await new Promise((r) => setImmediate(r));
        await tpm.pcrExtend(16, digests);
        extendsMs.push(performance.now() - t);
      }
    }),
  ]);
  creates.sort((a, b) => a - b);
  extendsMs.sort((a, b) => a - b);
  return {
    mode,
    createsPerSecond: creates.length / seconds,
    createMs: { p50: percentile(creates, 50), p99: percentile(creates, 99) },
    extendsPerSecond: extendsMs.length / seconds,
    extendMs: { p50: percentile(extendsMs, 50), p99: percentile(extendsMs, 99), max: extendsMs[extendsMs.length - 1]! },
  };
}

const log = (m: string) => process.stderr.write(`${m}\n`);
const rows: Row[] = [];
for (const mode of ['inline', 'pool'] as const) {
  log(`one vTPM creating RSA-2048 keys, ${others} extending, keys made ${mode === 'pool' ? 'by the pool' : 'inline'}…`);
  rows.push(await measure(mode));
}
const machine = describeMachine();
if (values.json) process.stdout.write(`${JSON.stringify({ machine, others, seconds, rows }, null, 2)}\n`);
else {
  const f = (n: number) => n.toFixed(n < 10 ? 2 : 1);
  console.log(`RSA-2048 keys in one vTPM, PCR_Extend in ${others} others, ${seconds} s — ${machine.cpuModel}, ${machine.availableParallelism} cores, Node ${machine.node}`);
  console.log('keys made   Create/s  Create p50 / p99 ms   others PCR_Extend/s  their p50 / p99 / max ms');
  for (const r of rows) {
    console.log(
      `${r.mode.padEnd(10)}  ${f(r.createsPerSecond).padStart(8)}  ${`${f(r.createMs.p50)} / ${f(r.createMs.p99)}`.padStart(19)}   ${Math.round(r.extendsPerSecond).toString().padStart(19)}  ${`${f(r.extendMs.p50)} / ${f(r.extendMs.p99)} / ${f(r.extendMs.max)}`.padStart(24)}`,
    );
  }
}
