import { hash, createHash } from 'node:crypto';
import { sha256 } from '@noble/hashes/sha2.js';
const b = Buffer.alloc(64, 7);
function t(name: string, f: () => unknown) {
  for (let r = 0; r < 3; r++) {
    const N = 1_000_000; const t0 = process.hrtime.bigint();
    for (let i = 0; i < N; i++) f();
    const dt = Number(process.hrtime.bigint() - t0);
    if (r === 2) console.log(name, (dt / N).toFixed(0), 'ns');
  }
}
t('crypto.hash buffer', () => hash('sha256', b, 'buffer'));
t('createHash', () => createHash('sha256').update(b).digest());
t('noble sha256', () => sha256(b));
const h = sha256.create();
t('noble clone', () => { const c = h.clone(); c.update(b); return c.digest(); });
