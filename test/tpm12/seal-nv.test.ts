import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ownedTpm, OWNER_AUTH, SRK_AUTH } from '../helpers/tpm12-engine.ts';
import { KH, NV_PER, PP, STAG } from '../../src/tpm/tpm12/constants.ts';
import { RC } from '../../src/tpm/tpm12/rc.ts';
import { Tpm12ResponseError } from '../../src/tpm/tpm12/client/index.ts';
import { pcrInfoLongFor, sha1 } from '../../src/tpm/tpm12/client/helpers.ts';
import type { NvDataPublic } from '../../src/tpm/tpm12/structures/nv.ts';

const rejectsWith = (rc: number) => (e: unknown) => e instanceof Tpm12ResponseError && e.rc === rc;
const DATA_AUTH = sha1(Buffer.from('data'));

test('sealed data comes back only with its auth value and untampered', async () => {
  const t = await ownedTpm();
  const blob = await t.client.seal(KH.SRK, SRK_AUTH, DATA_AUTH, Buffer.from('disk key'));
  assert.equal((await t.client.unseal(KH.SRK, SRK_AUTH, DATA_AUTH, blob)).toString(), 'disk key');
  await assert.rejects(t.client.unseal(KH.SRK, SRK_AUTH, sha1(Buffer.from('x')), blob), rejectsWith(RC.AUTH2FAIL));
  const bad = Buffer.from(blob.encData);
  bad[5]! ^= 1;
  await assert.rejects(t.client.unseal(KH.SRK, SRK_AUTH, DATA_AUTH, { ...blob, encData: bad }), rejectsWith(RC.NOTSEALED_BLOB));
});

test('data sealed to a PCR unseals until the PCR is extended', async () => {
  const t = await ownedTpm();
  const blob = await t.client.seal(KH.SRK, SRK_AUTH, DATA_AUTH, Buffer.from('x'), pcrInfoLongFor([8], [await t.client.pcrRead(8)]));
  assert.equal(blob.data12, true);
  await t.client.unseal(KH.SRK, SRK_AUTH, DATA_AUTH, blob);
  await t.client.extend(8, Buffer.alloc(20, 1));
  await assert.rejects(t.client.unseal(KH.SRK, SRK_AUTH, DATA_AUTH, blob), rejectsWith(RC.WRONGPCRVAL));
});

test('data sealed before OwnerClear cannot be unsealed by the next owner', async () => {
  const t = await ownedTpm();
  const blob = await t.client.seal(KH.SRK, SRK_AUTH, DATA_AUTH, Buffer.from('x'));
  await t.client.ownerClear(OWNER_AUTH);
  assert.equal(t.engine.nv.owner, null);
  await assert.rejects(t.client.takeOwnership(OWNER_AUTH, SRK_AUTH), rejectsWith(RC.DISABLED));
  // Physical presence re-enables and re-activates the cleared TPM.
  await t.client.physicalPresence(PP.CMD_ENABLE);
  await t.client.physicalPresence(PP.PRESENT);
  await t.client.physicalEnable();
  await t.client.physicalSetDeactivated(false);
  await t.client.takeOwnership(OWNER_AUTH, SRK_AUTH);
  await assert.rejects(t.client.unseal(KH.SRK, SRK_AUTH, DATA_AUTH, blob), rejectsWith(RC.NOTSEALED_BLOB));
});

function area(index: number, attributes: number, dataSize: number): NvDataPublic {
  const short = { pcrSelection: Buffer.alloc(3), localityAtRelease: 0x1f, digestAtRelease: Buffer.alloc(20) };
  return { tag: STAG.NV_DATA_PUBLIC, nvIndex: index, pcrInfoRead: short, pcrInfoWrite: short, permission: { tag: STAG.NV_ATTRIBUTES, attributes }, bReadSTClear: false, bWriteSTClear: false, bWriteDefine: false, dataSize };
}

test('once NV is locked, owner-only areas need the owner and auth areas their own auth value', async () => {
  const t = await ownedTpm();
  await t.client.nvDefineSpace(area(0xffffffff, 0, 0), Buffer.alloc(20), OWNER_AUTH);
  assert.equal((await t.client.permanentFlags()).nvLocked, true);
  await t.client.nvDefineSpace(area(0x00011000, NV_PER.OWNERWRITE | NV_PER.OWNERREAD, 8), Buffer.alloc(20), OWNER_AUTH);
  await assert.rejects(t.client.nvWriteValue(0x00011000, 0, Buffer.from('abcd'), null), rejectsWith(RC.AUTH_CONFLICT));
  await t.client.nvWriteValue(0x00011000, 0, Buffer.from('abcd'), OWNER_AUTH);
  assert.equal((await t.client.nvReadValue(0x00011000, 0, 4, OWNER_AUTH)).toString(), 'abcd');
  const areaAuth = sha1(Buffer.from('area'));
  await t.client.nvDefineSpace(area(0x00011001, NV_PER.AUTHWRITE | NV_PER.AUTHREAD, 4), areaAuth, OWNER_AUTH);
  await t.client.nvWriteValueAuth(0x00011001, 0, Buffer.from('wxyz'), areaAuth);
  assert.equal((await t.client.nvReadValueAuth(0x00011001, 0, 4, areaAuth)).toString(), 'wxyz');
  await assert.rejects(t.client.nvReadValueAuth(0x00011001, 0, 4, OWNER_AUTH), rejectsWith(RC.AUTHFAIL));
  await assert.rejects(t.client.nvReadValue(0x00011001, 0, 4, null), rejectsWith(RC.AUTH_CONFLICT));
  await assert.rejects(t.client.nvReadValueAuth(0x00011001, 2, 4, areaAuth), rejectsWith(RC.NOSPACE));
});

test('a WRITEDEFINE area locks for good after a zero-length write', async () => {
  const t = await ownedTpm();
  await t.client.nvDefineSpace(area(0xffffffff, 0, 0), Buffer.alloc(20), OWNER_AUTH);
  await t.client.nvDefineSpace(area(0x00011002, NV_PER.OWNERWRITE | NV_PER.WRITEDEFINE, 4), Buffer.alloc(20), OWNER_AUTH);
  await t.client.nvWriteValue(0x00011002, 0, Buffer.from('1234'), OWNER_AUTH);
  await t.client.nvWriteValue(0x00011002, 0, Buffer.alloc(0), OWNER_AUTH);
  await assert.rejects(t.client.nvWriteValue(0x00011002, 0, Buffer.from('5678'), OWNER_AUTH), rejectsWith(RC.AREA_LOCKED));
  assert.equal((await t.client.nvReadValue(0x00011002, 0, 4, null)).toString(), '1234');
});
