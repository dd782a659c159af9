import { startedEngine } from '../bench/lib/in-process.ts';
import { pcrExtendCommand } from '../bench/lib/commands.ts';
import { encodeDelta } from '../src/pss/delta.ts';
import { BlobKey, blobId } from '../src/pss/blob.ts';
import { encodeRecord, KEY } from '../src/pss/records.ts';
import { recordDigest } from '../src/pss/integrity.ts';
import { randomBytes } from 'node:crypto';
const e = startedEngine();
const cmd = pcrExtendCommand(0x0b, 16);
function t(name: string, f: () => unknown, N = 100_000) {
  for (let r = 0; r < 3; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) f();
    const dt = Number(process.hrtime.bigint() - t0);
    if (r === 2) console.log(name.padEnd(20), (dt / N / 1000).toFixed(2), 'µs');
  }
}
let prev = e.snapshot();
console.log('snapshot bytes', prev.length);
t('execute', () => e.execute(cmd, 0));
t('snapshot', () => e.snapshot());
const a = e.snapshot(); e.execute(cmd, 0); const b = e.snapshot();
t('encodeDelta', () => encodeDelta(a, b));
const d = encodeDelta(a, b)!; console.log('delta bytes', d.length);
const key = randomBytes(32), pssId = randomBytes(16), nonce = randomBytes(32), m = randomBytes(32);
const bk = new BlobKey(key);
const hdr = { pssId, vmId: 'vm-17', measurement: m, version: 5, nonce, prevId: randomBytes(32) };
t('sealBlob', () => bk.seal(hdr, d));
const blob = bk.seal(hdr, d);
t('blobId', () => blobId(blob));
const rec = { vmId: 'vm-17', measurement: m, version: 5, base: 1, blobId: blobId(blob), nonce };
t('encodeRecord', () => encodeRecord(rec));
const rb = encodeRecord(rec);
const keys = { record: randomBytes(32), head: randomBytes(32) };
t('recordDigest', () => recordDigest(keys, KEY.record('vm-17'), rb));
t('randomBytes32', () => randomBytes(32));
