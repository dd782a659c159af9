/**
 * The sealing thread (blob-sealer.ts): seals each message's blobs under the storage key it was
 * started with and answers, in order, with each blob followed by its id.
 *
 * A message: u32 count, then per blob u32 header length, u32 body length, the header (as
 * encodeHeader made it), the body.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { blobId, BlobKey } from './blob.ts';

const port = parentPort!;
const key = new BlobKey(Buffer.from((workerData as { storageKey: Uint8Array }).storageKey));

port.on('message', (message: ArrayBuffer) => {
  const input = Buffer.from(message);
  const count = input.readUInt32LE(0);
  let at = 4;
  const out: Buffer[] = [];
  let size = 0;
  for (let i = 0; i < count; i++) {
    const headerLength = input.readUInt32LE(at);
    const bodyLength = input.readUInt32LE(at + 4);
    at += 8;
    const header = input.subarray(at, (at += headerLength));
    const blob = key.sealEncoded(header, input.subarray(at, (at += bodyLength)));
    const id = blobId(blob);
    out.push(blob, id);
    size += blob.length + id.length;
  }
  const reply = Buffer.allocUnsafeSlow(size);
  let to = 0;
  for (const b of out) to += b.copy(reply, to);
  port.postMessage(reply.buffer, [reply.buffer]);
});
port.postMessage('ready');
