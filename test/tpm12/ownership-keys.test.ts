import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeTpm, ownedTpm, OWNER_AUTH, SRK_AUTH } from '../helpers/tpm12-engine.ts';
import { CAP_PROP, KEY_USAGE, KH, RT } from '../../src/tpm/tpm12/constants.ts';
import { RC } from '../../src/tpm/tpm12/rc.ts';
import { Tpm12ResponseError } from '../../src/tpm/tpm12/client/index.ts';
import { pcrInfoLongFor, sha1, verifyDigestSignature, verifySha1Signature } from '../../src/tpm/tpm12/client/helpers.ts';

const rejectsWith = (rc: number) => (e: unknown) => e instanceof Tpm12ResponseError && e.rc === rc;
const KEY_AUTH = sha1(Buffer.from('key'));

test('TakeOwnership installs an owner once and hides the public EK', async () => {
  const t = await ownedTpm();
  assert.equal((await t.client.getCapability(5, Buffer.from('00000111', 'hex')))[0], 1);
  await assert.rejects(t.client.takeOwnership(OWNER_AUTH, SRK_AUTH), (e) => e instanceof Tpm12ResponseError);
  await assert.rejects(t.client.readPubek(), rejectsWith(RC.DISABLED_CMD));
});

test('OwnerClear removes the owner and leaves the TPM disabled and deactivated', async () => {
  const t = await ownedTpm();
  await assert.rejects(t.client.ownerClear(sha1(Buffer.from('wrong'))), rejectsWith(RC.AUTHFAIL));
  await t.client.ownerClear(OWNER_AUTH);
  const f = await t.client.permanentFlags();
  assert.deepEqual([f.disable, f.deactivated, f.readPubek, f.ownership], [true, true, true, true]);
  assert.equal(t.engine.nv.owner, null);
});

test('key slots run out with TPM_NOSPACE and FlushSpecific frees them', async () => {
  const t = await ownedTpm({ keySlots: 2 });
  const blob = await t.client.createWrapKey(KH.SRK, SRK_AUTH, { usage: KEY_USAGE.SIGNING }, KEY_AUTH);
  const a = await t.client.loadKey2(KH.SRK, SRK_AUTH, blob);
  await t.client.loadKey2(KH.SRK, SRK_AUTH, blob);
  assert.equal(await t.client.getProperty(CAP_PROP.KEYS), 0);
  await assert.rejects(t.client.loadKey2(KH.SRK, SRK_AUTH, blob), rejectsWith(RC.NOSPACE));
  await t.client.flushSpecific(a, RT.KEY);
  await assert.rejects(t.client.getPubKey(a, KEY_AUTH), rejectsWith(RC.INVALID_KEYHANDLE));
  await t.client.loadKey2(KH.SRK, SRK_AUTH, blob);
});

test('LoadKey2 refuses a wrapped key whose public part was altered', async () => {
  const t = await ownedTpm();
  const blob = await t.client.createWrapKey(KH.SRK, SRK_AUTH, { usage: KEY_USAGE.SIGNING }, KEY_AUTH);
  await assert.rejects(t.client.loadKey2(KH.SRK, SRK_AUTH, { ...blob, authDataUsage: 0 }), rejectsWith(RC.DECRYPT_ERROR));
  const n = Buffer.from(blob.pubKey);
  n[10]! ^= 1;
  await assert.rejects(t.client.loadKey2(KH.SRK, SRK_AUTH, { ...blob, pubKey: n }), rejectsWith(RC.DECRYPT_ERROR));
});

test('a signing key bound to a PCR signs only while the PCR holds its value', async () => {
  const t = await ownedTpm();
  const info = pcrInfoLongFor([16], [await t.client.pcrRead(16)]);
  const h = await t.client.loadKey2(KH.SRK, SRK_AUTH, await t.client.createWrapKey(KH.SRK, SRK_AUTH, { usage: KEY_USAGE.SIGNING, pcrInfo: info }, KEY_AUTH));
  const pub = await t.client.getPubKey(h, KEY_AUTH);
  const d = sha1(Buffer.from('x'));
  assert.ok(verifyDigestSignature(pub, d, await t.client.sign(h, KEY_AUTH, d)));
  const cert = await t.client.certifyKey(h, KEY_AUTH, h, KEY_AUTH, Buffer.alloc(20, 1));
  assert.equal(cert.certifyInfo.readUInt16BE(0), 0x0029);
  assert.ok(verifySha1Signature(pub, cert.certifyInfo, cert.sig));
  await t.client.extend(16, d);
  await assert.rejects(t.client.sign(h, KEY_AUTH, d), rejectsWith(RC.WRONGPCRVAL));
});

test('a key used with the wrong auth value fails with TPM_AUTHFAIL', async () => {
  const t = await ownedTpm();
  const h = await t.client.loadKey2(KH.SRK, SRK_AUTH, await t.client.createWrapKey(KH.SRK, SRK_AUTH, { usage: KEY_USAGE.SIGNING }, KEY_AUTH));
  await assert.rejects(t.client.sign(h, sha1(Buffer.from('no')), Buffer.alloc(20)), rejectsWith(RC.AUTHFAIL));
  await assert.rejects(t.client.sign(h, null, Buffer.alloc(20)), rejectsWith(RC.AUTHFAIL));
});

test('the manufacturer EK certificate is readable at TPM_NV_INDEX_EKCert', async () => {
  const t = makeTpm();
  t.engine.writeEkCertificate(Buffer.from('certificate bytes'));
  assert.equal((await t.client.nvReadValue(0x1000f000, 0, 17, null)).toString(), 'certificate bytes');
});
