import assert from 'node:assert/strict';
import { test } from 'node:test';
import { frame, makeTpm, ownedTpm, OWNER_AUTH, rcOf, SRK_AUTH } from '../helpers/tpm12-engine.ts';
import { ET, KH, ORD, TAG } from '../../src/tpm/tpm12/constants.ts';
import { RC } from '../../src/tpm/tpm12/rc.ts';
import { Tpm12ResponseError } from '../../src/tpm/tpm12/client/index.ts';
import { sha1 } from '../../src/tpm/tpm12/client/helpers.ts';

const C1 = TAG.RQU_COMMAND;
const rejectsWith = (rc: number) => (e: unknown) => e instanceof Tpm12ResponseError && e.rc === rc;

test('every command but TPM_Startup answers TPM_INVALID_POSTINIT before TPM_Startup', () => {
  const t = makeTpm({ started: false });
  assert.equal(rcOf(t.raw(frame(C1, ORD.PCRRead, '00000000'))), RC.INVALID_POSTINIT);
  assert.equal(rcOf(t.raw(frame(C1, ORD.Startup, '0001'))), RC.SUCCESS);
  assert.equal(rcOf(t.raw(frame(C1, ORD.PCRRead, '00000000'))), RC.SUCCESS);
  assert.equal(rcOf(t.raw(frame(C1, ORD.Startup, '0001'))), RC.INVALID_POSTINIT);
});

test('malformed frames get TPM_BADTAG, TPM_BAD_PARAM_SIZE and TPM_BAD_ORDINAL as 10-byte responses', () => {
  const t = makeTpm();
  const cases: [Buffer, number][] = [
    [frame(0x8001, ORD.PCRRead, '00000000'), RC.BADTAG],
    [frame(C1, ORD.PCRRead, '000000'), RC.BAD_PARAM_SIZE],
    [Buffer.from('00c1000000', 'hex'), RC.BAD_PARAM_SIZE],
    [Buffer.from('00c10000000e00000015000000', 'hex'), RC.BAD_PARAM_SIZE],
    [frame(C1, 0x7777), RC.BAD_ORDINAL],
    [frame(TAG.RQU_AUTH2_COMMAND, ORD.Extend, '00000000' + '00'.repeat(20)), RC.BADTAG],
  ];
  for (const [cmd, rc] of cases) {
    const rsp = t.raw(cmd);
    assert.equal(rsp.length, 10);
    assert.equal(rsp.readUInt16BE(0), TAG.RSP_COMMAND);
    assert.equal(rcOf(rsp), rc, cmd.toString('hex'));
  }
});

test('a wrong owner HMAC is TPM_AUTHFAIL and ends the session', async () => {
  const t = await ownedTpm();
  const s = await t.client.oiap();
  await assert.rejects(
    t.client.run({ name: 'TPM_DirWriteAuth', ordinal: ORD.DirWriteAuth, params: Buffer.alloc(24), auths: [{ session: s, auth: sha1(Buffer.from('wrong')), continueSession: true }] }),
    rejectsWith(RC.AUTHFAIL),
  );
  await assert.rejects(
    t.client.run({ name: 'TPM_DirWriteAuth', ordinal: ORD.DirWriteAuth, params: Buffer.alloc(24), auths: [{ session: s, auth: OWNER_AUTH }] }),
    rejectsWith(RC.INVALID_AUTHHANDLE),
  );
});

test('a continued OIAP session rolls its nonces across commands', async () => {
  const t = await ownedTpm();
  const s = await t.client.oiap();
  const first = s.nonceEven;
  for (let i = 0; i < 3; i++) {
    await t.client.run({ name: 'TPM_DirWriteAuth', ordinal: ORD.DirWriteAuth, params: Buffer.concat([Buffer.alloc(4), Buffer.alloc(20, i)]), auths: [{ session: s, auth: OWNER_AUTH, continueSession: true }] });
  }
  assert.ok(s.open);
  assert.notDeepEqual(s.nonceEven, first);
  assert.deepEqual(await t.client.dirRead(0), Buffer.alloc(20, 2));
});

test('an OSAP session opened for the SRK cannot authorize the owner', async () => {
  const t = await ownedTpm();
  const s = await t.client.osap(ET.SRK, KH.SRK, SRK_AUTH);
  await assert.rejects(
    t.client.run({ name: 'TPM_DirWriteAuth', ordinal: ORD.DirWriteAuth, params: Buffer.alloc(24), auths: [{ session: s, auth: OWNER_AUTH }] }),
    rejectsWith(RC.AUTHFAIL),
  );
});

test('an unknown authorization handle is TPM_INVALID_AUTHHANDLE', async () => {
  const t = await ownedTpm();
  const cmd = frame(TAG.RQU_AUTH1_COMMAND, ORD.DirWriteAuth, '00000000' + '00'.repeat(20) + '0abcdef0' + '00'.repeat(20) + '00' + '00'.repeat(20));
  assert.equal(rcOf(t.raw(cmd)), RC.INVALID_AUTHHANDLE);
});

test('session slots run out with TPM_RESOURCES and FlushSpecific frees one', async () => {
  const t = makeTpm({ sessionSlots: 2 });
  const a = await t.client.oiap();
  await t.client.oiap();
  await assert.rejects(t.client.oiap(), rejectsWith(RC.RESOURCES));
  await t.client.flushSpecific(a.handle, 2);
  await t.client.oiap();
});

test('a powered-off device answers every command with TPM_FAIL', async () => {
  const t = makeTpm();
  await t.device.powerOff();
  assert.equal(rcOf(t.raw(frame(C1, ORD.PCRRead, '00000000'))), RC.FAIL);
  await t.device.powerOn();
  assert.equal(rcOf(t.raw(frame(C1, ORD.PCRRead, '00000000'))), RC.INVALID_POSTINIT);
});
