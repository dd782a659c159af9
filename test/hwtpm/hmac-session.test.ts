import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import { Chip } from '../../src/hwtpm/chip.ts';
import { Tpm2Client, Tpm2CommandError, type Exec } from '../../src/hwtpm/tpm2-client.ts';
import { eccSigningTemplate, sealedTemplate, srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { OBJECT_ATTR as A } from '../../src/tpm/tpm2/types/public.ts';
import { CC, RH, ST } from '../../src/tpm/tpm2/constants.ts';
import { RC } from '../../src/tpm/tpm2/rc.ts';
import { MemoryStateStore } from '../../src/tpm/tpm2/state/store.ts';

const AUTH = Buffer.from('a secret the guest never sees!!!', 'latin1');

async function keyWithAuth(exec: Exec) {
  const tpm = new Tpm2Client(exec);
  await tpm.startup();
  const parent = await tpm.createPrimary(RH.ENDORSEMENT, eccSigningTemplate(false));
  const key = await tpm.createPrimary(RH.OWNER, eccSigningTemplate(false), { userAuth: AUTH });
  assert.ok(!parent.name.equals(key.name));
  return { tpm, parent, key };
}

function sign(tpm: Tpm2Client, key: { handle: number; name: Buffer }, auth: Parameters<Tpm2Client['call']>[2][number]) {
  return tpm.call(CC.Sign, [key.handle], [auth], {
    digest: Buffer.alloc(32, 7),
    inScheme: { scheme: 0x0018, hashAlg: 0x000b },
    validation: { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: Buffer.alloc(0) },
  });
}

/** A started chip with a hash (or, for hashAlg NULL, event) sequence under `seqAuth` and an HMAC session. */
async function sequenceWithSession(seqAuth: Buffer, hashAlg: number) {
  const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
  const tpm = new Tpm2Client((c) => chip.execute(c, 0));
  await tpm.startup();
  const seq = (await tpm.call(CC.HashSequenceStart, [], [], { auth: seqAuth, hashAlg })).handle!;
  return { tpm, seq, session: await tpm.startHmacSession() };
}

describe('Tpm2Client HMAC sessions', () => {
  test('a key is used through an HMAC session with its authValue; nonces roll from one command to the next', async () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    const { tpm, key } = await keyWithAuth((c) => chip.execute(c, 0));
    const session = await tpm.startHmacSession();
    const first = session.nonceTPM;
    await sign(tpm, key, { hmacSession: session, authValue: AUTH, names: [key.name] });
    assert.ok(!session.nonceTPM.equals(first), 'the TPM answered with a new nonce');
    await sign(tpm, key, { hmacSession: session, authValue: AUTH, names: [key.name] });
  });

  test('SequenceComplete flushes the sequence, yet its response HMAC is keyed with the sequence authValue', async () => {
    const seqAuth = Buffer.from('sequence auth');
    const { tpm, seq, session } = await sequenceWithSession(seqAuth, 0x000b);
    const auth = { hmacSession: session, authValue: seqAuth, names: [Buffer.alloc(0)] };
    await tpm.call(CC.SequenceUpdate, [seq], [auth], { buffer: Buffer.from('hello, ') });
    const done = await tpm.call(CC.SequenceComplete, [seq], [auth], { buffer: Buffer.from('world'), hierarchy: RH.NULL });
    assert.deepEqual(done.params.result, createHash('sha256').update('hello, world').digest());
  });

  test('EventSequenceComplete flushes the sequence (its second handle), yet the response HMAC is keyed with the sequence authValue', async () => {
    const seqAuth = Buffer.from('event auth');
    const { tpm, seq, session } = await sequenceWithSession(seqAuth, 0x0010);
    const pcr = 16;
    const pcrName = Buffer.alloc(4);
    pcrName.writeUInt32BE(pcr);
    const done = await tpm.call(CC.EventSequenceComplete, [pcr, seq], [{ password: '' }, { hmacSession: session, authValue: seqAuth, names: [pcrName, Buffer.alloc(0)] }], { buffer: Buffer.from('event') });
    const sha256 = (done.params.results as { hashAlg: number; digest: Buffer }[]).find((d) => d.hashAlg === 0x000b)!;
    assert.deepEqual(sha256.digest, createHash('sha256').update('event').digest());
  });

  test('a wrong authValue or a wrong Name is TPM_RC_AUTH_FAIL for session 1 (0x98E)', async () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    const { tpm, key, parent } = await keyWithAuth((c) => chip.execute(c, 0));
    const session = await tpm.startHmacSession();
    const rc = (e: unknown) => (e instanceof Tpm2CommandError ? e.rc : -1);
    await assert.rejects(sign(tpm, key, { hmacSession: session, authValue: Buffer.from('guess'), names: [key.name] }), (e) => rc(e) === (RC.AUTH_FAIL | 0x900));
    await assert.rejects(sign(tpm, key, { hmacSession: session, authValue: AUTH, names: [parent.name] }), (e) => rc(e) === (RC.AUTH_FAIL | 0x900));
    await sign(tpm, key, { hmacSession: session, authValue: AUTH, names: [key.name] });
  });

  test('a response altered on its way back is refused, not returned', async () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    let tamper = false;
    const { tpm, key } = await keyWithAuth(async (c) => {
      const r = Buffer.from(await chip.execute(c, 0));
      // Flip a byte of the signature (the response parameters start after the 4-byte parameterSize).
      if (tamper) r[20]! ^= 1;
      return r;
    });
    const session = await tpm.startHmacSession();
    tamper = true;
    await assert.rejects(sign(tpm, key, { hmacSession: session, authValue: AUTH, names: [key.name] }), /response HMAC .* does not verify/);
  });

  test('a salted session keeps a secret off the bus both ways: sealed data encrypted in Create, unsealed data encrypted in the response', async () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    const seen: Buffer[] = [];
    const tpm = new Tpm2Client(async (c) => {
      seen.push(Buffer.from(c));
      const r = Buffer.from(await chip.execute(c, 0));
      seen.push(r);
      return r;
    });
    await tpm.startup();
    const srk = await tpm.createPrimary(RH.OWNER, srkTemplate());
    const salted = await tpm.startHmacSession({ handle: srk.handle, public: srk.outPublic });
    assert.equal(salted.sessionKey.length, 32);
    const secret = Buffer.from('only the two ends may read this');
    const unsealable = { ...sealedTemplate(Buffer.alloc(0)), objectAttributes: A.fixedTPM | A.fixedParent | A.noDA | A.userWithAuth };
    const created = await tpm.call(CC.Create, [srk.handle], [{ hmacSession: salted, authValue: Buffer.alloc(0), names: [srk.name], decrypt: true }], {
      inSensitive: { userAuth: AUTH, data: secret },
      inPublic: unsealable,
      outsideInfo: Buffer.alloc(0),
      creationPCR: [],
    });
    const item = await tpm.load(srk.handle, created.params.outPrivate, created.params.outPublic);
    const out = await tpm.call(CC.Unseal, [item.handle], [{ hmacSession: salted, authValue: AUTH, names: [item.name], encrypt: true }]);
    assert.deepEqual(out.params.outData, secret);
    for (const bytes of seen) {
      assert.equal(bytes.indexOf(secret), -1, 'the secret never crossed in the clear');
      assert.equal(bytes.indexOf(AUTH), -1, 'nor the authValue');
    }
    // The same unseal without response encryption shows what the salted session hid.
    seen.length = 0;
    await tpm.call(CC.Unseal, [item.handle], [{ hmacSession: salted, authValue: AUTH, names: [item.name] }]);
    assert.ok(seen.some((b) => b.indexOf(secret) >= 0));
  });

  test('a salt for another key does not start a session; a TPM2B-less parameter cannot be encrypted', async () => {
    const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
    const tpm = new Tpm2Client((c) => chip.execute(c, 0));
    await tpm.startup();
    const srk = await tpm.createPrimary(RH.OWNER, srkTemplate());
    const other = await tpm.createPrimary(RH.ENDORSEMENT, srkTemplate());
    await assert.rejects(tpm.startHmacSession({ handle: srk.handle, public: other.outPublic }), (e) => e instanceof Tpm2CommandError && e.rc === (RC.VALUE | 0x2c0));
    const salted = await tpm.startHmacSession({ handle: srk.handle, public: srk.outPublic });
    await assert.rejects(tpm.call(CC.FlushContext, [], [{ hmacSession: salted, authValue: Buffer.alloc(0), names: [], decrypt: true }], { flushHandle: 0x80000000 }), /not a TPM2B/);
  });
});
