import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Tpm12VtpmModel, type Tpm12VtpmModelOptions } from '../../src/vtpm/tpm12-model.ts';
import { Tpm12Client, Tpm12ResponseError } from '../../src/tpm/tpm12/client/index.ts';
import { pcrInfoLongFor, sha1, verifyDigestSignature } from '../../src/tpm/tpm12/client/helpers.ts';
import { CAP, CAP_PROP, KEY_USAGE, KH, NV_PER, PP, ST, STAG } from '../../src/tpm/tpm12/constants.ts';
import { RC } from '../../src/tpm/tpm12/rc.ts';
import { decodeRunningState12, Tpm12RunningStateError } from '../../src/tpm/tpm12/state/running-state.ts';
import type { NvDataPublic } from '../../src/tpm/tpm12/structures/nv.ts';
import { OWNER_AUTH, pinnedEntropy, pooledKeys, SRK_AUTH } from '../helpers/tpm12-engine.ts';
import { stateKeeper } from '../helpers/state-keeper.ts';


function opts(seed = 'vtpm12'): Omit<Tpm12VtpmModelOptions, 'snapshot'> {
  return { entropy: pinnedEntropy(seed), rsaKeyGen: pooledKeys() };
}

function clientOf(v: Tpm12VtpmModel, seed = 'client'): Tpm12Client {
  return new Tpm12Client((c) => v.execute(c, 0), { random: pinnedEntropy(seed) });
}

async function started(v: Tpm12VtpmModel): Promise<Tpm12Client> {
  const tpm = clientOf(v);
  await tpm.startup(ST.CLEAR);
  return tpm;
}

async function ownerPresent(tpm: Tpm12Client): Promise<boolean> {
  const prop = Buffer.alloc(4);
  prop.writeUInt32BE(CAP_PROP.OWNER);
  return (await tpm.getCapability(CAP.PROPERTY, prop))[0] === 1;
}

const rejectsWith = (rc: number) => (e: unknown) => e instanceof Tpm12ResponseError && e.rc === rc;
const KEY_AUTH = sha1(Buffer.from('key'));
const DATA_AUTH = sha1(Buffer.from('data'));
const COUNTER_AUTH = sha1(Buffer.from('counter'));

function nvArea(index: number, attributes: number, dataSize: number): NvDataPublic {
  const short = { pcrSelection: Buffer.alloc(3), localityAtRelease: 0x1f, digestAtRelease: Buffer.alloc(20) };
  return { tag: STAG.NV_DATA_PUBLIC, nvIndex: index, pcrInfoRead: short, pcrInfoWrite: short, permission: { tag: STAG.NV_ATTRIBUTES, attributes }, bReadSTClear: false, bWriteSTClear: false, bWriteDefine: false, dataSize };
}

