import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { OWNER_AUTH, SRK_AUTH, pinnedEntropy, pooledKeys } from '../helpers/tpm12-engine.ts';
import { openTpm12Device, TPM12_STATE_FILE, type Tpm12Device } from '../../src/tpm/tpm12/device.ts';
import { Tpm12Client, Tpm12ResponseError } from '../../src/tpm/tpm12/client/index.ts';
import { sha1 } from '../../src/tpm/tpm12/client/helpers.ts';
import { ST } from '../../src/tpm/tpm12/constants.ts';
import { RC, Tpm12StateError } from '../../src/tpm/tpm12/rc.ts';

function open(dir: string): { device: Tpm12Device; client: Tpm12Client } {
  const device = openTpm12Device(dir, { entropy: pinnedEntropy(dir), rsaKeyGen: pooledKeys(1) });
  return { device, client: new Tpm12Client((c) => device.execute(c, 0), { random: pinnedEntropy('c' + dir) }) };
}

function withDir(fn: (dir: string) => Promise<void>): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vtpmd-tpm12-state-'));
    try {
      await fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

test(
  'the owner, EK and counters survive reopening the state directory, and counters only go up',
  withDir(async (dir) => {
    const a = open(dir);
    await a.client.startup(ST.CLEAR);
    const ek = await a.client.readPubek();
    await a.client.takeOwnership(OWNER_AUTH, SRK_AUTH, ek);
    const auth = sha1(Buffer.from('ctr'));
    const { countID } = await a.client.createCounter(OWNER_AUTH, auth, Buffer.from('BOOT'));
    const v1 = (await a.client.incrementCounter(countID, auth)).counter;
    const b = open(dir);
    await b.client.startup(ST.CLEAR);
    assert.equal((await b.client.readCounter(countID)).counter, v1);
    assert.deepEqual((await b.client.getPubKey(0x40000000, SRK_AUTH)).pubKey.length, 256);
    const v2 = (await b.client.incrementCounter(countID, auth)).counter;
    assert.equal(v2, v1 + 1);
    await b.device.powerOff();
    await b.device.powerOn();
    await b.client.startup(ST.CLEAR);
    assert.equal((await b.client.incrementCounter(countID, auth)).counter, v2 + 1);
  }),
);

test(
  'only one counter may be incremented between two TPM_Startup(ST_CLEAR)',
  withDir(async (dir) => {
    const a = open(dir);
    await a.client.startup(ST.CLEAR);
    await a.client.takeOwnership(OWNER_AUTH, SRK_AUTH);
    const auth = sha1(Buffer.from('ctr'));
    const c1 = await a.client.createCounter(OWNER_AUTH, auth, Buffer.from('AAAA'));
    const c2 = await a.client.createCounter(OWNER_AUTH, auth, Buffer.from('BBBB'));
    assert.ok(c2.value.counter > c1.value.counter);
    await a.client.incrementCounter(c1.countID, auth);
    await assert.rejects(a.client.incrementCounter(c2.countID, auth), (e) => e instanceof Tpm12ResponseError && e.rc === RC.BAD_COUNTER);
  }),
);

test(
  'a torn or corrupted state file is reported when the TPM is opened, and left in place',
  withDir(async (dir) => {
    const a = open(dir);
    await a.client.startup(ST.CLEAR);
    const path = join(dir, TPM12_STATE_FILE);
    const good = readFileSync(path);
    writeFileSync(path, good.subarray(0, good.length >> 1));
    assert.throws(() => open(dir), (e) => e instanceof Tpm12StateError && /torn/.test(e.message) && e.message.includes(path));
    assert.equal(readFileSync(path).length, good.length >> 1);
    const flipped = Buffer.from(good);
    flipped[flipped.indexOf('"ownership":true')] = 0x27;
    writeFileSync(path, good.toString().replace('"ownership":true', '"ownership":false'));
    assert.throws(() => open(dir), (e) => e instanceof Tpm12StateError && /checksum/.test(e.message));
    writeFileSync(path, good.toString().replace('"version":1', '"version":9'));
    assert.throws(() => open(dir), (e) => e instanceof Tpm12StateError && /version 9/.test(e.message));
  }),
);
