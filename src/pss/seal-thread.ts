/**
 * The sealing thread (blob-sealer.ts): seals each message's blobs under the storage key it was
 * started with, encodes each save's record with its keyed digest, and answers in order.
 *
 * A message: u32 count, then per save u32 header length, u32 body length, f64 the record's chain
 * base, the header (as encodeHeader made it), the body. The answer, per save: the blob, its id,
 * u32 record length, the record, its digest.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { blobId, BlobKey, parseBlob } from './blob.ts';
import { recordDigest } from './integrity.ts';
import { encodeRecord, KEY } from './records.ts';

const port = parentPort!;
const keys = workerData as { storageKey: Uint8Array; recordKey: Uint8Array };
const blobKey = new BlobKey(Buffer.from(keys.storageKey));
const recordKey = Buffer.from(keys.recordKey);

port.on('message', (message: ArrayBuffer) => {
  const input = Buffer.from(message);
  const count = input.readUInt32LE(0);
  let at = 4;
  const out: Buffer[] = [];
  let size = 0;
  for (let i = 0; i < count; i++) {
    const headerLength = input.readUInt32LE(at);
    const bodyLength = input.readUInt32LE(at + 4);
    const base = input.readDoubleLE(at + 8);
    at += 16;
    const header = input.subarray(at, (at += headerLength));
    const blob = blobKey.sealEncoded(header, input.subarray(at, (at += bodyLength)));
    const id = blobId(blob);
    const h = parseBlob(blob)!.header;
    const record = encodeRecord({ vmId: h.vmId, measurement: h.measurement, version: h.version, base, blobId: id, nonce: h.nonce });
    const length = Buffer.allocUnsafe(4);
    length.writeUInt32LE(record.length);
    const parts = [blob, id, length, record, recordDigest(recordKey, KEY.record(h.vmId), record)];
    out.push(...parts);
    for (const p of parts) size += p.length;
  }
  const reply = Buffer.allocUnsafeSlow(size);
  let to = 0;
  for (const b of out) to += b.copy(reply, to);
  port.postMessage(reply.buffer, [reply.buffer]);
});
port.postMessage('ready');
