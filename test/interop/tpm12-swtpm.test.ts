/**
 * The TPM 1.2 engine against swtpm 0.7.1 (libtpms) in TPM 1.2 mode: identical command bytes go to
 * both and the answers are compared wherever the outcome is deterministic. Documented
 * differences: the manufacturer (vtpmd 'VTPD', libtpms 'IBM'), TPM_CAP_VERSION_VAL's revision
 * and vendor, and the number of key and session slots. A fresh vtpmd here is made without an
 * EK, as a fresh swtpm is; by default vtpmd's manufacturer creates one at first power-on.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { hasCommand, skipUnlessRequired } from './harness.ts';
import { Swtpm12 } from '../helpers/tpm12-swtpm.ts';
import { frame, makeTpm, OWNER_AUTH, SRK_AUTH, type TestTpm } from '../helpers/tpm12-engine.ts';
import { Tpm12Client, Tpm12ResponseError } from '../../src/tpm/tpm12/client/index.ts';
import { compositeHash, encryptTcpa, pcrInfoLongFor, pubkeyPem, sha1, verifyDigestSignature, verifySha1Signature } from '../../src/tpm/tpm12/client/helpers.ts';
import { ALG, CAP, ES, KEY_USAGE, KH, ORD, RT, TAG } from '../../src/tpm/tpm12/constants.ts';
import { RC } from '../../src/tpm/tpm12/rc.ts';
import { enc } from '../../src/tpm/tpm12/structures/basic.ts';
import { asymCaContents, identityContents } from '../../src/tpm/tpm12/structures/identity.ts';
import { pubkey } from '../../src/tpm/tpm12/structures/key.ts';

const unavailable = hasCommand('swtpm') ? undefined : skipUnlessRequired('TPM 1.2 interop tests need swtpm (apt-get install swtpm)');
const noOpenssl = hasCommand('openssl') ? undefined : skipUnlessRequired('the TPM 1.2 signature test needs openssl');

const C1 = TAG.RQU_COMMAND;
const u32 = (v: number) => v.toString(16).padStart(8, '0');
const cap = (area: number, sub = '') => frame(C1, ORD.GetCapability, u32(area) + u32(sub.length / 2) + sub);

type Mode = 'exact' | 'rc' | ((b: Buffer) => Buffer);
interface Case {
  name: string;
  cmd: Buffer;
  mode?: Mode;
}

function compare(cases: Case[], ours: (c: Buffer) => Buffer, theirs: Buffer[]): void {
  cases.forEach((c, i) => {
    const a = ours(c.cmd);
    const b = theirs[i]!;
    const mode = c.mode ?? 'exact';
    if (mode === 'rc') assert.equal(a.readUInt32BE(6), b.readUInt32BE(6), `${c.name}: return code`);
    else if (mode === 'exact') assert.equal(a.toString('hex'), b.toString('hex'), c.name);
    else assert.equal(mode(a).toString('hex'), mode(b).toString('hex'), c.name);
  });
}

async function runOn(swtpm: Swtpm12, cases: Case[]): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (const c of cases) out.push(await swtpm.exec(c.cmd));
  return out;
}

describe('TPM 1.2 engine compared with swtpm', { skip: unavailable }, () => {
  let swtpm: Swtpm12;
  let ours: TestTpm;

  before(async () => {
    swtpm = await Swtpm12.start();
    ours = makeTpm({ manufactureEk: false });
  });
  after(async () => {
    await swtpm?.stop();
  });

  test('fresh-state capabilities and flags agree with swtpm', async () => {
    const cases: Case[] = [
      { name: 'TPM_CAP_VERSION', cmd: cap(CAP.VERSION) },
      { name: 'TPM_CAP_PROP_PCR', cmd: cap(CAP.PROPERTY, u32(0x101)) },
      { name: 'TPM_CAP_PROP_DIR', cmd: cap(CAP.PROPERTY, u32(0x102)) },
      { name: 'TPM_CAP_PROP_OWNER', cmd: cap(CAP.PROPERTY, u32(0x111)) },
      { name: 'TPM_CAP_PROP_MAX_COUNTERS', cmd: cap(CAP.PROPERTY, u32(0x10f)) },
      { name: 'TPM_CAP_PROP_COUNTERS', cmd: cap(CAP.PROPERTY, u32(0x10c)) },
      { name: 'TPM_CAP_PROP_INPUT_BUFFER', cmd: cap(CAP.PROPERTY, u32(0x124)) },
      { name: 'TPM_CAP_PROP_STARTUP_EFFECT', cmd: cap(CAP.PROPERTY, u32(0x116)) },
      { name: 'TPM_CAP_PROP_ACTIVE_COUNTER', cmd: cap(CAP.PROPERTY, u32(0x122)) },
      { name: 'TPM_CAP_PROP_MANUFACTURER (length only)', cmd: cap(CAP.PROPERTY, u32(0x103)), mode: (b) => b.subarray(0, 14) },
      { name: 'unknown property', cmd: cap(CAP.PROPERTY, u32(0x999)) },
      { name: 'property with a 2-byte subCap', cmd: cap(CAP.PROPERTY, '0101') },
      { name: 'TPM_CAP_FLAG permanent', cmd: cap(CAP.FLAG, u32(0x108)) },
      { name: 'TPM_CAP_FLAG volatile', cmd: cap(CAP.FLAG, u32(0x109)) },
      { name: 'TPM_CAP_FLAG unknown', cmd: cap(CAP.FLAG, u32(0x101)) },
      { name: 'TPM_CAP_ORD Extend', cmd: cap(CAP.ORD, u32(ORD.Extend)) },
      { name: 'TPM_CAP_ORD Quote2', cmd: cap(CAP.ORD, u32(ORD.Quote2)) },
      { name: 'TPM_CAP_ORD TSC_PhysicalPresence', cmd: cap(CAP.ORD, u32(ORD.TSC_PhysicalPresence)) },
      { name: 'TPM_CAP_ORD unknown', cmd: cap(CAP.ORD, u32(0x999)) },
      { name: 'TPM_CAP_ALG RSA', cmd: cap(CAP.ALG, u32(ALG.RSA)) },
      { name: 'TPM_CAP_ALG SHA', cmd: cap(CAP.ALG, u32(ALG.SHA)) },
      { name: 'TPM_CAP_ALG AES128', cmd: cap(CAP.ALG, u32(ALG.AES128)) },
      { name: 'TPM_CAP_PID OIAP', cmd: cap(CAP.PID, '0001') },
      { name: 'TPM_CAP_PID OSAP', cmd: cap(CAP.PID, '0002') },
      { name: 'TPM_CAP_PID unknown', cmd: cap(CAP.PID, '0009') },
      { name: 'TPM_CAP_SELECT_SIZE 3', cmd: cap(CAP.SELECT_SIZE, '01020003') },
      { name: 'TPM_CAP_SELECT_SIZE 4', cmd: cap(CAP.SELECT_SIZE, '01020004') },
      { name: 'TPM_CAP_KEY_HANDLE', cmd: cap(CAP.KEY_HANDLE) },
      { name: 'TPM_CAP_HANDLE keys', cmd: cap(CAP.HANDLE, u32(RT.KEY)) },
      { name: 'TPM_CAP_HANDLE transport', cmd: cap(CAP.HANDLE, u32(RT.TRANS)) },
      { name: 'TPM_CAP_HANDLE hash', cmd: cap(CAP.HANDLE, u32(RT.HASH)) },
      { name: 'TPM_CAP_NV_LIST', cmd: cap(CAP.NV_LIST) },
      { name: 'TPM_CAP_NV_INDEX undefined', cmd: cap(CAP.NV_INDEX, u32(0x1000f000)) },
      { name: 'TPM_CAP_MFR', cmd: cap(CAP.MFR) },
      { name: 'unknown capability area', cmd: cap(0x99) },
      { name: 'TPM_CAP_VERSION_VAL (structure)', cmd: cap(CAP.VERSION_VAL), mode: (b) => Buffer.concat([b.subarray(0, 18), b.subarray(20, 23), b.subarray(27)]) },
    ];
    compare(cases, ours.raw, await runOn(swtpm, cases));
  });

  test('Extend and PCRRead give the same PCR values as swtpm', async () => {
    const cases: Case[] = [];
    for (const [pcr, byte] of [[0, 0x11], [10, 0x22], [10, 0x33], [16, 0x44], [23, 0x55]] as const) {
      cases.push({ name: `extend ${pcr}`, cmd: frame(C1, ORD.Extend, u32(pcr) + byte.toString(16).repeat(20)) });
    }
    for (const pcr of [0, 10, 16, 17, 22, 23]) cases.push({ name: `read ${pcr}`, cmd: frame(C1, ORD.PCRRead, u32(pcr)) });
    cases.push({ name: 'reset 16 and 23', cmd: frame(C1, ORD.PCR_Reset, '0003000081') });
    cases.push({ name: 'read 16 after reset', cmd: frame(C1, ORD.PCRRead, u32(16)) });
    compare(cases, ours.raw, await runOn(swtpm, cases));
  });

  test('malformed and refused commands get the same return codes as swtpm', async () => {
    const cases: Case[] = [
      { name: 'bad tag', cmd: frame(0xc7, ORD.PCRRead, u32(0)) },
      { name: 'response tag as a command', cmd: frame(0xc4, ORD.PCRRead, u32(0)) },
      { name: 'AUTH1 tag on PCRRead', cmd: frame(0xc2, ORD.PCRRead, u32(0)) },
      { name: 'unknown ordinal', cmd: frame(C1, 0x12345) },
      { name: 'paramSize larger than sent', cmd: Buffer.from('00c100000020000000150000000000', 'hex') },
      { name: 'paramSize smaller than sent', cmd: Buffer.from('00c10000000900000015', 'hex') },
      { name: 'truncated Extend', cmd: frame(C1, ORD.Extend, u32(10) + '11'.repeat(10)) },
      { name: 'Extend with a byte too many', cmd: frame(C1, ORD.Extend, u32(10) + '11'.repeat(21)) },
      { name: 'PCRRead with a byte too many', cmd: frame(C1, ORD.PCRRead, u32(0) + '00') },
      { name: 'PCRRead 24', cmd: frame(C1, ORD.PCRRead, u32(24)) },
      { name: 'Extend 48', cmd: frame(C1, ORD.Extend, u32(48) + '11'.repeat(20)) },
      { name: 'PCR_Reset 17 at locality 0', cmd: frame(C1, ORD.PCR_Reset, '0003000002') },
      { name: 'PCR_Reset 0', cmd: frame(C1, ORD.PCR_Reset, '0003010000') },
      { name: 'PCR_Reset with a 4-byte selection', cmd: frame(C1, ORD.PCR_Reset, '000400000001') },
      { name: 'second Startup', cmd: frame(C1, ORD.Startup, '0001') },
      { name: 'truncated Startup', cmd: frame(C1, ORD.Startup, '00') },
      { name: 'DirRead 1', cmd: frame(C1, ORD.DirRead, u32(1)) },
      { name: 'DirRead 0', cmd: frame(C1, ORD.DirRead, u32(0)) },
      { name: 'ReadCounter of no counter', cmd: frame(C1, ORD.ReadCounter, u32(0)) },
      { name: 'NV_ReadValue of an undefined index', cmd: frame(C1, ORD.NV_ReadValue, u32(0x1000f000) + u32(0) + u32(16)) },
      { name: 'FlushSpecific of an unknown key', cmd: frame(C1, ORD.FlushSpecific, u32(0x12345678) + u32(RT.KEY)) },
      { name: 'FlushSpecific of an unknown session', cmd: frame(C1, ORD.FlushSpecific, u32(0x12345678) + u32(RT.AUTH)) },
      { name: 'GetRandom 0', cmd: frame(C1, ORD.GetRandom, u32(0)) },
      { name: 'ReadPubek without an EK', cmd: frame(C1, ORD.ReadPubek, '00'.repeat(20)) },
      { name: 'OSAP for the SRK without an owner', cmd: frame(C1, ORD.OSAP, '0004' + u32(KH.SRK) + '22'.repeat(20)) },
      { name: 'OwnerClear without an owner', cmd: frame(0xc2, ORD.OwnerClear, u32(0x02000000) + '00'.repeat(20) + '00' + '00'.repeat(20)) },
      { name: 'PhysicalPresence PRESENT before CMD_ENABLE', cmd: frame(C1, ORD.TSC_PhysicalPresence, '0008') },
      { name: 'PhysicalPresence PRESENT|NOTPRESENT', cmd: frame(C1, ORD.TSC_PhysicalPresence, '0018') },
    ];
    compare(cases, ours.raw, await runOn(swtpm, cases));
  });

  test('endorsement key creation and physical presence behave as on swtpm', async () => {
    const ekParms = u32(ALG.RSA) + '0003' + '0001' + u32(12) + u32(2048) + u32(2) + u32(0);
    // Header, TPM_KEY_PARMS and the modulus size: everything but the key itself and the checksum.
    const pubekShape = (b: Buffer) => b.subarray(0, 10 + 24 + 4);
    const cases: Case[] = [
      { name: 'CreateEndorsementKeyPair', cmd: frame(C1, ORD.CreateEndorsementKeyPair, '33'.repeat(20) + ekParms), mode: pubekShape },
      { name: 'CreateEndorsementKeyPair again', cmd: frame(C1, ORD.CreateEndorsementKeyPair, '33'.repeat(20) + ekParms) },
      { name: 'ReadPubek', cmd: frame(C1, ORD.ReadPubek, '44'.repeat(20)), mode: pubekShape },
      { name: 'PP CMD_ENABLE', cmd: frame(C1, ORD.TSC_PhysicalPresence, '0020') },
      { name: 'PP PRESENT', cmd: frame(C1, ORD.TSC_PhysicalPresence, '0008') },
      { name: 'volatile flags with presence', cmd: cap(CAP.FLAG, u32(0x109)) },
      { name: 'permanent flags with CMD_ENABLE', cmd: cap(CAP.FLAG, u32(0x108)) },
      { name: 'PP NOTPRESENT', cmd: frame(C1, ORD.TSC_PhysicalPresence, '0010') },
      { name: 'volatile flags without presence', cmd: cap(CAP.FLAG, u32(0x109)) },
    ];
    compare(cases, ours.raw, await runOn(swtpm, cases));
  });

  /** One owned-TPM flow, summarized by what does not depend on random values. */
  async function ownedFlow(c: Tpm12Client, extendPcr: (pcr: number, d: Buffer) => Promise<void>) {
    const summary: Record<string, unknown> = {};
    const srk = await c.takeOwnership(OWNER_AUTH, SRK_AUTH);
    summary.srk = { key12: srk.key12, usage: srk.keyUsage, flags: srk.keyFlags, authDataUsage: srk.authDataUsage, parms: srk.algorithmParms, modulusBytes: srk.pubKey.length, encData: srk.encData.length };
    const keyAuth = sha1(Buffer.from('signing key'));
    const wrapped = await c.createWrapKey(KH.SRK, SRK_AUTH, { usage: KEY_USAGE.SIGNING }, keyAuth);
    summary.wrapped = { key12: wrapped.key12, usage: wrapped.keyUsage, flags: wrapped.keyFlags, parms: wrapped.algorithmParms, pcrInfo: wrapped.pcrInfo.length, modulusBytes: wrapped.pubKey.length, encData: wrapped.encData.length };
    const h = await c.loadKey2(KH.SRK, SRK_AUTH, wrapped);
    const pub = await c.getPubKey(h, keyAuth);
    const digest = sha1(Buffer.from('message'));
    summary.signVerifies = verifyDigestSignature(pub, digest, await c.sign(h, keyAuth, digest));
    const nonce = Buffer.alloc(20, 0x5a);
    const q = await c.quote(h, keyAuth, nonce, [0, 10]);
    summary.quote = { verifies: verifySha1Signature(pub, q.signed, q.sig), values: q.pcrValues.length };
    const q2 = await c.quote2(h, keyAuth, nonce, [0, 10], true);
    summary.quote2 = { verifies: verifySha1Signature(pub, q2.signed, q2.sig), select: q2.pcrData.pcrSelection.toString('hex'), locality: q2.pcrData.localityAtRelease, versionInfoTag: q2.versionInfo.readUInt16BE(0) };
    const cert = await c.certifyKey(h, keyAuth, h, keyAuth, nonce);
    summary.certify = { verifies: verifySha1Signature(pub, cert.certifyInfo, cert.sig), first: cert.certifyInfo.subarray(0, 4).toString('hex'), length: cert.certifyInfo.length };
    const dataAuth = sha1(Buffer.from('data'));
    const pcr16 = await c.pcrRead(16);
    const blob = await c.seal(KH.SRK, SRK_AUTH, dataAuth, Buffer.from('sealed secret'), pcrInfoLongFor([16], [pcr16]));
    summary.sealed = { data12: blob.data12, et: blob.et, sealInfo: blob.sealInfo.length, encData: blob.encData.length };
    summary.unsealed = (await c.unseal(KH.SRK, SRK_AUTH, dataAuth, blob)).toString();
    await extendPcr(16, Buffer.alloc(20, 1));
    summary.unsealAfterExtend = await c.unseal(KH.SRK, SRK_AUTH, dataAuth, blob).then(() => 'ok', (e: Tpm12ResponseError) => e.rc);
    summary.wrongOwnerAuth = await c.dirWriteAuth(sha1(Buffer.from('nope')), 0, Buffer.alloc(20)).then(() => 'ok', (e: Tpm12ResponseError) => e.rc);
    await c.dirWriteAuth(OWNER_AUTH, 0, Buffer.alloc(20, 0x77));
    summary.dir = (await c.dirRead(0)).toString('hex');
    const ctr = await c.createCounter(OWNER_AUTH, keyAuth, Buffer.from('CNT1'));
    const v1 = await c.readCounter(ctr.countID);
    const v2 = await c.incrementCounter(ctr.countID, keyAuth);
    summary.counter = { label: v1.label.toString(), step: v2.counter - v1.counter, created: ctr.value.counter === v1.counter };
    const idAuth = sha1(Buffer.from('aik'));
    const id = await c.makeIdentity(OWNER_AUTH, SRK_AUTH, idAuth, sha1(Buffer.from('label')));
    summary.identity = { usage: id.idKey.keyUsage, parms: id.idKey.algorithmParms, binding: id.identityBinding.length };
    await c.flushSpecific(h, RT.KEY);
    summary.flushedKeyUse = await c.getPubKey(h, keyAuth).then(() => 'ok', (e: Tpm12ResponseError) => e.rc);
    return summary;
  }

  test('an owned TPM runs the same flows with the same structure on vtpmd and swtpm', async () => {
    const mine = makeTpm();
    const theirs = new Tpm12Client(swtpm.exec);
    const ourSummary = await ownedFlow(mine.client, async (p, d) => void (await mine.client.extend(p, d)));
    const theirSummary = await ownedFlow(theirs, async (p, d) => void (await theirs.extend(p, d)));
    assert.deepEqual(ourSummary, theirSummary);
    assert.equal(ourSummary.unsealed, 'sealed secret');
    assert.equal(ourSummary.unsealAfterExtend, RC.WRONGPCRVAL);
    assert.equal(ourSummary.wrongOwnerAuth, RC.AUTHFAIL);
    // Bad authorization handles after ownership, byte for byte.
    const badAuth = frame(0xc2, ORD.DirWriteAuth, u32(0) + '00'.repeat(20) + u32(0x0abcdef0) + '00'.repeat(20) + '00' + '00'.repeat(20));
    assert.equal(mine.raw(badAuth).toString('hex'), (await swtpm.exec(badAuth)).toString('hex'));
    const cut = frame(0xc2, ORD.GetPubKey, u32(KH.SRK) + u32(0x02000000));
    assert.equal(mine.raw(cut).toString('hex'), (await swtpm.exec(cut)).toString('hex'));
  });

  test('`vtpmd socket` without --tpm2 serves a TPM 1.2 that runs the owned flows as swtpm does', async () => {
    const served = await Swtpm12.start('vtpmd');
    const fresh = await Swtpm12.start('swtpm');
    try {
      const ours = new Tpm12Client(served.exec);
      const theirs = new Tpm12Client(fresh.exec);
      // vtpmd's manufacturer made the EK at first power-on; swtpm's fresh state has none.
      await theirs.createEndorsementKeyPair();
      const ourSummary = await ownedFlow(ours, async (p, d) => void (await ours.extend(p, d)));
      const theirSummary = await ownedFlow(theirs, async (p, d) => void (await theirs.extend(p, d)));
      assert.deepEqual(ourSummary, theirSummary);
      assert.equal(ourSummary.unsealed, 'sealed secret');
    } finally {
      await served.stop();
      await fresh.stop();
    }
  });
});

