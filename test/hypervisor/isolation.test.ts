import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { Hypervisor } from '../../src/hypervisor/hypervisor.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { ALG } from '../../src/tpm/tpm2/constants.ts';
import { Tpm2Device } from '../../src/tpm/tpm2/device.ts';
import { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';

const GUESTS = 5;
const EXTENDS = 12;

/** PCR 16 after extending zero with `digests` in this order. */
function chain(digests: Buffer[]): Buffer {
  let v = Buffer.alloc(32);
  for (const d of digests) v = createHash('sha256').update(v).update(d).digest();
  return v;
}

describe('several simulated guests at once', () => {
  test('each partition sees only its own commands, applied in the order its guest started them', async () => {
    const hv = await Hypervisor.start();
    const names = Array.from({ length: GUESTS }, (_, i) => `guest${i}`);
    for (const name of names) {
      await hv.createPartition(name, { device: new Tpm2Device(new Tpm2Engine()) }, 'destroy', { channels: 4 });
      await hv.startPartition(name);
      await new Tpm2Client((c) => hv.guest(name).transmit(c)).startup();
    }
    const sent = new Map<string, Buffer[]>();
    // Every guest starts all its extends at once, interleaved with every other guest's.
    await Promise.all(
      names.flatMap((name, g) => {
        const tpm = new Tpm2Client((c) => hv.guest(name).transmit(c));
        const digests = Array.from({ length: EXTENDS }, (_, i) => createHash('sha256').update(`${g}:${i}`).digest());
        sent.set(name, digests);
        return digests.map((digest) => tpm.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest }]));
      }),
    );
    for (const name of names) {
      const value = (await new Tpm2Client((c) => hv.guest(name).transmit(c)).pcrRead(ALG.SHA256, [16]))[0]!;
      assert.deepEqual(value, chain(sent.get(name)!), `${name}: exactly its own extends, in the order started`);
    }
    await hv.stop();
  });
});
