import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Tpm2VtpmModel } from '../../src/vtpm/tpm2-model.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { eccSigningTemplate, srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { constants, publicEncrypt } from 'node:crypto';
import { RsaKeyPool } from '../../src/tpm/crypto/rsa-key-pool.ts';
import { OBJECT_ATTR as A } from '../../src/tpm/tpm2/types/public.ts';
import { nodeKey, rsaTemplate } from '../helpers/tpm2-keys.ts';
import { ALG, CC, RH } from '../../src/tpm/tpm2/constants.ts';
import { NV_ATTR } from '../../src/tpm/tpm2/types/nv.ts';
import { stateKeeper } from '../helpers/state-keeper.ts';
import { buildCommand, commandCode, params, parseResponse, tpm2b, u16b, u32b } from '../helpers/tpm2-commands.ts';
import { commandCodePolicy } from '../helpers/tpm2-objects.ts';
import { digestBuf } from '../../src/tpm/tpm2/types/basic.ts';
import { RC } from '../../src/tpm/tpm2/rc.ts';


const sha256 = (fill: number) => [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, fill) }];

async function started(v: Tpm2VtpmModel): Promise<Tpm2Client> {
  const tpm = new Tpm2Client((c) => v.execute(c, 0));
  await tpm.startup();
  return tpm;
}

/** `slow`, which must still be pending once `other` has run five PCR_Extends: the thread was not held up meanwhile. */
async function stillPendingAfterExtends<T>(other: Tpm2Client, slow: Promise<T>): Promise<T> {
  let settled = false;
  const result = slow.finally(() => {
    settled = true;
  });
  for (let i = 0; i < 5; i++) await other.pcrExtend(16, sha256(i));
  assert.equal(settled, false, "the other vTPM's commands ran while the key was made");
  return result;
}

