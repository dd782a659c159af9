import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import pino from 'pino';
import { BlobKey, blobId, parseBlob, type HeaderFields } from '../../src/pss/blob.ts';
import { BlobSealer, type SealedBlob } from '../../src/pss/blob-sealer.ts';
import { recordDigest } from '../../src/pss/integrity.ts';
import { encodeRecord, KEY as KEY_OF } from '../../src/pss/records.ts';

const STORAGE_KEY = randomBytes(32);
const KEY = new BlobKey(STORAGE_KEY);
const RECORD_KEY = randomBytes(32);
const PSS_ID = randomBytes(16);
const silent = pino({ enabled: false });

function header(vmId: string, version: number, prevId?: Buffer): HeaderFields {
  return { pssId: PSS_ID, vmId, measurement: Buffer.alloc(32, 5), version, nonce: randomBytes(32), ...(prevId ? { prevId } : {}) };
}

/** What sealing on this thread makes of the same save: XAES is deterministic in its nonce. */
function expected(h: HeaderFields, body: Buffer): { blob: Buffer; id: Buffer; record: Buffer; digest: Buffer } {
  const blob = KEY.seal(h, body);
  const id = blobId(blob);
  const record = encodeRecord({ vmId: h.vmId, measurement: h.measurement, version: h.version, base: 1, blobId: id, nonce: h.nonce });
  return { blob, id, record, digest: recordDigest(RECORD_KEY, KEY_OF.record(h.vmId), record) };
}

/** Seals `rounds` saves of each VM, each after the first a delta naming its predecessor's id. */
function sealChains(sealer: BlobSealer, vms: number, rounds: number) {
  const made: { h: HeaderFields; body: Buffer; s: SealedBlob }[] = [];
  const last = new Map<string, SealedBlob>();
  for (let r = 1; r <= rounds; r++) {
    for (let v = 0; v < vms; v++) {
      const vmId = `vm-${v}`;
      const h = header(vmId, r, last.get(vmId)?.id);
      const body = randomBytes(r === 1 ? 3000 : 40 + v);
      const s = sealer.seal(vmId, h, body, 1);
      last.set(vmId, s);
      made.push({ h, body, s });
    }
  }
  return made;
}

describe('blob sealer', () => {
  test('blobs sealed on the worker are byte for byte what this thread makes, chained deltas included', async () => {
    const sealer = new BlobSealer(KEY, STORAGE_KEY, RECORD_KEY, 'always', silent);
    try {
      // Two saves of each VM before any completes: the second's header names the first's id,
      // whose bytes only the worker's answer provides.
      const made = sealChains(sealer, 40, 2);
      assert.ok(made.every((m) => m.s.done), 'every blob went to the worker');
      assert.ok(sealer.pending('vm-0'));
      await Promise.all(made.map((m) => m.s.done));
      assert.equal(sealer.pending('vm-0'), undefined);
      for (const { h, body, s } of made) {
        const want = expected(h, body);
        assert.ok(s.blob.equals(want.blob), `blob of ${h.vmId} version ${h.version}`);
        assert.ok(s.id.equals(want.id));
        assert.ok(s.record.bytes!.equals(want.record), 'the record the commit would encode');
        assert.ok(s.record.digest!.equals(want.digest));
      }
      // A delta's header names its predecessor's final id, not the placeholder it held while sealing.
      const second = made.find((m) => m.h.vmId === 'vm-3' && m.h.version === 2)!;
      const first = made.find((m) => m.h.vmId === 'vm-3' && m.h.version === 1)!;
      assert.ok(second.h.prevId!.equals(blobId(first.s.blob)));
      const parsed = parseBlob(second.s.blob)!;
      assert.ok(parsed.header.prevId!.equals(first.s.id));
      assert.ok(KEY.open(parsed)!.equals(second.body));
    } finally {
      await sealer.close();
    }
  });

  test("'never' and 'auto' before a crowd seal at once, on this thread", async () => {
    for (const mode of ['never', 'auto'] as const) {
      const sealer = new BlobSealer(KEY, STORAGE_KEY, RECORD_KEY, mode, silent);
      const h = header('vm-a', 1);
      const body = randomBytes(100);
      const s = sealer.seal('vm-a', h, body, 1);
      assert.equal(s.done, undefined);
      assert.ok(s.blob.equals(expected(h, body).blob));
      await sealer.close();
    }
  });

  test("'auto' seals on the worker while commit windows are crowded, and here for a lone saver", async () => {
    const sealer = new BlobSealer(KEY, STORAGE_KEY, RECORD_KEY, 'auto', silent);
    try {
      const inside = sealer as unknown as { ready: boolean };
      sealer.crowded(false);
      assert.equal(sealer.seal('vm-a', header('vm-a', 1), Buffer.alloc(64), 1).done, undefined);
      sealer.crowded(true);
      for (let waited = 0; !inside.ready; waited++) {
        assert.ok(waited < 2000, 'the worker never became ready');
        await new Promise((r) => setTimeout(r, 5));
      }
      const made = sealChains(sealer, 10, 2);
      assert.ok(made.every((m) => m.s.done));
      await Promise.all(made.map((m) => m.s.done));
      for (const { h, body, s } of made) assert.ok(s.blob.equals(expected(h, body).blob));
      sealer.crowded(false);
      const h = header('vm-b', 1);
      const lone = sealer.seal('vm-b', h, Buffer.alloc(64), 1);
      assert.equal(lone.done, undefined);
      assert.ok(lone.blob.equals(expected(h, Buffer.alloc(64)).blob));
    } finally {
      await sealer.close();
    }
  });

  test('when the worker dies with blobs in hand, they are sealed here and nothing is lost', async () => {
    const warnings: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void warnings.push(line) });
    const sealer = new BlobSealer(KEY, STORAGE_KEY, RECORD_KEY, 'always', log);
    try {
      const made = sealChains(sealer, 200, 3);
      // Kill the worker once it holds a message this thread has no answer to yet.
      const inside = sealer as unknown as { sent: unknown[]; worker: { terminate(): Promise<number> } };
      for (let waited = 0; inside.sent.length === 0; waited++) {
        assert.ok(waited < 2000, 'the worker never got a message');
        await new Promise((r) => setTimeout(r, 5));
      }
      await inside.worker.terminate();
      await Promise.all(made.map((m) => m.s.done));
      for (const { h, body, s } of made) assert.ok(s.blob.equals(expected(h, body).blob), `blob of ${h.vmId} version ${h.version}`);
      assert.equal(warnings.length, 1);
      assert.match(warnings[0]!, /sealing thread stopped/);
      assert.ok(!warnings[0]!.includes(STORAGE_KEY.toString('hex')));
      // Later blobs are sealed here, at once.
      const h = header('vm-late', 1);
      assert.equal(sealer.seal('vm-late', h, Buffer.alloc(10), 1).done, undefined);
    } finally {
      await sealer.close();
    }
  });
});
