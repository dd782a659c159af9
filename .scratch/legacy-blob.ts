import { sealBlob, blobId } from '../src/pss/blob.ts';
const h = { pssId: Buffer.alloc(16, 1), vmId: 'vm-a', measurement: Buffer.alloc(32, 9), version: 3, nonce: Buffer.alloc(32, 0x4e) };
const b = sealBlob(Buffer.alloc(32, 7), h, Buffer.from('an NVM sealed by vtpmd 0.1 (protection 1)'));
console.log(b.toString('hex'));