describe('TPM 1.2 vTPM', () => {
  test('a new vTPM, with its EK, is persisted before it is handed out', async () => {
    const r = stateKeeper();
    const v = await Tpm12VtpmModel.create(r.persist, opts());
    assert.equal(r.saved.length, 1);
    assert.equal(v.family, 'tpm12');
    assert.notEqual(decodeRunningState12(r.last()).nv.ek, null);
  });

  test('state-changing commands are persisted before their response; reads and failed commands are not', async () => {
    const r = stateKeeper();
    const v = await Tpm12VtpmModel.create(r.persist, opts());
    const tpm = await started(v);
    assert.equal(r.saved.length, 2, 'TPM_Startup saved');
    await tpm.pcrRead(0);
    await ownerPresent(tpm);
    await tpm.stclearFlags();
    assert.equal(r.saved.length, 2, 'reads save nothing');
    await tpm.extend(10, Buffer.alloc(20, 1));
    assert.equal(r.saved.length, 3, 'TPM_Extend saved');
    assert.deepEqual(decodeRunningState12(r.last()).state.pcrs[10], await tpm.pcrRead(10), 'the saved snapshot holds the new PCR value');
    await tpm.nvDefineSpace(nvArea(0x00011000, 0, 8), Buffer.alloc(20), null);
    assert.equal(r.saved.length, 4, 'TPM_NV_DefineSpace saved');
    await tpm.nvWriteValue(0x00011000, 0, Buffer.from('abcd'), null);
    assert.equal(r.saved.length, 5, 'TPM_NV_WriteValue saved');
    await assert.rejects(tpm.extend(24, Buffer.alloc(20, 1)), rejectsWith(RC.BADINDEX));
    await assert.rejects(tpm.pcrReset([0]), rejectsWith(RC.NOTRESETABLE));
    await assert.rejects(tpm.physicalEnable(), rejectsWith(RC.BAD_PRESENCE));
    assert.equal(r.saved.length, 5, 'failed commands save nothing');
  });

  test('volatile-only changes — physical presence, the NV global lock, a PCR reset — are persisted', async () => {
    const r = stateKeeper();
    const v = await Tpm12VtpmModel.create(r.persist, opts());
    const tpm = await started(v);
    await tpm.physicalPresence(PP.CMD_ENABLE);
    await tpm.physicalPresence(PP.PRESENT);
    assert.equal(decodeRunningState12(r.last()).state.stclear.physicalPresence, true);
    await tpm.nvWriteValue(0, 0, Buffer.alloc(0), null);
    assert.equal(decodeRunningState12(r.last()).state.stclear.bGlobalLock, true);
    await tpm.extend(16, Buffer.alloc(20, 3));
    await tpm.pcrReset([16]);
    assert.deepEqual(decodeRunningState12(r.last()).state.pcrs[16], Buffer.alloc(20));
  });

  test('a read lock set by a zero-length NV read is persisted', async () => {
    const r = stateKeeper();
    const v = await Tpm12VtpmModel.create(r.persist, opts());
    const tpm = await started(v);
    await tpm.nvDefineSpace(nvArea(0x00011001, NV_PER.READ_STCLEAR, 4), Buffer.alloc(20), null);
    const before = r.saved.length;
    await tpm.nvReadValue(0x00011001, 0, 0, null);
    assert.equal(r.saved.length, before + 1);
    assert.equal(decodeRunningState12(r.last()).nv.nv.find((a) => a.pub.nvIndex === 0x00011001)?.pub.bReadSTClear, true);
  });

  test('a restored vTPM is the same running TPM: PCRs, owner, SRK, wrapped keys, sealed data, counters, NV, flags; no TPM_Startup needed', async () => {
    const r = stateKeeper();
    const v = await Tpm12VtpmModel.create(r.persist, opts());
    const tpm = await started(v);
    const ek = await tpm.readPubek();
    await tpm.takeOwnership(OWNER_AUTH, SRK_AUTH, ek);
    await tpm.extend(8, Buffer.alloc(20, 7));
    await tpm.extend(16, Buffer.alloc(20, 9));
    const sealed = await tpm.seal(KH.SRK, SRK_AUTH, DATA_AUTH, Buffer.from('disk key'), pcrInfoLongFor([8], [await tpm.pcrRead(8)]));
    const wrapped = await tpm.createWrapKey(KH.SRK, SRK_AUTH, { usage: KEY_USAGE.SIGNING }, KEY_AUTH);
    const loadedBefore = await tpm.loadKey2(KH.SRK, SRK_AUTH, wrapped);
    const pub = await tpm.getPubKey(loadedBefore, KEY_AUTH);
    const c1 = await tpm.createCounter(OWNER_AUTH, COUNTER_AUTH, Buffer.from('BOOT'));
    const c2 = await tpm.createCounter(OWNER_AUTH, COUNTER_AUTH, Buffer.from('OTHR'));
    const counted = await tpm.incrementCounter(c1.countID, COUNTER_AUTH);
    await tpm.nvDefineSpace(nvArea(0x00011002, NV_PER.OWNERWRITE | NV_PER.OWNERREAD, 5), Buffer.alloc(20), OWNER_AUTH);
    await tpm.nvWriteValue(0x00011002, 0, Buffer.from('hello'), OWNER_AUTH);
    await tpm.physicalPresence(PP.CMD_ENABLE);
    await tpm.physicalPresence(PP.PRESENT);
    const pcrs = await Promise.all([0, 8, 16, 17].map((i) => tpm.pcrRead(i)));

    const restored = Tpm12VtpmModel.restore(stateKeeper().persist, r.last(), opts('restored'));
    const again = clientOf(restored, 'client-again');
    assert.deepEqual(await Promise.all([0, 8, 16, 17].map((i) => again.pcrRead(i))), pcrs);
    await assert.rejects(again.startup(ST.CLEAR), rejectsWith(RC.INVALID_POSTINIT), 'the TPM is still started');
    assert.equal(await ownerPresent(again), true);
    await assert.rejects(again.takeOwnership(OWNER_AUTH, SRK_AUTH, ek), rejectsWith(RC.OWNER_SET));
    assert.equal((await again.unseal(KH.SRK, SRK_AUTH, DATA_AUTH, sealed)).toString(), 'disk key');
    await assert.rejects(again.getPubKey(loadedBefore, KEY_AUTH), rejectsWith(RC.INVALID_KEYHANDLE), 'loaded keys are not part of a snapshot');
    const h = await again.loadKey2(KH.SRK, SRK_AUTH, wrapped);
    const digest = sha1(Buffer.from('to sign'));
    assert.ok(verifyDigestSignature(pub, digest, await again.sign(h, KEY_AUTH, digest)));
    assert.equal((await again.readCounter(c1.countID)).counter, counted.counter);
    assert.equal(await again.getProperty(CAP_PROP.ACTIVE_COUNTER), c1.countID);
    await assert.rejects(again.incrementCounter(c2.countID, COUNTER_AUTH), rejectsWith(RC.BAD_COUNTER), 'this boot already claimed another counter');
    assert.equal((await again.nvReadValue(0x00011002, 0, 5, OWNER_AUTH)).toString(), 'hello');
    assert.equal((await again.stclearFlags()).physicalPresence, true);
  });

  test('a guest reboot (power cycle) resets the PCRs and is persisted', async () => {
    const r = stateKeeper();
    const v = await Tpm12VtpmModel.create(r.persist, opts());
    const tpm = await started(v);
    await tpm.extend(10, Buffer.alloc(20, 2));
    await v.powerOff();
    const beforeOn = r.saved.length;
    await v.powerOn();
    assert.equal(r.saved.length, beforeOn + 1);
    const restored = Tpm12VtpmModel.restore(stateKeeper().persist, r.last(), opts('restored'));
    const again = clientOf(restored, 'client-again');
    await assert.rejects(again.pcrRead(10), rejectsWith(RC.INVALID_POSTINIT), 'the rebooted TPM awaits TPM_Startup');
    await again.startup(ST.CLEAR);
    assert.deepEqual(await again.pcrRead(10), Buffer.alloc(20));
  });

  test('a powered-off vTPM answers TPM_FAIL and saves nothing', async () => {
    const r = stateKeeper();
    const v = await Tpm12VtpmModel.create(r.persist, opts());
    const tpm = await started(v);
    await v.powerOff();
    const before = r.saved.length;
    await assert.rejects(tpm.extend(10, Buffer.alloc(20, 2)), rejectsWith(RC.FAIL));
    assert.equal(r.saved.length, before);
    assert.equal(v.powered, false);
  });

  test('when persisting fails the response is withheld and the failure reported', async () => {
    let fail = false;
    const v = await Tpm12VtpmModel.create(async () => {
      if (fail) throw new Error('disk full');
    }, opts());
    const tpm = await started(v);
    fail = true;
    await assert.rejects(tpm.extend(10, Buffer.alloc(20, 3)), /disk full/);
  });

  test('a damaged or foreign snapshot is refused with a clear error', async () => {
    const r = stateKeeper();
    const v = await Tpm12VtpmModel.create(r.persist, opts());
    const tpm = await started(v);
    await tpm.extend(10, Buffer.alloc(20, 4));
    const good = r.last();
    const eol = good.indexOf(0x0a);
    const header = JSON.parse(good.subarray(0, eol).toString());
    const withHeader = (h: unknown) => Buffer.concat([Buffer.from(JSON.stringify(h) + '\n'), good.subarray(eol + 1)]);
    const refused = (snapshot: Buffer, why: RegExp) =>
      assert.throws(() => Tpm12VtpmModel.restore(stateKeeper().persist, snapshot, opts()), (e: unknown) => e instanceof Tpm12RunningStateError && /running state is unusable/.test(e.message) && why.test(e.message));

    refused(Buffer.from('{"format":"vtpmd-tpm2-running","version":1}\n{}'), /not a vtpmd-tpm12-running record/);
    refused(withHeader({ ...header, version: 2 }), /version 2/);
    refused(good.subarray(0, eol), /no running-state header/);
    const flipped = Buffer.from(good);
    flipped[good.indexOf('"pcrs"') + 20]! ^= 1;
    refused(flipped, /checksum does not match/);
    refused(good.subarray(0, good.length - 40), /its NV/);
    // A record whose checksum was recomputed still has its fields checked one by one.
    const { createHash } = await import('node:crypto');
    const resum = (state: unknown) => {
      const body = JSON.stringify(state);
      return Buffer.concat([Buffer.from(`{"format":"vtpmd-tpm12-running","version":1,"sha256":"${createHash('sha256').update(body).digest('hex')}","state":${body}}\n`), good.subarray(eol + 1)]);
    };
    refused(resum({ ...header.state, pcrs: header.state.pcrs.slice(0, 23) }), /23 PCRs/);
    refused(resum({ ...header.state, started: 'yes' }), /state\.started is not a boolean/);
    refused(resum({ ...header.state, stclear: { ...header.state.stclear, bGlobalLock: undefined } }), /state\.stclear\.bGlobalLock/);
    refused(resum({ ...header.state, activeCounter: 77 }), /active counter 77/);
    assert.ok(Tpm12VtpmModel.restore(stateKeeper().persist, resum(header.state), opts()), 'the untouched state, re-checksummed, is accepted');
  });

  test('damage anywhere in a snapshot surfaces, if at all, only as a Tpm12RunningStateError', async () => {
    const r = stateKeeper();
    const v = await Tpm12VtpmModel.create(r.persist, opts());
    await started(v);
    const good = r.last();
    fc.assert(
      fc.property(fc.nat({ max: good.length - 1 }), fc.integer({ min: 1, max: 255 }), fc.nat({ max: good.length }), (at, xor, cut) => {
        const bad = Buffer.from(good.subarray(0, Math.max(cut, at + 1)));
        bad[at]! ^= xor;
        try {
          decodeRunningState12(bad);
        } catch (e) {
          assert.ok(e instanceof Tpm12RunningStateError, String(e));
        }
      }),
      { numRuns: 1000 },
    );
  });
});
