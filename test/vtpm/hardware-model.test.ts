import assert from 'node:assert/strict';
import { constants, createCipheriv, createHash, createHmac, publicEncrypt, randomBytes, verify } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Chip } from '../../src/hwtpm/chip.ts';
import { openChipClient } from '../../src/hwtpm/open-chip-client.ts';
import { startChip } from '../../src/hwtpm/chip-startup.ts';
import { Tpm2Client, Tpm2CommandError, pcrSelection } from '../../src/hwtpm/tpm2-client.ts';
import { HANDLES, eccSigningTemplate, sealedTemplate, srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { ALG, CC, RH, ST } from '../../src/tpm/tpm2/constants.ts';
import { RC } from '../../src/tpm/tpm2/rc.ts';
import { publicKeyOf } from '../../src/tpm/tpm2/objects/model.ts';
import { MemoryStateStore } from '../../src/tpm/tpm2/state/store.ts';
import { OBJECT_ATTR as A, type Public } from '../../src/tpm/tpm2/types/public.ts';
import { eccTemplate, hmacTemplate, rsaTemplate, scheme } from '../helpers/tpm2-keys.ts';
import { aesKey } from '../helpers/tpm2-objects.ts';
import { MAX_CHIP_SEQUENCE_BYTES } from '../../src/tpm/tpm2/commands/hash.ts';
import type { Signature } from '../../src/tpm/tpm2/types/signature.ts';
import { HardwareKeyService } from '../../src/vtpm/hardware-key-service.ts';
import { readSrk } from '../../src/hwtpm/tpm2-provisioning.ts';
import { ChipKeyBackend, chipTemplateFor, type ChipCreateResult } from '../../src/vtpm/chip-key-backend.ts';
import { TpmError } from '../../src/tpm/tpm2/rc.ts';
import { unwrapBoundKey, wrapBoundKey } from '../../src/vtpm/key-binding.ts';
import { aesGcmSeal } from '../../src/tpm/crypto/aead.ts';
import { Writer } from '../../src/tpm/wire/buffer.ts';
import { privateBuf } from '../../src/tpm/tpm2/types/creation.ts';
import { pcrSelectionList } from '../../src/tpm/tpm2/types/pcr.ts';
import { public2b, publicArea } from '../../src/tpm/tpm2/types/public.ts';
import { encode } from '../../src/tpm/wire/codec.ts';

const encodeTemplate = (t: Public): Buffer => Buffer.from(encode(publicArea, t));
import { CAP, PT } from '../../src/tpm/tpm2/constants.ts';
import { Tpm2VtpmModel } from '../../src/vtpm/tpm2-model.ts';
import { rcOf, setup, tapChip } from '../helpers/hardware-vtpm.ts';


async function signWith(tpm: Tpm2Client, handle: number, message: string, password = ''): Promise<Signature> {
  const digest = createHash('sha256').update(message).digest();
  const r = await tpm.call(CC.Sign, [handle], [{ password }], {
    digest,
    inScheme: { scheme: ALG.NULL, hashAlg: ALG.NULL },
    validation: { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: Buffer.alloc(0) },
  });
  return r.params.signature;
}

function verifies(pub: Public, message: string | Buffer, sig: Signature): boolean {
  assert.equal(sig.sigAlg, ALG.ECDSA);
  const { r, s } = sig as { r: Buffer; s: Buffer };
  return verify('sha256', Buffer.from(message), { key: publicKeyOf(pub), dsaEncoding: 'ieee-p1363' }, Buffer.concat([r, s]));
}



describe('hardware-backed vTPM', () => {
  test('a key made through the vTPM signs through it, and the signature verifies under the vTPM public key', async () => {
    const { vtpm, vsrk } = await setup();
    const key = await vtpm.create(vsrk, eccSigningTemplate(false));
    assert.equal(key.outPrivate.subarray(0, 4).toString('latin1'), 'vHK3', 'the guest holds the double-wrapped blob');
    const { handle } = await vtpm.load(vsrk, key.outPrivate, key.outPublic);
    assert.ok(verifies(key.outPublic, 'hello', await signWith(vtpm, handle, 'hello')));
  });

  test('the outer blob fails to load into the hwTPM directly', async () => {
    const { vtpm, vsrk, hw } = await setup();
    const key = await vtpm.create(vsrk, eccSigningTemplate(false));
    await assert.rejects(hw.load(HANDLES.SRK, key.outPrivate, key.outPublic), (e) => e instanceof Tpm2CommandError);
  });

  test('a virtual PCR binding is enforced by the model: load and use fail once the vTPM PCR moves', async () => {
    const { vtpm, vsrk } = await setup();
    const key = await vtpm.call(CC.Create, [vsrk], [{}], {
      inSensitive: { userAuth: Buffer.alloc(0), data: Buffer.alloc(0) },
      inPublic: eccSigningTemplate(false),
      outsideInfo: Buffer.alloc(0),
      creationPCR: [pcrSelection(ALG.SHA256, [16])],
    });
    const { handle } = await vtpm.load(vsrk, key.params.outPrivate, key.params.outPublic);
    await signWith(vtpm, handle, 'before');
    await vtpm.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 1) }]);
    await assert.rejects(signWith(vtpm, handle, 'after'), (e) => rcOf(e) === RC.PCR);
    await vtpm.flushContext(handle);
    await assert.rejects(vtpm.load(vsrk, key.params.outPrivate, key.params.outPublic), (e) => (rcOf(e) & 0xfff) === RC.PCR);
  });

  test('the guest authorization is enforced by the vTPM before the chip is asked', async () => {
    const { vtpm, vsrk } = await setup();
    const key = await vtpm.create(vsrk, eccSigningTemplate(false), { userAuth: Buffer.from('s3cret') });
    const { handle } = await vtpm.load(vsrk, key.outPrivate, key.outPublic);
    await assert.rejects(signWith(vtpm, handle, 'x', 'wrong'), (e) => (rcOf(e) & 0xbf) === RC.AUTH_FAIL);
    assert.ok(verifies(key.outPublic, 'x', await signWith(vtpm, handle, 'x', 's3cret')));
  });

  test('a tampered outer blob or a public area from another key is refused', async () => {
    const { vtpm, vsrk } = await setup();
    const a = await vtpm.create(vsrk, eccSigningTemplate(false));
    const b = await vtpm.create(vsrk, eccSigningTemplate(false));
    const bad = Buffer.from(a.outPrivate);
    bad[bad.length - 3]! ^= 1;
    await assert.rejects(vtpm.load(vsrk, bad, a.outPublic), (e) => (rcOf(e) & 0xbf) === RC.INTEGRITY);
    await assert.rejects(vtpm.load(vsrk, a.outPrivate, b.outPublic), (e) => (rcOf(e) & 0xbf) === RC.INTEGRITY);
  });

  test('a hardware-backed attestation key quotes the vTPM PCRs', async () => {
    const { vtpm, vsrk } = await setup();
    const aik = await vtpm.create(vsrk, eccSigningTemplate(true));
    const { handle } = await vtpm.load(vsrk, aik.outPrivate, aik.outPublic);
    const q = await vtpm.quote(handle, Buffer.from('nonce'), [pcrSelection(ALG.SHA256, [0, 16])]);
    assert.ok(verifies(aik.outPublic, q.quoted, q.signature));
  });

  test('more keys than the chip has slots are swapped in and out through saved contexts', async () => {
    const { vtpm, vsrk, service } = await setup(8);
    const keys = [];
    for (let i = 0; i < 5; i++) {
      const k = await vtpm.create(vsrk, eccSigningTemplate(false));
      keys.push({ pub: k.outPublic, handle: (await vtpm.load(vsrk, k.outPrivate, k.outPublic)).handle });
    }
    for (const round of [1, 2]) for (const k of keys) assert.ok(verifies(k.pub, `m${round}`, await signWith(vtpm, k.handle, `m${round}`)));
    // The five keys, and the vSRK: a primary the chip derives.
    assert.equal(service.savedContexts, 6);
  });

  test('a restored hardware-backed vTPM keeps its persistent hardware keys usable', async () => {
    const { vtpm, vsrk, service, kbk, snapshots } = await setup();
    const k = await vtpm.create(vsrk, eccSigningTemplate(false));
    const { handle } = await vtpm.load(vsrk, k.outPrivate, k.outPublic);
    await vtpm.evictControl(RH.OWNER, handle, 0x81000042);
    const restored = Tpm2VtpmModel.restore(async () => undefined, snapshots[snapshots.length - 1]!, { hardware: { kbk, service: service.forVm('vm-a') } });
    const again = new Tpm2Client((c) => restored.execute(c, 0));
    assert.ok(verifies(k.outPublic, 'after restart', await signWith(again, 0x81000042, 'after restart')));
  });

  test('an RSA decryption key lives in the chip: RSA_Decrypt through the vTPM opens what node:crypto and the vTPM encrypted, refuses a bad padding, and obeys the PCR binding', async () => {
    const { vtpm, vsrk } = await setup();
    const template = rsaTemplate(A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.decrypt);
    const made = await vtpm.call(CC.Create, [vsrk], [{}], {
      inSensitive: { userAuth: Buffer.alloc(0), data: Buffer.alloc(0) },
      inPublic: template,
      outsideInfo: Buffer.alloc(0),
      creationPCR: [pcrSelection(ALG.SHA256, [16])],
    });
    const outPrivate = made.params.outPrivate as Buffer;
    const outPublic = made.params.outPublic as Public;
    assert.equal(outPrivate.subarray(0, 4).toString('latin1'), 'vHK3', 'the guest holds the double-wrapped blob');
    const { handle } = await vtpm.load(vsrk, outPrivate, outPublic);
    const oaep = { scheme: ALG.OAEP, hashAlg: ALG.SHA256 };
    const label = Buffer.from('label\0');
    const secret = randomBytes(32);
    const decrypt = async (cipherText: Buffer) => (await vtpm.call(CC.RSA_Decrypt, [handle], [{}], { cipherText, inScheme: oaep, label })).params.message as Buffer;
    const fromNode = publicEncrypt({ key: publicKeyOf(outPublic), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256', oaepLabel: label }, secret);
    assert.deepEqual(await decrypt(fromNode), secret);
    const fromVtpm = (await vtpm.call(CC.RSA_Encrypt, [handle], [], { message: secret, inScheme: oaep, label })).params.outData as Buffer;
    assert.deepEqual(await decrypt(fromVtpm), secret);
    const garbage = Buffer.from(fromNode);
    garbage[0] = 0;
    garbage[40]! ^= 0xff;
    await assert.rejects(decrypt(garbage), (e) => (rcOf(e) & 0xbf) === RC.VALUE);
    await vtpm.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 1) }]);
    await assert.rejects(decrypt(fromNode), (e) => rcOf(e) === RC.PCR);
  });

  test('an ECDH key lives in the chip: ECDH_ZGen through the vTPM gives the secret ECDH_KeyGen computed from its public key', async () => {
    const { vtpm, vsrk } = await setup();
    const template = eccTemplate(A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.decrypt);
    const made = await vtpm.create(vsrk, template);
    assert.equal(made.outPrivate.subarray(0, 4).toString('latin1'), 'vHK3');
    const { handle } = await vtpm.load(vsrk, made.outPrivate, made.outPublic);
    const gen = await vtpm.call(CC.ECDH_KeyGen, [handle], [], {});
    const z = await vtpm.call(CC.ECDH_ZGen, [handle], [{}], { inPoint: gen.params.pubPoint });
    assert.deepEqual(z.params.outPoint, gen.params.zPoint);
  });

  test('the chip key inside an outer blob is no use on its own: without its chip-side authValue the chip refuses it', async () => {
    const { vtpm, vsrk, hw, kbk } = await setup();
    const key = await vtpm.create(vsrk, eccSigningTemplate(false));
    const bound = unwrapBoundKey(kbk, key.outPrivate)!;
    assert.equal(bound.chipAuth.length, 32);
    const inner = await hw.load(HANDLES.SRK, bound.innerPrivate, bound.innerPublic);
    await assert.rejects(signWith(hw, inner.handle, 'stolen'), (e) => rcOf(e) === (RC.BAD_AUTH | 0x900));
    const session = await hw.startHmacSession();
    const digest = createHash('sha256').update('with the secret').digest();
    await hw.call(CC.Sign, [inner.handle], [{ hmacSession: session, authValue: bound.chipAuth, names: [inner.name] }], {
      digest,
      inScheme: { scheme: ALG.ECDSA, hashAlg: ALG.SHA256 },
      validation: { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: Buffer.alloc(0) },
    });
  });

  test('each vTPM uses its chip keys through its own HMAC session, swapped in for the operation and saved after it', async () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    await (await openChipClient(chip)).takeOwnership();
    const service = new HardwareKeyService(chip);
    const bus = tapChip(chip);
    const vtpms = await Promise.all(
      ['vm-a', 'vm-b'].map(async (name) => {
        const model = await Tpm2VtpmModel.create(async () => undefined, { hardware: { kbk: randomBytes(32), service: service.forVm(name) } });
        const vtpm = new Tpm2Client((c) => model.execute(c, 0));
        await vtpm.startup();
        const srk = (await vtpm.createPrimary(RH.OWNER, srkTemplate())).handle;
        const k = await vtpm.create(srk, eccSigningTemplate(false));
        return { vtpm, handle: (await vtpm.load(srk, k.outPrivate, k.outPublic)).handle };
      }),
    );
    for (let round = 0; round < 2; round++) for (const v of vtpms) await signWith(v.vtpm, v.handle, `round ${round}`);
    // Which session authorized each chip Sign: the handle at the start of the authorization area.
    const signers = bus.filter((b) => b.readUInt16BE(0) === ST.SESSIONS && b.readUInt32BE(6) === CC.Sign).map((b) => b.readUInt32BE(18));
    assert.equal(signers.length, 4);
    for (const h of signers) assert.equal(h >>> 24, 0x02, `Sign authorized by 0x${h.toString(16)}, an HMAC session`);
    assert.equal(signers[0], signers[2], "vm-a's session comes back for its next operation");
    assert.equal(signers[1], signers[3]);
    assert.notEqual(signers[0], signers[1], 'each vTPM has its own');
    const hw = new Tpm2Client((c) => chip.execute(c, 0));
    const property = async (pt: number) => {
      const cap = await hw.getCapability(CAP.TPM_PROPERTIES, pt, 1);
      assert.ok('properties' in cap.capabilityData);
      return cap.capabilityData.properties[0]!.value;
    };
    assert.equal(await property(PT.HR_LOADED), 0, 'no session stays loaded between operations');
    assert.equal(await property(PT.HR_TRANSIENT_AVAIL), 3, 'nor any key');
    assert.equal(await property(PT.HR_ACTIVE), 2, 'the two saved sessions stay active');
    assert.equal(service.savedSessions, 2);
  });

  test('when the chip runs out of active sessions, the least recently used vTPM loses its saved one and starts another when it next needs it', async () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    await (await openChipClient(chip)).takeOwnership();
    const service = new HardwareKeyService(chip);
    const made = (await service.perform('maker', { kind: 'create', template: chipTemplateFor(eccSigningTemplate(false)), data: Buffer.alloc(0) })) as ChipCreateResult;
    const sign = (owner: string) =>
      service.perform(owner, {
        kind: 'sign',
        innerPrivate: made.outPrivate,
        innerPublic: made.outPublic,
        primaryUnique: Buffer.alloc(0),
        chipAuth: made.chipAuth,
        scheme: { scheme: ALG.ECDSA, hashAlg: ALG.SHA256 },
        digest: Buffer.alloc(32, 3),
      }) as Promise<Signature>;
    for (let i = 0; i < 70; i++) assert.equal((await sign(`vm-${i}`)).sigAlg, ALG.ECDSA);
    assert.equal(service.savedSessions, 56, 'of the 64 active sessions the chip tracks, it leaves room for the chip\'s other users');
    assert.equal((await sign('vm-0')).sigAlg, ALG.ECDSA, 'an evicted vTPM gets a new session');
    // Those other users meanwhile: a PSS key sealed and unsealed, and a keyed counter defined, through sessions.
    const client = await openChipClient(chip);
    const key = Buffer.from('the counter key');
    const counter = await client.createCounter(key);
    assert.equal(await client.incrementCounter(counter.id, key), counter.value + 1n);
    assert.deepEqual(await client.unseal(await client.seal(Buffer.from('storage key'), [16])), Buffer.from('storage key'));
    // A user that takes every session left: the service then gives up its least recent one.
    await service.forget('vm-0');
    assert.equal(service.savedSessions, 55);
    const hw = new Tpm2Client((c) => chip.execute(c, 0));
    for (let i = 0; i < 9; i++) await hw.call(CC.ContextSave, [(await hw.startHmacSession()).handle], []);
    assert.equal((await sign('vm-70')).sigAlg, ALG.ECDSA, 'with the chip full, the least recently used vTPM lost its session');
    assert.equal(service.savedSessions, 55);
  });

  test("a key made by vtpmd 0.1 ('vHK1', no chip-side authValue) still opens and is used with an empty one", async () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    await (await openChipClient(chip)).takeOwnership();
    const hw = new Tpm2Client((c) => chip.execute(c, 0));
    const made = await hw.create(HANDLES.SRK, chipTemplateFor(eccSigningTemplate(false)));
    const kbk = randomBytes(32);
    // The 'vHK1' layout: the same fields without chipAuth, MAGIC as the associated data.
    const w = new Writer(1024);
    privateBuf.encode(w, made.outPrivate);
    public2b.encode(w, made.outPublic);
    w.u16(3).bytes(Buffer.from('pin'));
    w.u16(32).bytes(Buffer.alloc(32, 4));
    pcrSelectionList.encode(w, []);
    w.u16(0);
    const magic = Buffer.from('vHK1', 'latin1');
    const iv = randomBytes(12);
    const v1 = Buffer.concat([magic, iv, aesGcmSeal(kbk, iv, w.finish(), magic)]);
    const bound = unwrapBoundKey(kbk, v1)!;
    assert.equal(bound.authValue.toString(), 'pin');
    assert.equal(bound.chipAuth.length, 0);
    assert.deepEqual(bound.innerPrivate, made.outPrivate);
    const again = unwrapBoundKey(kbk, wrapBoundKey(kbk, bound))!;
    assert.deepEqual(again, bound, "rewrapped as 'vHK3' it reads back the same");
    const service = new HardwareKeyService(chip);
    const sig = (await service.perform('vm-old', {
      kind: 'sign',
      innerPrivate: bound.innerPrivate,
      primaryUnique: bound.primaryUnique,
      innerPublic: bound.innerPublic,
      chipAuth: bound.chipAuth,
      scheme: { scheme: ALG.ECDSA, hashAlg: ALG.SHA256 },
      digest: Buffer.alloc(32, 5),
    })) as Signature;
    assert.equal(sig.sigAlg, ALG.ECDSA);
  });

  test("a key made before storage parents lived in the chip ('vHK2', no seed) still opens, with an empty seed", () => {
    const kbk = randomBytes(32);
    const pub = eccSigningTemplate(false);
    const w = new Writer(1024);
    privateBuf.encode(w, Buffer.alloc(40, 1));
    public2b.encode(w, pub);
    w.u16(3).bytes(Buffer.from('pin'));
    w.u16(32).bytes(Buffer.alloc(32, 2));
    w.u16(32).bytes(Buffer.alloc(32, 3));
    pcrSelectionList.encode(w, []);
    w.u16(0);
    const magic = Buffer.from('vHK2', 'latin1');
    const iv = randomBytes(12);
    const bound = unwrapBoundKey(kbk, Buffer.concat([magic, iv, aesGcmSeal(kbk, iv, w.finish(), magic)]))!;
    assert.equal(bound.authValue.toString(), 'pin');
    assert.deepEqual(bound.chipAuth, Buffer.alloc(32, 2));
    assert.deepEqual(bound.publicDigest, Buffer.alloc(32, 3));
    assert.equal(bound.seedValue.length, 0);
  });

  test('sealed data lives in the chip: a PolicyPCR seal on a virtual PCR unseals through the vTPM until that PCR moves, and its inner blob is no use alone', async () => {
    const { vtpm, vsrk, hw, kbk, chip } = await setup();
    const bus = tapChip(chip);
    const sel = [pcrSelection(ALG.SHA256, [16])];
    const trial = await vtpm.startPolicySession(true);
    await vtpm.policyPcr(trial, sel);
    const policy = await vtpm.policyGetDigest(trial);
    await vtpm.flushContext(trial);
    const secret = Buffer.from('disk key of the guest');
    const sealed = await vtpm.create(vsrk, sealedTemplate(policy), { data: secret });
    assert.equal(sealed.outPrivate.subarray(0, 4).toString('latin1'), 'vHK3', 'the guest holds the double-wrapped blob');
    const { handle } = await vtpm.load(vsrk, sealed.outPrivate, sealed.outPublic);
    const unseal = async () => {
      const s = await vtpm.startPolicySession();
      await vtpm.policyPcr(s, sel);
      try {
        return await vtpm.unseal(handle, { policySession: s });
      } finally {
        await vtpm.flushContext(s).catch(() => undefined);
      }
    };
    assert.deepEqual(await unseal(), secret);
    assert.ok(bus.length > 0);
    for (const bytes of bus) assert.equal(bytes.indexOf(secret), -1, 'the sealed data crossed the bus encrypted, both ways');
    const bound = unwrapBoundKey(kbk, sealed.outPrivate)!;
    for (const bytes of bus) assert.equal(bytes.indexOf(bound.chipAuth), -1, 'and so did the chip key authValue');
    const inner = await hw.load(HANDLES.SRK, bound.innerPrivate, bound.innerPublic);
    await assert.rejects(hw.unseal(inner.handle), (e) => rcOf(e) === (RC.BAD_AUTH | 0x900), 'the chip wants the chip-side authValue');
    await hw.flushContext(inner.handle);
    await vtpm.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 9) }]);
    await assert.rejects(unseal(), (e) => (rcOf(e) & 0xff) === (RC.POLICY_FAIL & 0xff), 'the virtual PCR policy holds');
  });

  test('CreateLoaded makes its key in the chip too, and ObjectChangeAuth rewraps a chip key under a new auth without touching the chip', async () => {
    const { vtpm, vsrk } = await setup();
    const made = await vtpm.call(CC.CreateLoaded, [vsrk], [{}], {
      inSensitive: { userAuth: Buffer.from('old'), data: Buffer.alloc(0) },
      inPublic: encodeTemplate(eccSigningTemplate(false)),
    });
    assert.equal((made.params.outPrivate as Buffer).subarray(0, 4).toString('latin1'), 'vHK3');
    const pub = made.params.outPublic as Public;
    assert.ok(verifies(pub, 'loaded', await signWith(vtpm, made.handle!, 'loaded', 'old')));
    const changed = await vtpm.call(CC.ObjectChangeAuth, [made.handle!, vsrk], [{ password: 'old' }], { newAuth: Buffer.from('new') });
    const outPrivate = changed.params.outPrivate as Buffer;
    assert.equal(outPrivate.subarray(0, 4).toString('latin1'), 'vHK3');
    const again = (await vtpm.load(vsrk, outPrivate, pub)).handle;
    assert.ok(verifies(pub, 'new auth', await signWith(vtpm, again, 'new auth', 'new')));
    await assert.rejects(signWith(vtpm, again, 'old auth', 'old'), (e) => rcOf(e) === (RC.AUTH_FAIL | 0x900));
  });

  test('an HMAC key lives in the chip: TPM2_HMAC and HMAC sequences through the vTPM give the HMAC of the guest key, which never crosses the bus in the clear', async () => {
    const { vtpm, vsrk, chip, kbk } = await setup();
    const bus = tapChip(chip);
    const secret = createHash('sha256').update('guest HMAC key').digest();
    const template = hmacTemplate(A.fixedTPM | A.fixedParent | A.userWithAuth | A.sign, scheme(ALG.HMAC));
    const key = await vtpm.call(CC.Create, [vsrk], [{}], {
      inSensitive: { userAuth: Buffer.alloc(0), data: secret },
      inPublic: template,
      outsideInfo: Buffer.alloc(0),
      creationPCR: [pcrSelection(ALG.SHA256, [16])],
    });
    const outPrivate = key.params.outPrivate as Buffer;
    assert.equal(outPrivate.subarray(0, 4).toString('latin1'), 'vHK3', 'the guest holds the double-wrapped blob');
    const { handle } = await vtpm.load(vsrk, outPrivate, key.params.outPublic);
    const expect = (data: Buffer) => createHmac('sha256', secret).update(data).digest();
    const short = Buffer.from('a short message');
    const hmacOnce = await vtpm.call(CC.HMAC, [handle], [{}], { buffer: short, hashAlg: ALG.NULL });
    assert.deepEqual(hmacOnce.params.outHMAC, expect(short));
    // tpm2_hmac's way for data over MAX_DIGEST_BUFFER; the chip gets the whole of it at the end.
    const long = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 13) & 0xff));
    const seq = (await vtpm.call(CC.HMAC_Start, [handle], [{}], { auth: Buffer.from('seq'), hashAlg: ALG.SHA256 })).handle!;
    await vtpm.call(CC.SequenceUpdate, [seq], [{ password: 'seq' }], { buffer: long.subarray(0, 1024) });
    await vtpm.call(CC.SequenceUpdate, [seq], [{ password: 'seq' }], { buffer: long.subarray(1024, 2048) });
    const done = await vtpm.call(CC.SequenceComplete, [seq], [{ password: 'seq' }], { buffer: long.subarray(2048), hierarchy: RH.NULL });
    assert.deepEqual(done.params.result, expect(long));
    const ccs = new Set(bus.filter((_, i) => i % 2 === 0).map((c) => c.readUInt32BE(6)));
    for (const cc of [CC.HMAC, CC.HMAC_Start, CC.SequenceUpdate, CC.SequenceComplete]) assert.ok(ccs.has(cc), `the chip computed it (CC 0x${cc.toString(16)})`);
    for (const bytes of bus) assert.equal(bytes.indexOf(secret), -1, 'the HMAC key crossed the bus encrypted');
    assert.equal(bus.some((b) => b.indexOf(unwrapBoundKey(kbk, outPrivate)!.chipAuth) >= 0), false);
    await vtpm.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 3) }]);
    await assert.rejects(vtpm.call(CC.HMAC, [handle], [{}], { buffer: short, hashAlg: ALG.NULL }), (e) => rcOf(e) === RC.PCR, 'the virtual PCR binding holds');
  });

  test('a chip HMAC key signs (an HMAC signature over the digest) and verifies through the vTPM; a wrong HMAC is TPM_RC_SIGNATURE', async () => {
    const { vtpm, vsrk } = await setup();
    const secret = randomBytes(32);
    const key = await vtpm.create(vsrk, hmacTemplate(A.fixedTPM | A.fixedParent | A.userWithAuth | A.sign, scheme(ALG.HMAC)), { data: secret });
    const { handle } = await vtpm.load(vsrk, key.outPrivate, key.outPublic);
    const digest = createHash('sha256').update('message').digest();
    const signed = await vtpm.call(CC.Sign, [handle], [{}], {
      digest,
      inScheme: { scheme: ALG.NULL, hashAlg: ALG.NULL },
      validation: { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: Buffer.alloc(0) },
    });
    const sig = signed.params.signature as { sigAlg: number; hash: number; digest: Buffer };
    assert.deepEqual(sig, { sigAlg: ALG.HMAC, hash: ALG.SHA256, digest: createHmac('sha256', secret).update(digest).digest() });
    const verified = await vtpm.call(CC.VerifySignature, [handle], [], { digest, signature: sig });
    assert.equal((verified.params.validation as { tag: number }).tag, ST.VERIFIED);
    const forged = { ...sig, digest: Buffer.alloc(32, 1) };
    await assert.rejects(vtpm.call(CC.VerifySignature, [handle], [], { digest, signature: forged }), (e) => (rcOf(e) & 0x3f) === (RC.SIGNATURE & 0x3f));
  });

  test('differential: whatever HMAC and EncryptDecrypt2 requests a guest makes, a chip-backed key answers exactly as the same key in a software vTPM', async () => {
    const { vtpm: hwTpm, vsrk: hwSrk } = await setup();
    const swModel = await Tpm2VtpmModel.create(async () => undefined);
    const swTpm = new Tpm2Client((c) => swModel.execute(c, 0));
    await swTpm.startup();
    const swSrk = (await swTpm.createPrimary(RH.OWNER, srkTemplate())).handle;
    const aesBits = randomBytes(16);
    const hmacBits = randomBytes(32);
    const keys = async (tpm: Tpm2Client, srk: number) => {
      const aes = await tpm.create(srk, aesKey(ALG.NULL, A.decrypt | A.sign, 128, true), { data: aesBits });
      const mac = await tpm.create(srk, hmacTemplate(A.fixedTPM | A.fixedParent | A.userWithAuth | A.sign), { data: hmacBits });
      return { aes: (await tpm.load(srk, aes.outPrivate, aes.outPublic)).handle, mac: (await tpm.load(srk, mac.outPrivate, mac.outPublic)).handle, chip: aes.outPrivate.subarray(0, 4).toString('latin1') };
    };
    const hw = await keys(hwTpm, hwSrk);
    const sw = await keys(swTpm, swSrk);
    assert.equal(hw.chip, 'vHK3');
    assert.notEqual(sw.chip, 'vHK3');
    const outcome = (p: Promise<{ params: Record<string, unknown> }>) =>
      p.then(
        (r) => ({ rc: 0, params: r.params }),
        (e: unknown) => {
          if (!(e instanceof Tpm2CommandError)) throw e;
          return { rc: e.rc, params: {} };
        },
      );
    const anyRequest = fc.oneof(
      fc.record({ kind: fc.constant('hmac' as const), hashAlg: fc.integer({ min: 0, max: 0xffff }), data: fc.uint8Array({ maxLength: 200 }) }),
      fc.record({
        kind: fc.constant('crypt' as const),
        decrypt: fc.boolean(),
        mode: fc.integer({ min: 0, max: 0xffff }),
        iv: fc.uint8Array({ maxLength: 20 }),
        data: fc.uint8Array({ maxLength: 100 }),
      }),
    );
    // Requests a TPM must accept: a digest the key can use, a one-block IV (none for ECB), and for
    // the block modes whole blocks. Every one of them must succeed, so outputs are always compared.
    const validRequest = fc.oneof(
      fc.record({ kind: fc.constant('hmac' as const), hashAlg: fc.constantFrom(ALG.SHA1, ALG.SHA256, ALG.SHA384, ALG.SHA512), data: fc.uint8Array({ maxLength: 200 }) }),
      fc.constantFrom(ALG.CFB, ALG.CTR, ALG.OFB, ALG.CBC, ALG.ECB).chain((mode) =>
        fc.record({
          kind: fc.constant('crypt' as const),
          decrypt: fc.boolean(),
          mode: fc.constant(mode),
          iv: mode === ALG.ECB ? fc.constant(new Uint8Array(0)) : fc.uint8Array({ minLength: 16, maxLength: 16 }),
          data: mode === ALG.CBC || mode === ALG.ECB
            ? fc.integer({ min: 0, max: 6 }).chain((blocks) => fc.uint8Array({ minLength: 16 * blocks, maxLength: 16 * blocks }))
            : fc.uint8Array({ maxLength: 100 }),
        }),
      ),
    );
    type Request = { kind: 'hmac'; hashAlg: number; data: Uint8Array } | { kind: 'crypt'; decrypt: boolean; mode: number; iv: Uint8Array; data: Uint8Array };
    const both = async (r: Request) => {
      const run = (tpm: Tpm2Client, k: { aes: number; mac: number }) =>
        r.kind === 'hmac'
          ? outcome(tpm.call(CC.HMAC, [k.mac], [{}], { buffer: Buffer.from(r.data), hashAlg: r.hashAlg }))
          : outcome(tpm.call(CC.EncryptDecrypt2, [k.aes], [{}], { inData: Buffer.from(r.data), decrypt: r.decrypt, mode: r.mode, ivIn: Buffer.from(r.iv) }));
      const answer = await run(hwTpm, hw);
      assert.deepEqual(answer, await run(swTpm, sw));
      return answer;
    };
    await fc.assert(
      fc.asyncProperty(validRequest, async (r) => {
        const answer = await both(r);
        assert.equal(answer.rc, 0, `a well-formed ${r.kind} request succeeds (rc 0x${answer.rc.toString(16)})`);
      }),
      { numRuns: 100 },
    );
    await fc.assert(fc.asyncProperty(anyRequest, async (r) => void (await both(r))), { numRuns: 100 });
  });

  test('an HMAC sequence of a chip key holds at most MAX_CHIP_SEQUENCE_BYTES in the vTPM; beyond, SequenceUpdate is TPM_RC_MEMORY and the sequence still completes', async () => {
    const { vtpm, vsrk } = await setup();
    const secret = Buffer.alloc(32, 0x42);
    const key = await vtpm.create(vsrk, hmacTemplate(A.fixedTPM | A.fixedParent | A.userWithAuth | A.sign, scheme(ALG.HMAC)), { data: secret });
    const { handle } = await vtpm.load(vsrk, key.outPrivate, key.outPublic);
    const seq = (await vtpm.call(CC.HMAC_Start, [handle], [{}], { auth: Buffer.alloc(0), hashAlg: ALG.NULL })).handle!;
    const chunk = Buffer.alloc(1024, 0x61);
    for (let i = 0; i < MAX_CHIP_SEQUENCE_BYTES / chunk.length; i++) await vtpm.call(CC.SequenceUpdate, [seq], [{}], { buffer: chunk });
    await assert.rejects(vtpm.call(CC.SequenceUpdate, [seq], [{}], { buffer: Buffer.alloc(1) }), (e) => rcOf(e) === RC.MEMORY);
    const done = await vtpm.call(CC.SequenceComplete, [seq], [{}], { buffer: Buffer.alloc(0), hierarchy: RH.NULL });
    assert.deepEqual(done.params.result, createHmac('sha256', secret).update(Buffer.alloc(MAX_CHIP_SEQUENCE_BYTES, 0x61)).digest());
  });

  test('a symmetric key lives in the chip: EncryptDecrypt and EncryptDecrypt2 through the vTPM match AES with the guest key, data crossing the bus encrypted; a bad IV is TPM_RC_SIZE for ivIn before the chip is asked', async () => {
    const { vtpm, vsrk, chip } = await setup();
    const bus = tapChip(chip);
    const aes = randomBytes(16);
    const key = await vtpm.create(vsrk, aesKey(ALG.CFB, A.decrypt | A.sign, 128, true), { data: aes });
    assert.equal(key.outPrivate.subarray(0, 4).toString('latin1'), 'vHK3');
    const { handle } = await vtpm.load(vsrk, key.outPrivate, key.outPublic);
    const iv = randomBytes(16);
    const plain = Buffer.from('the guest disk sector, in the clear'.repeat(4));
    const expected = createCipheriv('aes-128-cfb', aes, iv).update(plain);
    const enc2 = await vtpm.call(CC.EncryptDecrypt2, [handle], [{}], { inData: plain, decrypt: false, mode: ALG.NULL, ivIn: iv });
    assert.deepEqual(enc2.params.outData, expected);
    const dec1 = await vtpm.call(CC.EncryptDecrypt, [handle], [{}], { decrypt: true, mode: ALG.CFB, ivIn: iv, inData: expected });
    assert.deepEqual(dec1.params.outData, plain);
    assert.equal((enc2.params.ivOut as Buffer).length, 16);
    assert.ok(bus.some((b) => b.length > 10 && b.readUInt32BE(6) === CC.EncryptDecrypt2), 'the chip did the work');
    for (const bytes of bus) {
      assert.equal(bytes.indexOf(aes), -1, 'the key crossed the bus encrypted');
      assert.equal(bytes.indexOf(plain.subarray(0, 24)), -1, 'and so did the plaintext, both ways');
    }
    await assert.rejects(vtpm.call(CC.EncryptDecrypt2, [handle], [{}], { inData: plain, decrypt: false, mode: ALG.NULL, ivIn: Buffer.alloc(5) }), (e) => rcOf(e) === (RC.SIZE | 0x40 | (4 << 8)));
  });

  test('whatever a guest hands over as a private blob, the model answers TPM_RC_INTEGRITY or treats it as a software blob; nothing else escapes', () => {
    const kbk = randomBytes(32);
    const backend = new ChipKeyBackend(kbk, () => Buffer.alloc(32));
    const pub = eccSigningTemplate(false);
    const valid = wrapBoundKey(kbk, {
      innerPrivate: Buffer.alloc(40, 1),
      innerPublic: pub,
      authValue: Buffer.from('pin'),
      chipAuth: Buffer.alloc(32, 2),
      seedValue: Buffer.alloc(0),
      primaryUnique: Buffer.alloc(0),
      publicDigest: Buffer.alloc(32, 3),
      pcrSelection: [],
      pcrDigest: Buffer.alloc(0),
    });
    const magics = [Buffer.from('vHK1'), Buffer.from('vHK2'), Buffer.from('vHK3'), Buffer.alloc(0)];
    fc.assert(
      fc.property(fc.constantFrom(...magics), fc.uint8Array({ maxLength: 300 }), fc.nat(valid.length), fc.nat(255), (magic, junk, at, flip) => {
        const mutated = Buffer.from(valid);
        mutated[at % mutated.length]! ^= flip;
        for (const blob of [Buffer.concat([magic, junk]), mutated, mutated.subarray(0, at)]) {
          try {
            backend.open(blob, pub);
          } catch (e) {
            assert.ok(e instanceof TpmError && e.rc === RC.INTEGRITY, `threw ${String(e)}`);
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  test('after the chip loses power, the saved key contexts and chip sessions are void and are made again: the vTPM goes on signing', async () => {
    const { vtpm, vsrk, chip, service } = await setup();
    const k = await vtpm.create(vsrk, eccSigningTemplate(false));
    const { handle } = await vtpm.load(vsrk, k.outPrivate, k.outPublic);
    assert.ok(verifies(k.outPublic, 'before', await signWith(vtpm, handle, 'before')));
    assert.equal(service.savedSessions, 1);
    await chip.powerOff();
    await startChip(chip);
    assert.ok(verifies(k.outPublic, 'after', await signWith(vtpm, handle, 'after')), 'signs after the chip restarted');
    assert.equal(service.savedSessions, 1, 'with a new session saved in place of the void one');
    const loaded = await new Tpm2Client((c) => chip.execute(c, 0)).getCapability(CAP.TPM_PROPERTIES, PT.HR_ACTIVE, 1);
    assert.ok('properties' in loaded.capabilityData);
    assert.equal(loaded.capabilityData.properties[0]!.value, 1, 'and only that one active on the chip');
  });

  test('chip sessions are salted only to the hwSRK the manager recorded, and only to a public area that matches its Name', async () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    await (await openChipClient(chip)).takeOwnership();
    const hw = new Tpm2Client((c) => chip.execute(c, 0));
    const { name } = await readSrk(hw);
    const request = { kind: 'create' as const, template: chipTemplateFor(eccSigningTemplate(false)), data: Buffer.alloc(0) };
    const pinned = new HardwareKeyService(chip, { srkName: name });
    assert.equal(((await pinned.perform('vm-a', request)) as ChipCreateResult).chipAuth.length, 32);
    const other = Buffer.from(name);
    other[other.length - 1]! ^= 1;
    await assert.rejects(new HardwareKeyService(chip, { srkName: other }).perform('vm-a', request), /not the one this manager was set up with/);
    // An answer whose public area was swapped on the way no longer matches the Name it came with.
    const swapped = new Tpm2Client(async (c) => {
      const r = Buffer.from(await chip.execute(c, 0));
      // The answer ends with the Name and the qualified Name (36 bytes each): this byte is the modulus.
      if (Buffer.from(c).readUInt32BE(6) === CC.ReadPublic) r[r.length - 80]! ^= 1;
      return r;
    });
    await assert.rejects(readSrk(swapped), /Name that is not its public area's/);
  });
});
