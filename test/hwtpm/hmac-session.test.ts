import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Chip } from '../../src/hwtpm/chip.ts';
import { Tpm2Client, Tpm2CommandError, type Exec } from '../../src/hwtpm/tpm2-client.ts';
import { eccSigningTemplate } from '../../src/hwtpm/tpm2-templates.ts';
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
});