describe('software vTPM', () => {
  test('a new vTPM is persisted before it is handed out', async () => {
    const r = stateKeeper();
    await Tpm2VtpmModel.create(r.persist);
    assert.equal(r.saved.length, 1);
  });

  test('state-changing commands are persisted before their response; reads are not', async () => {
    const r = stateKeeper();
    const v = await Tpm2VtpmModel.create(r.persist);
    const tpm = await started(v);
    const afterStartup = r.saved.length;
    await tpm.pcrRead(ALG.SHA256, [0, 1, 2]);
    await tpm.getCapability(6, 0x100, 10);
    assert.equal(r.saved.length, afterStartup, 'reads save nothing');
    await tpm.pcrExtend(16, sha256(1));
    assert.equal(r.saved.length, afterStartup + 1, 'PCR_Extend saved');
    assert.ok(r.changes() >= 1, 'and handed over as a change to the state before it');
    await tpm.nvDefineSpace(RH.OWNER, { nvIndex: 0x01000001, nameAlg: ALG.SHA256, attributes: NV_ATTR.AUTHWRITE | NV_ATTR.AUTHREAD, authPolicy: Buffer.alloc(0), dataSize: 8 });
    assert.equal(r.saved.length, afterStartup + 2, 'NV_DefineSpace saved');
    await assert.rejects(tpm.pcrExtend(30, sha256(1)));
    assert.equal(r.saved.length, afterStartup + 2, 'a failed command saves nothing');
  });

  test('a restored vTPM is the same running TPM: PCRs, NV, persistent keys, counters, no Startup needed', async () => {
    const r = stateKeeper();
    const v = await Tpm2VtpmModel.create(r.persist);
    const tpm = await started(v);
    await tpm.pcrExtend(16, sha256(7));
    await tpm.pcrExtend(3, sha256(9));
    await tpm.nvDefineSpace(RH.OWNER, { nvIndex: 0x01000002, nameAlg: ALG.SHA256, attributes: NV_ATTR.AUTHWRITE | NV_ATTR.AUTHREAD, authPolicy: Buffer.alloc(0), dataSize: 5 });
    await tpm.nvWrite(0x01000002, 0x01000002, Buffer.from('hello'));
    const key = await tpm.createPrimary(RH.OWNER, eccSigningTemplate(true));
    await tpm.evictControl(RH.OWNER, key.handle, 0x81000005);
    const before = await tpm.pcrRead(ALG.SHA256, [0, 3, 16]);
    await new Promise((ok) => setTimeout(ok, 50));
    const clockBefore = (await tpm.call(CC.ReadClock, [], [])).params.currentTime;
    assert.ok(clockBefore.time >= 50n);

    const restored = Tpm2VtpmModel.restore(stateKeeper().persist, r.last());
    const again = new Tpm2Client((c) => restored.execute(c, 0));
    assert.deepEqual(await again.pcrRead(ALG.SHA256, [0, 3, 16]), before);
    assert.equal((await again.nvRead(0x01000002, 0x01000002, 5)).toString(), 'hello');
    assert.deepEqual((await again.readPublic(0x81000005)).name, key.name);
    const clockAfter = (await again.call(CC.ReadClock, [], [])).params.currentTime;
    assert.equal(clockAfter.clockInfo.resetCount, clockBefore.clockInfo.resetCount, 'no TPM Reset is visible');
    assert.equal(clockAfter.clockInfo.restartCount, clockBefore.clockInfo.restartCount);
    // The TPM kept its power: Time and Clock ran on, neither went back.
    assert.ok(clockAfter.time >= clockBefore.time, `time ${clockAfter.time} after ${clockBefore.time}`);
    assert.ok(clockAfter.clockInfo.clock >= clockBefore.clockInfo.clock, `clock ${clockAfter.clockInfo.clock} after ${clockBefore.clockInfo.clock}`);
  });

  test('a guest reboot (power cycle) resets the PCRs and is persisted', async () => {
    const r = stateKeeper();
    const v = await Tpm2VtpmModel.create(r.persist);
    const tpm = await started(v);
    await tpm.pcrExtend(16, sha256(2));
    await v.powerOff();
    await v.powerOn();
    const restored = Tpm2VtpmModel.restore(stateKeeper().persist, r.last());
    const again = new Tpm2Client((c) => restored.execute(c, 0));
    await again.startup();
    assert.deepEqual((await again.pcrRead(ALG.SHA256, [16]))[0], Buffer.alloc(32));
  });

  test('a saved session outlives the host process: the restored vTPM loads its context once, with what its policy asserted', async () => {
    const r = stateKeeper();
    const v = await Tpm2VtpmModel.create(r.persist);
    await started(v);
    const run = async (m: Tpm2VtpmModel, cmd: Buffer) => parseResponse(await m.execute(cmd, 0), { responseHandle: commandCode(cmd) === CC.StartAuthSession || commandCode(cmd) === CC.ContextLoad });
    const start = buildCommand({ cc: CC.StartAuthSession, handles: [RH.NULL, RH.NULL], params: params(tpm2b(Buffer.alloc(16, 7)), tpm2b(''), Buffer.from([1]), u16b(ALG.NULL), u16b(ALG.SHA256)) });
    const handle = (await run(v, start)).handle!;
    assert.equal((await run(v, buildCommand({ cc: CC.PolicyCommandCode, handles: [handle], params: u32b(CC.Unseal) }))).rc, 0);
    const saved = (await run(v, buildCommand({ cc: CC.ContextSave, handles: [handle] }))).params;
    assert.equal(v.holdsLoadedState(), false, 'a saved session does not keep the vTPM in memory');
    const load = buildCommand({ cc: CC.ContextLoad, params: saved });
    const digest = buildCommand({ cc: CC.PolicyGetDigest, handles: [handle] });

    const restored = Tpm2VtpmModel.restore(stateKeeper().persist, r.last());
    assert.equal((await run(restored, load)).handle, handle);
    assert.deepEqual(digestBuf.decode((await run(restored, digest)).reader()), commandCodePolicy(CC.Unseal));

    // Loading it is saved before the answer, so a vTPM restored after that refuses the context.
    const savesBefore = r.saved.length;
    assert.equal((await run(v, load)).handle, handle);
    assert.equal(r.saved.length, savesBefore + 1);
    assert.equal((await run(Tpm2VtpmModel.restore(stateKeeper().persist, r.last()), load)).rc, RC.HANDLE | 0x140);
  });

  test('when persisting fails the response is withheld and the failure reported', async () => {
    let fail = false;
    const v = await Tpm2VtpmModel.create(async () => {
      if (fail) throw new Error('disk full');
    });
    const tpm = await started(v);
    fail = true;
    await assert.rejects(tpm.pcrExtend(16, sha256(3)), /disk full/);
  });

  test("one vTPM's TPM2_Create of an RSA key does not hold up another vTPM: the key is made off the main thread and the command completes with it", async () => {
    const rsaKeys = new RsaKeyPool();
    const creating = await started(await Tpm2VtpmModel.create(stateKeeper().persist, { rsaKeys }));
    const other = await started(await Tpm2VtpmModel.create(stateKeeper().persist, { rsaKeys }));
    const srk = (await creating.createPrimary(RH.OWNER, srkTemplate())).handle;
    const key = await stillPendingAfterExtends(other, creating.create(srk, rsaTemplate(A.decrypt | A.userWithAuth | A.sensitiveDataOrigin, undefined, 3072)));
    assert.equal((key.outPublic.unique as { rsa: Buffer }).rsa.length, 384);
    const { handle } = await creating.load(srk, key.outPrivate, key.outPublic);
    const secret = Buffer.from('to the new key');
    const sealed = publicEncrypt({ key: nodeKey(key.outPublic), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' }, secret);
    const opened = await creating.call(CC.RSA_Decrypt, [handle], [{}], { cipherText: sealed, inScheme: { scheme: ALG.OAEP, hashAlg: ALG.SHA256 }, label: Buffer.alloc(0) });
    assert.deepEqual(opened.params.message, secret, 'the key the vTPM waited for is the key it holds');
  });

  test('CreatePrimary of an RSA key derives it off the main thread while another vTPM runs, and derives the key an engine deriving inline does', async () => {
    const r = stateKeeper();
    const model = await Tpm2VtpmModel.create(r.persist, { rsaKeys: new RsaKeyPool() });
    const deriving = await started(model);
    const other = await started(await Tpm2VtpmModel.create(stateKeeper().persist));
    const made = await stillPendingAfterExtends(other, deriving.createPrimary(RH.OWNER, srkTemplate()));
    // The same vTPM, restored into a model without a pool, derives the same key on its thread.
    const restored = Tpm2VtpmModel.restore(stateKeeper().persist, await model.snapshot(), { rsaKeys: undefined });
    const inline = new Tpm2Client((c) => restored.execute(c, 0));
    assert.deepEqual((await inline.createPrimary(RH.OWNER, srkTemplate())).outPublic, made.outPublic);
  });

  test('a snapshot written before saved sessions and Time were kept (running-state version 1) restores, holding no saved session', async () => {
    const r = stateKeeper();
    const tpm = await started(await Tpm2VtpmModel.create(r.persist));
    await tpm.pcrExtend(16, sha256(4));
    const v2 = r.last();
    // Version 1 is version 2 without the session and time fields after the context sequence.
    const at = { pos: 4 + 1 + 1 + 4 };
    const skipSized = () => (at.pos += 2 + v2.readUInt16BE(at.pos));
    skipSized(); // platformAuth
    at.pos += 2; // platformPolicy hash
    for (let i = 0; i < 4; i++) skipSized(); // platformPolicy digest, nullSeed, nullProof, audit digest
    at.pos += 4 + 8; // audit resetCount, contextSequence
    assert.equal(v2.readUInt16BE(at.pos + 4), 0, 'no saved sessions in this snapshot');
    const v1 = Buffer.concat([v2.subarray(0, at.pos), v2.subarray(at.pos + 6 + 20)]);
    v1[4] = 1;
    const restored = new Tpm2Client((c) => Tpm2VtpmModel.restore(stateKeeper().persist, v1).execute(c, 0));
    assert.deepEqual(await restored.pcrRead(ALG.SHA256, [16]), await tpm.pcrRead(ALG.SHA256, [16]));
  });

  test('a damaged snapshot is refused with a clear error', () => {
    assert.throws(() => Tpm2VtpmModel.restore(stateKeeper().persist, Buffer.from('{"format":"x"}\n{}')), /running state/);
  });
});