describe('TPM 1.2 engine flows checked with openssl and a privacy CA', { skip: unavailable }, () => {
  test('a key made by CreateWrapKey and loaded by LoadKey2 signs what openssl verifies', { skip: noOpenssl }, async () => {
    const t = makeTpm();
    await t.client.takeOwnership(OWNER_AUTH, SRK_AUTH);
    const keyAuth = sha1(Buffer.from('k'));
    const h = await t.client.loadKey2(KH.SRK, SRK_AUTH, await t.client.createWrapKey(KH.SRK, SRK_AUTH, { usage: KEY_USAGE.SIGNING }, keyAuth));
    const pub = await t.client.getPubKey(h, keyAuth);
    const message = Buffer.from('signed by a TPM 1.2 key');
    const sig = await t.client.sign(h, keyAuth, sha1(message));
    const dir = mkdtempSync(join(tmpdir(), 'vtpmd-tpm12-openssl-'));
    try {
      writeFileSync(join(dir, 'key.pem'), pubkeyPem(pub));
      writeFileSync(join(dir, 'msg'), message);
      writeFileSync(join(dir, 'sig'), sig);
      const out = execFileSync('openssl', ['dgst', '-sha1', '-verify', join(dir, 'key.pem'), '-signature', join(dir, 'sig'), join(dir, 'msg')], { encoding: 'utf8' });
      assert.match(out, /Verified OK/);
      writeFileSync(join(dir, 'msg'), Buffer.from('something else'));
      assert.throws(() => execFileSync('openssl', ['dgst', '-sha1', '-verify', join(dir, 'key.pem'), '-signature', join(dir, 'sig'), join(dir, 'msg')], { stdio: 'pipe' }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('Quote and Quote2 sign the PCR values the TPM reports', async () => {
    const t = makeTpm();
    const c = t.client;
    await c.takeOwnership(OWNER_AUTH, SRK_AUTH);
    await c.extend(3, sha1(Buffer.from('boot')));
    await c.extend(4, sha1(Buffer.from('kernel')));
    const keyAuth = sha1(Buffer.from('aik'));
    const h = await c.loadKey2(KH.SRK, SRK_AUTH, await c.createWrapKey(KH.SRK, SRK_AUTH, { usage: KEY_USAGE.SIGNING }, keyAuth));
    const pub = await c.getPubKey(h, keyAuth);
    const values = [await c.pcrRead(3), await c.pcrRead(4)];
    const nonce = sha1(Buffer.from('verifier nonce'));
    const q = await c.quote(h, keyAuth, nonce, [3, 4]);
    assert.deepEqual(q.pcrValues, values);
    assert.ok(verifySha1Signature(pub, q.signed, q.sig));
    assert.ok(q.signed.subarray(8, 28).equals(compositeHash([3, 4], values)));
    const q2 = await c.quote2(h, keyAuth, nonce, [3, 4], false);
    assert.ok(q2.pcrData.digestAtRelease.equals(compositeHash([3, 4], values)));
    assert.ok(verifySha1Signature(pub, q2.signed, q2.sig));
    assert.ok(!verifySha1Signature(pub, Buffer.concat([q2.signed, Buffer.from([0])]), q2.sig));
  });

  test('MakeIdentity then ActivateIdentity returns the session key a privacy CA encrypted to the EK', async () => {
    const t = makeTpm();
    const c = t.client;
    const ek = await c.readPubek();
    await c.takeOwnership(OWNER_AUTH, SRK_AUTH, ek);
    const idAuth = sha1(Buffer.from('aik'));
    const label = sha1(Buffer.from('privacy CA label'));
    const { idKey, identityBinding } = await c.makeIdentity(OWNER_AUTH, SRK_AUTH, idAuth, label);
    const aikPub = { algorithmParms: idKey.algorithmParms, pubKey: idKey.pubKey };
    // The privacy CA checks the binding, then encrypts a session key and the AIK digest to the EK.
    const contents = enc(identityContents, { ver: Buffer.from([1, 1, 0, 0]), ordinal: ORD.MakeIdentity, labelPrivCADigest: label, identityPubKey: aikPub });
    assert.ok(verifySha1Signature(aikPub, contents, identityBinding));
    const sessionKey = { algId: ALG.AES128, encScheme: ES.SYM_CTR, data: Buffer.alloc(16, 0x42) };
    const blob = encryptTcpa(ek, enc(asymCaContents, { sessionKey, idDigest: sha1(enc(pubkey, aikPub)) }), (n) => Buffer.alloc(n, 9));
    const h = await c.loadKey2(KH.SRK, SRK_AUTH, idKey);
    const got = await c.activateIdentity(h, idAuth, OWNER_AUTH, blob);
    assert.deepEqual(got, sessionKey);
    const wrongDigest = encryptTcpa(ek, enc(asymCaContents, { sessionKey, idDigest: Buffer.alloc(20) }), (n) => Buffer.alloc(n, 9));
    await assert.rejects(c.activateIdentity(h, idAuth, OWNER_AUTH, wrongDigest), (e: Tpm12ResponseError) => e.rc === RC.BAD_PARAMETER);
  });
});

