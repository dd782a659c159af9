import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frame, makeTpm, rcOf } from '../helpers/tpm12-engine.ts';
import { ORD, ST, TAG } from '../../src/tpm/tpm12/constants.ts';
import { RC } from '../../src/tpm/tpm12/rc.ts';
import { sha1 } from '../../src/tpm/tpm12/client/helpers.ts';

const C1 = TAG.RQU_COMMAND;

test('Extend hashes the old value with the digest', async () => {
  const t = makeTpm();
  const d = sha1(Buffer.from('measurement'));
  assert.deepEqual(await t.client.extend(5, d), sha1(Buffer.alloc(20), d));
  assert.deepEqual(await t.client.pcrRead(5), sha1(Buffer.alloc(20), d));
});

test('the D-RTM PCRs start at all ones and reset to zero only from locality 4', async () => {
  let locality = 0;
  const t = makeTpm({ locality: () => locality });
  assert.deepEqual(await t.client.pcrRead(17), Buffer.alloc(20, 0xff));
  assert.equal(rcOf(t.raw(frame(C1, ORD.PCR_Reset, '0003000002'))), RC.NOTLOCAL);
  assert.equal(rcOf(t.raw(frame(C1, ORD.PCR_Reset, '0003000002'), 4)), RC.SUCCESS);
  locality = 4;
  assert.deepEqual(await t.client.pcrRead(17), Buffer.alloc(20));
  assert.equal(rcOf(t.raw(frame(C1, ORD.PCR_Reset, '0003010000'))), RC.NOTRESETABLE);
  assert.equal(rcOf(t.raw(frame(C1, ORD.Extend, '00000016' + '00'.repeat(20)), 0)), RC.BAD_LOCALITY);
});

test('SaveState then Startup(ST_STATE) restores PCRs, and ST_STATE without saved state fails', async () => {
  const t = makeTpm();
  await t.client.extend(7, Buffer.alloc(20, 7));
  const v = await t.client.pcrRead(7);
  await t.client.saveState();
  t.engine.powerOn();
  await t.client.startup(ST.STATE);
  assert.deepEqual(await t.client.pcrRead(7), v);
  t.engine.powerOn();
  assert.equal(rcOf(t.raw(frame(C1, ORD.Startup, '0002'))), RC.FAIL);
  await t.client.startup(ST.CLEAR);
  assert.deepEqual(await t.client.pcrRead(7), Buffer.alloc(20));
});

test('Startup(ST_DEACTIVATED) leaves the TPM deactivated until the next ST_CLEAR', async () => {
  const t = makeTpm({ started: false });
  await t.client.startup(ST.DEACTIVATED);
  assert.equal(rcOf(t.raw(frame(C1, ORD.GetRandom, '00000008'))), RC.DEACTIVATED);
  assert.equal((await t.client.stclearFlags()).deactivated, true);
  t.engine.powerOn();
  await t.client.startup(ST.CLEAR);
  assert.equal((await t.client.getRandom(8)).length, 8);
});
