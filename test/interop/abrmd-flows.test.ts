/**
 * Authorization, policy, dictionary-attack, NV and cryptographic flows driven by tpm2-tools
 * through tpm2-abrmd in front of vtpmd. tpm2-abrmd saves and flushes every object and session
 * after each command and loads them back before the next, and every tool invocation is a new
 * client connection, so each flow here also crosses vtpmd's context management many times:
 *
 *  1. tpm2_changeauth of the owner hierarchy and of a loaded object;
 *  2. PolicyPassword, 3. PolicySecret (owner hierarchy and object), 4. PolicyAuthorize with an
 *     off-TPM ECC authority (tpm2_loadexternal, a tpm2_verifysignature ticket) over PolicyPCR;
 *  5. dictionary-attack lockout and its reset with lockoutAuth;
 *  6. tpm2_nvreadlock;
 *  7. tpm2_hmac, tpm2_rsaencrypt/rsadecrypt and tpm2_encryptdecrypt with imported keys (so the
 *     results can be checked against node:crypto), and tpm2_quote with an ECC key;
 *  8. seal, unseal and quote through salted HMAC sessions encrypting parameters both ways.
 *
 * Refusals assert the exact ESAPI call and response code tpm2-tools prints. Policy digests are
 * recomputed here with node:crypto (Part 3's PolicyUpdate).
 */
import assert from 'node:assert/strict';
import { constants, createCipheriv, createHash, createHmac, createPublicKey, privateDecrypt, publicEncrypt, randomBytes, sign, verify } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { generatePrivateKey } from '../../src/tpm/crypto/rsa.ts';
import { AbrmdStack, abrmdUnavailable, rejectsWithRc } from './abrmd-harness.ts';
import { parsePcrRead, parseVariables } from './harness.ts';

// Command codes (Part 2, table 12) that policy digests are extended with.
const CC = { PolicySecret: 0x151, PolicyAuthorize: 0x16a, PolicyAuthValue: 0x16b, PolicyPCR: 0x17f } as const;
// Response codes as tpm2-tools prints them.
const RC = {
  /** TPM_RC_VALUE, parameter 1. */
  VALUE_P1: 0x1c4,
  /** TPM_RC_AUTH_UNAVAILABLE. */
  AUTH_UNAVAILABLE: 0x12f,
  /** TPM_RC_NV_LOCKED. */
  NV_LOCKED: 0x148,
  /** TPM_RC_ATTRIBUTES, handle 2. */
  ATTRIBUTES_H2: 0x282,
  /** TPM_RC_SIGNATURE, parameter 2. */
  SIGNATURE_P2: 0x2db,
  /** TPM_RC_LOCKOUT. */
  LOCKOUT: 0x921,
  /** TPM_RC_AUTH_FAIL (DA counter incremented), session 1. */
  AUTH_FAIL_S1: 0x98e,
  /** TPM_RC_POLICY_FAIL, session 1. */
  POLICY_FAIL_S1: 0x99d,
  /** TPM_RC_BAD_AUTH (no DA implications), session 1. */
  BAD_AUTH_S1: 0x9a2,
} as const;
const TPM_GENERATED = 0xff544347;
const TPM_ST_ATTEST_QUOTE = 0x8018;
const TPM_ST_VERIFIED = 0x8022;
const TPM_RH_OWNER = 0x40000001;

const sha256 = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const ZERO = Buffer.alloc(32);
/** PolicyUpdate with an empty policyRef from the all-zero digest: H(H(0…0 ‖ cc ‖ arg) ‖ ''). */
const policyUpdate = (cc: number, arg: Buffer) => sha256(sha256(ZERO, u32(cc), arg));
/** TPM2_PolicyPCR over sha256:16 when PCR 16 holds `pcr16` (TPML_PCR_SELECTION of one bank, PCR 16). */
const pcr16Policy = (pcr16: Buffer) => sha256(ZERO, u32(CC.PolicyPCR), Buffer.from('00000001000b03000001', 'hex'), sha256(pcr16));
const hex = (n: number) => randomBytes(n).toString('hex');

/** The parts of a TPMS_ATTEST from TPM2_Quote that the tests check (Part 2, 10.12.8 and 10.12.12). */
function parseQuote(attest: Buffer): { magic: number; type: number; extraData: Buffer; pcrDigest: Buffer } {
  let o = 6;
  const b2b = () => {
    const size = attest.readUInt16BE(o);
    const value = attest.subarray(o + 2, o + 2 + size);
    o += 2 + size;
    return value;
  };
  b2b(); // qualifiedSigner
  const extraData = b2b();
  o += 17 + 8; // clockInfo, firmwareVersion
  const selections = attest.readUInt32BE(o);
  o += 4;
  for (let i = 0; i < selections; i++) o += 3 + attest.readUInt8(o + 2);
  const pcrDigest = b2b();
  assert.equal(o, attest.length, 'nothing after the TPMS_QUOTE_INFO');
  return { magic: attest.readUInt32BE(0), type: attest.readUInt16BE(4), extraData, pcrDigest };
}

const skip = abrmdUnavailable();

describe('tpm2-tools authorization, policy and crypto flows through tpm2-abrmd in front of vtpmd', { skip }, () => {
  let stack: AbrmdStack | undefined;
  const s = () => stack!;
  const f = (name: string) => s().file(name);
  const tool = (cmd: string, ...args: string[]) => s().tool(cmd, ...args);
  const fails = (call: string, rc: number, cmd: string, ...args: string[]) => s().fails(call, rc, cmd, ...args);
  const vars = async () => parseVariables(await tool('tpm2_getcap', 'properties-variable'));
  /** Flushes a saved session, whatever state a failed tool left it in. */
  const flushSession = (file: string) => tool('tpm2_flushcontext', file).catch(() => undefined);

  /** Seals `data` under the storage primary with `args` (auth, policy, attributes); loads it as `${name}.ctx`. */
  const seal = async (name: string, data: Buffer, ...args: string[]) => {
    writeFileSync(f(`${name}.in`), data);
    await tool('tpm2_create', '-C', f('primary.ctx'), '-i', f(`${name}.in`), '-u', f(`${name}.pub`), '-r', f(`${name}.priv`), ...args);
    await tool('tpm2_load', '-C', f('primary.ctx'), '-u', f(`${name}.pub`), '-r', f(`${name}.priv`), '-c', f(`${name}.ctx`));
  };
  /** Sealed under a policy only: without userWithAuth a password or HMAC session cannot unseal it. */
  const sealUnderPolicy = (name: string, data: Buffer, policy: string, ...args: string[]) =>
    seal(name, data, '-L', f(policy), '-a', 'fixedtpm|fixedparent|noda', ...args);
  /** Unseals `ctx` with `auth` (as tpm2_unseal -p takes it) and returns the bytes. */
  const unseal = async (ctx: string, auth: string, ...args: string[]): Promise<Buffer> => {
    const out = f(`${ctx}.unsealed`);
    await tool('tpm2_unseal', '-c', f(ctx), '-p', auth, '-o', out, ...args);
    return readFileSync(out);
  };
  /** A trial session running one policy command; returns the digest it wrote to `out`. */
  const trial = async (out: string, cmd: string, ...args: string[]): Promise<Buffer> => {
    await tool('tpm2_startauthsession', '-S', f('trial.ctx'));
    try {
      await tool(cmd, '-S', f('trial.ctx'), '-L', f(out), ...args);
    } finally {
      await flushSession(f('trial.ctx'));
    }
    return readFileSync(f(out));
  };
  /**
   * A real policy session satisfied by `policy` (each a tool and its arguments bar -S), then
   * Unseal with the session (and `password`, for PolicyPassword and PolicyAuthValue).
   */
  const unsealWithPolicy = async (ctx: string, password: string, ...policy: string[][]): Promise<Buffer> => {
    const session = f('policy.ctx');
    await tool('tpm2_startauthsession', '--policy-session', '-S', session);
    try {
      for (const [cmd, ...args] of policy) await tool(cmd!, '-S', session, ...args);
      return await unseal(ctx, `session:${session}${password ? `+${password}` : ''}`);
    } finally {
      await flushSession(session);
    }
  };
  /** A restricted ECDSA P-256 signing key under the storage primary, loaded as `${name}.ctx`. */
  const createAk = async (name: string) => {
    await tool('tpm2_create', '-C', f('primary.ctx'), '-G', 'ecc256:ecdsa-sha256:null', '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign|noda', '-u', f(`${name}.pub`), '-r', f(`${name}.priv`));
    await tool('tpm2_load', '-C', f('primary.ctx'), '-u', f(`${name}.pub`), '-r', f(`${name}.priv`), '-c', f(`${name}.ctx`));
    await tool('tpm2_readpublic', '-c', f(`${name}.ctx`), '-f', 'pem', '-o', f(`${name}.pem`));
  };
  /**
   * Quotes sha256:0,16 with `ak` (and `auth`), then checks the quote: tpm2_checkquote accepts it
   * against the nonce, node:crypto verifies the signature, the pcrDigest is that of the PCR values
   * read back, and a different nonce is refused.
   */
  const quoteAndCheck = async (ak: string, tag: string, ...auth: string[]) => {
    const file = (n: string) => f(`${tag}-${n}`);
    await tool('tpm2_pcrextend', `16:sha256=${hex(32)}`);
    const pcrs = parsePcrRead(await tool('tpm2_pcrread', 'sha256:0,16')).get('sha256')!;
    const nonce = randomBytes(16);
    await tool('tpm2_quote', '-c', f(`${ak}.ctx`), ...auth, '-l', 'sha256:0,16', '-q', nonce.toString('hex'), '-m', file('q.msg'), '-s', file('q.sig'), '-f', 'plain', '-o', file('q.pcrs'), '-g', 'sha256');
    const attest = readFileSync(file('q.msg'));
    const quote = parseQuote(attest);
    assert.equal(quote.magic, TPM_GENERATED);
    assert.equal(quote.type, TPM_ST_ATTEST_QUOTE);
    assert.deepEqual(quote.extraData, nonce, 'the nonce is the extraData');
    assert.deepEqual(quote.pcrDigest, sha256(Buffer.from(pcrs.get(0)!, 'hex'), Buffer.from(pcrs.get(16)!, 'hex')), 'pcrDigest = H(PCR0 ‖ PCR16)');
    assert.ok(verify('sha256', attest, createPublicKey(readFileSync(f(`${ak}.pem`))), readFileSync(file('q.sig'))), 'node:crypto verifies the ECDSA signature');
    // tpm2_checkquote wants the signature as a TPMT_SIGNATURE.
    await tool('tpm2_quote', '-c', f(`${ak}.ctx`), ...auth, '-l', 'sha256:0,16', '-q', nonce.toString('hex'), '-m', file('q2.msg'), '-s', file('q2.sig'), '-o', file('q2.pcrs'), '-g', 'sha256');
    await tool('tpm2_checkquote', '-u', f(`${ak}.pub`), '-m', file('q2.msg'), '-s', file('q2.sig'), '-f', file('q2.pcrs'), '-g', 'sha256', '-q', nonce.toString('hex'));
    await assert.rejects(
      tool('tpm2_checkquote', '-u', f(`${ak}.pub`), '-m', file('q2.msg'), '-s', file('q2.sig'), '-f', file('q2.pcrs'), '-g', 'sha256', '-q', hex(16)),
      /Error validating nonce from quote/,
    );
  };

  before(async () => {
    stack = await AbrmdStack.start('vtpmd-abrmd-flows');
    await tool('tpm2_startup', '-c');
    await tool('tpm2_createprimary', '-C', 'o', '-G', 'ecc', '-c', f('primary.ctx'));
  });

  after(async () => {
    await stack?.stop();
  });

  it('tpm2_changeauth of the owner hierarchy: the empty authValue is then refused and the new one accepted, until it is changed back', async () => {
    const ownerPw = `owner-${hex(4)}`;
    await tool('tpm2_changeauth', '-c', 'o', ownerPw);
    try {
      assert.equal((await vars()).get('ownerAuthSet'), '1');
      await fails('Esys_CreatePrimary', RC.BAD_AUTH_S1, 'tpm2_createprimary', '-C', 'o', '-G', 'ecc', '-c', f('owner-refused.ctx'));
      await fails('Esys_HierarchyChangeAuth', RC.BAD_AUTH_S1, 'tpm2_changeauth', '-c', 'o', '-p', `not-${ownerPw}`, 'other');
      await tool('tpm2_createprimary', '-C', 'o', '-P', ownerPw, '-G', 'ecc', '-c', f('owner-new.ctx'));
      // The owner seed did not change with its authValue: the same template gives the same primary.
      await tool('tpm2_readpublic', '-c', f('owner-new.ctx'), '-n', f('owner-new.name'));
      await tool('tpm2_readpublic', '-c', f('primary.ctx'), '-n', f('primary.name'));
      assert.deepEqual(readFileSync(f('owner-new.name')), readFileSync(f('primary.name')));
    } finally {
      await tool('tpm2_changeauth', '-c', 'o', '-p', ownerPw);
    }
    assert.equal((await vars()).get('ownerAuthSet'), '0');
    await fails('Esys_CreatePrimary', RC.BAD_AUTH_S1, 'tpm2_createprimary', '-C', 'o', '-P', ownerPw, '-G', 'ecc', '-c', f('owner-refused.ctx'));
    await tool('tpm2_createprimary', '-C', 'o', '-G', 'ecc', '-c', f('owner-back.ctx'));
  });

  it('tpm2_changeauth of a loaded sealed object: the new private takes the new password and refuses the old; changing it back restores the old', async () => {
    const oldPw = `old-${hex(4)}`;
    const newPw = `new-${hex(4)}`;
    const secret = randomBytes(32);
    await seal('ca', secret, '-p', oldPw, '-a', 'fixedtpm|fixedparent|userwithauth|noda');
    assert.deepEqual(await unseal('ca.ctx', oldPw), secret);

    await tool('tpm2_changeauth', '-c', f('ca.ctx'), '-C', f('primary.ctx'), '-p', oldPw, '-r', f('ca-new.priv'), newPw);
    assert.notDeepEqual(readFileSync(f('ca-new.priv')), readFileSync(f('ca.priv')));
    await tool('tpm2_load', '-C', f('primary.ctx'), '-u', f('ca.pub'), '-r', f('ca-new.priv'), '-c', f('ca-new.ctx'));
    assert.deepEqual(await unseal('ca-new.ctx', newPw), secret);
    await fails('Esys_Unseal', RC.BAD_AUTH_S1, 'tpm2_unseal', '-c', f('ca-new.ctx'), '-p', oldPw);
    // ObjectChangeAuth leaves the object it ran on (and its old private) alone.
    assert.deepEqual(await unseal('ca.ctx', oldPw), secret);

    await tool('tpm2_changeauth', '-c', f('ca-new.ctx'), '-C', f('primary.ctx'), '-p', newPw, '-r', f('ca-back.priv'), oldPw);
    await tool('tpm2_load', '-C', f('primary.ctx'), '-u', f('ca.pub'), '-r', f('ca-back.priv'), '-c', f('ca-back.ctx'));
    assert.deepEqual(await unseal('ca-back.ctx', oldPw), secret);
    await fails('Esys_Unseal', RC.BAD_AUTH_S1, 'tpm2_unseal', '-c', f('ca-back.ctx'), '-p', newPw);
  });

  it('PolicyPassword: a sealed object opens through a policy session with its password, not with a wrong one, nor without the policy', async () => {
    const policy = await trial('pp.policy', 'tpm2_policypassword');
    // PolicyPassword extends the digest exactly as PolicyAuthValue does.
    assert.deepEqual(policy, sha256(ZERO, u32(CC.PolicyAuthValue)), 'PolicyPassword digest = H(0 ‖ TPM_CC_PolicyAuthValue)');
    const objPw = `obj-${hex(4)}`;
    const secret = randomBytes(32);
    await sealUnderPolicy('pp', secret, 'pp.policy', '-p', objPw);

    assert.deepEqual(await unsealWithPolicy('pp.ctx', objPw, ['tpm2_policypassword']), secret);
    await rejectsWithRc(unsealWithPolicy('pp.ctx', `not-${objPw}`, ['tpm2_policypassword']), 'Esys_Unseal', RC.BAD_AUTH_S1);
    await rejectsWithRc(unsealWithPolicy('pp.ctx', objPw), 'Esys_Unseal', RC.POLICY_FAIL_S1);
    await fails('Esys_Unseal', RC.AUTH_UNAVAILABLE, 'tpm2_unseal', '-c', f('pp.ctx'), '-p', objPw);
    assert.deepEqual(await unsealWithPolicy('pp.ctx', objPw, ['tpm2_policypassword']), secret);
  });

  it('PolicySecret against the owner hierarchy and against an object: their authValues unseal, a wrong one fails PolicySecret itself', async () => {
    // The owner hierarchy.
    const ownerPw = `owner-${hex(4)}`;
    await tool('tpm2_changeauth', '-c', 'o', ownerPw);
    try {
      const policy = await trial('ps-owner.policy', 'tpm2_policysecret', '-c', 'o', ownerPw);
      assert.deepEqual(policy, policyUpdate(CC.PolicySecret, u32(TPM_RH_OWNER)), 'PolicySecret digest = H(H(0 ‖ CC ‖ TPM_RH_OWNER) ‖ policyRef)');
      const secret = randomBytes(32);
      await sealUnderPolicy('ps-owner', secret, 'ps-owner.policy');
      assert.deepEqual(await unsealWithPolicy('ps-owner.ctx', '', ['tpm2_policysecret', '-c', 'o', ownerPw]), secret);
      await rejectsWithRc(unsealWithPolicy('ps-owner.ctx', '', ['tpm2_policysecret', '-c', 'o', `not-${ownerPw}`]), 'Esys_PolicySecret', RC.BAD_AUTH_S1);
      await rejectsWithRc(unsealWithPolicy('ps-owner.ctx', ''), 'Esys_Unseal', RC.POLICY_FAIL_S1);
    } finally {
      await tool('tpm2_changeauth', '-c', 'o', '-p', ownerPw);
    }

    // An object: the policy names it, and its authValue satisfies it.
    const keyPw = `key-${hex(4)}`;
    await tool('tpm2_create', '-C', f('primary.ctx'), '-G', 'ecc256', '-p', keyPw, '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign', '-u', f('ps-key.pub'), '-r', f('ps-key.priv'));
    await tool('tpm2_load', '-C', f('primary.ctx'), '-u', f('ps-key.pub'), '-r', f('ps-key.priv'), '-c', f('ps-key.ctx'), '-n', f('ps-key.name'));
    const policy = await trial('ps-key.policy', 'tpm2_policysecret', '-c', f('ps-key.ctx'), keyPw);
    assert.deepEqual(policy, policyUpdate(CC.PolicySecret, readFileSync(f('ps-key.name'))), 'PolicySecret digest = H(H(0 ‖ CC ‖ key name) ‖ policyRef)');
    const secret = randomBytes(32);
    await sealUnderPolicy('ps-obj', secret, 'ps-key.policy');
    assert.deepEqual(await unsealWithPolicy('ps-obj.ctx', '', ['tpm2_policysecret', '-c', f('ps-key.ctx'), keyPw]), secret);
    await rejectsWithRc(unsealWithPolicy('ps-obj.ctx', '', ['tpm2_policysecret', '-c', f('ps-key.ctx'), `not-${keyPw}`]), 'Esys_PolicySecret', RC.BAD_AUTH_S1);
    // The owner's authValue does not stand in for the object's.
    await rejectsWithRc(unsealWithPolicy('ps-obj.ctx', '', ['tpm2_policysecret', '-c', 'o']), 'Esys_Unseal', RC.POLICY_FAIL_S1);
  });

  it('PolicyAuthorize: a PolicyPCR policy signed off-TPM by an ECC key loaded with tpm2_loadexternal unseals; not after the PCR moves, until re-approved', async () => {
    const authority = generatePrivateKey('ec', { namedCurve: 'P-256' });
    writeFileSync(f('authority.pem'), createPublicKey(authority).export({ type: 'spki', format: 'pem' }));
    await tool('tpm2_loadexternal', '-C', 'o', '-G', 'ecc', '-u', f('authority.pem'), '-c', f('authority.ctx'), '-n', f('authority.name'));
    /** The authority signs a policy digest (ECDSA over SHA-256, DER); the TPM checks it into a ticket. */
    const approve = async (policy: string) => {
      writeFileSync(f(`${policy}.sig`), sign('sha256', readFileSync(f(policy)), authority));
      await tool('tpm2_verifysignature', '-c', f('authority.ctx'), '-g', 'sha256', '-m', f(policy), '-f', 'ecdsa', '-s', f(`${policy}.sig`), '-t', f(`${policy}.tkt`));
      const ticket = readFileSync(f(`${policy}.tkt`));
      assert.equal(ticket.readUInt16BE(0), TPM_ST_VERIFIED);
      assert.equal(ticket.readUInt32BE(2), TPM_RH_OWNER, 'an owner-hierarchy ticket (a NULL one could not authorize)');
    };
    const satisfy = (policy: string) => [
      ['tpm2_policypcr', '-l', 'sha256:16'],
      ['tpm2_policyauthorize', '-i', f(policy), '-n', f('authority.name'), '-t', f(`${policy}.tkt`)],
    ];

    await tool('tpm2_pcrreset', '16');
    assert.deepEqual(await trial('pa-pcr0.policy', 'tpm2_policypcr', '-l', 'sha256:16'), pcr16Policy(ZERO));
    const authPolicy = await trial('pa-auth.policy', 'tpm2_policyauthorize', '-n', f('authority.name'));
    assert.deepEqual(authPolicy, policyUpdate(CC.PolicyAuthorize, readFileSync(f('authority.name'))), 'PolicyAuthorize digest = H(H(0 ‖ CC ‖ keySign.name) ‖ policyRef)');
    await approve('pa-pcr0.policy');
    // A signature over some other digest is no approval.
    writeFileSync(f('pa-other.policy'), randomBytes(32));
    await fails('Esys_VerifySignature', RC.SIGNATURE_P2, 'tpm2_verifysignature', '-c', f('authority.ctx'), '-g', 'sha256', '-m', f('pa-other.policy'), '-f', 'ecdsa', '-s', f('pa-pcr0.policy.sig'));

    const secret = randomBytes(32);
    await sealUnderPolicy('pa', secret, 'pa-auth.policy');
    assert.deepEqual(await unsealWithPolicy('pa.ctx', '', ...satisfy('pa-pcr0.policy')), secret);

    // Once PCR 16 moves, the approved policy no longer matches the session (approvedPolicy, parameter 1).
    const measurement = randomBytes(32);
    await tool('tpm2_pcrextend', `16:sha256=${measurement.toString('hex')}`);
    await rejectsWithRc(unsealWithPolicy('pa.ctx', '', ...satisfy('pa-pcr0.policy')), 'Esys_PolicyAuthorize', RC.VALUE_P1);
    // PolicyPCR alone leaves a digest that is not the object's policy.
    await rejectsWithRc(unsealWithPolicy('pa.ctx', '', ['tpm2_policypcr', '-l', 'sha256:16']), 'Esys_Unseal', RC.POLICY_FAIL_S1);

    // The authority approves the new state: the same sealed object opens again, without re-sealing.
    assert.deepEqual(await trial('pa-pcr1.policy', 'tpm2_policypcr', '-l', 'sha256:16'), pcr16Policy(sha256(ZERO, measurement)));
    await approve('pa-pcr1.policy');
    assert.deepEqual(await unsealWithPolicy('pa.ctx', '', ...satisfy('pa-pcr1.policy')), secret);
  });

  it('dictionary attack: wrong passwords count up to TPM_RC_LOCKOUT; tpm2_dictionarylockout --clear-lockout with lockoutAuth resets it and the object opens again', async () => {
    const lockoutPw = `lockout-${hex(4)}`;
    await tool('tpm2_changeauth', '-c', 'l', lockoutPw);
    try {
      await tool('tpm2_dictionarylockout', '--setup-parameters', '--max-tries', '3', '--recovery-time', '1000', '--lockout-recovery-time', '1000', '-p', lockoutPw);
      let v = await vars();
      assert.deepEqual(
        [v.get('TPM2_PT_MAX_AUTH_FAIL'), v.get('TPM2_PT_LOCKOUT_INTERVAL'), v.get('TPM2_PT_LOCKOUT_RECOVERY'), v.get('lockoutAuthSet')].map(Number),
        [3, 1000, 1000, 1],
      );
      assert.equal(Number(v.get('TPM2_PT_LOCKOUT_COUNTER')), 0);

      const secret = randomBytes(32);
      // No noDA: this object is DA-protected. The noDA one stays usable throughout.
      await seal('da', secret, '-p', 'right', '-a', 'fixedtpm|fixedparent|userwithauth');
      const exempt = randomBytes(32);
      await seal('da-exempt', exempt, '-p', 'right', '-a', 'fixedtpm|fixedparent|userwithauth|noda');
      assert.deepEqual(await unseal('da.ctx', 'right'), secret);
      for (let i = 1; i <= 3; i++) {
        await fails('Esys_Unseal', RC.AUTH_FAIL_S1, 'tpm2_unseal', '-c', f('da.ctx'), '-p', 'wrong');
        assert.equal(Number((await vars()).get('TPM2_PT_LOCKOUT_COUNTER')), i);
      }
      await fails('Esys_Unseal', RC.LOCKOUT, 'tpm2_unseal', '-c', f('da.ctx'), '-p', 'right');
      assert.equal((await vars()).get('inLockout'), '1');
      assert.deepEqual(await unseal('da-exempt.ctx', 'right'), exempt);

      await tool('tpm2_dictionarylockout', '--clear-lockout', '-p', lockoutPw);
      v = await vars();
      assert.deepEqual([v.get('inLockout'), Number(v.get('TPM2_PT_LOCKOUT_COUNTER'))], ['0', 0]);
      assert.deepEqual(await unseal('da.ctx', 'right'), secret);
    } finally {
      await tool('tpm2_dictionarylockout', '--clear-lockout', '-p', lockoutPw);
      await tool('tpm2_changeauth', '-c', 'l', '-p', lockoutPw);
    }
    assert.equal((await vars()).get('lockoutAuthSet'), '0');
  });

  it('tpm2_nvreadlock: nvread is then refused with TPM_RC_NV_LOCKED under owner and index auth, the index shows readlocked and stays writable', async () => {
    const index = '0x1500040';
    const nvPw = `nv-${hex(4)}`;
    const nvread = async (...auth: string[]) => {
      await tool('tpm2_nvread', index, ...auth, '-s', '16', '-o', f('nv.out'));
      return readFileSync(f('nv.out'));
    };
    await tool('tpm2_nvdefine', index, '-C', 'o', '-s', '16', '-a', 'ownerread|ownerwrite|authread|authwrite|read_stclear', '-p', nvPw);
    try {
      const data = randomBytes(16);
      writeFileSync(f('nv.in'), data);
      await tool('tpm2_nvwrite', index, '-C', index, '-P', nvPw, '-i', f('nv.in'));
      assert.deepEqual(await nvread('-C', 'o'), data);
      assert.deepEqual(await nvread('-C', index, '-P', nvPw), data);
      assert.doesNotMatch(await tool('tpm2_nvreadpublic', index), /readlocked/);

      await tool('tpm2_nvreadlock', index, '-C', index, '-P', nvPw);
      await fails('Esys_NV_Read', RC.NV_LOCKED, 'tpm2_nvread', index, '-C', 'o', '-s', '16');
      await fails('Esys_NV_Read', RC.NV_LOCKED, 'tpm2_nvread', index, '-C', index, '-P', nvPw, '-s', '16');
      assert.match(await tool('tpm2_nvreadpublic', index), /friendly: \S*\breadlocked\b/);
      writeFileSync(f('nv.in'), randomBytes(16));
      await tool('tpm2_nvwrite', index, '-C', 'o', '-i', f('nv.in'));
    } finally {
      await tool('tpm2_nvundefine', index, '-C', 'o');
    }
    // An index without TPMA_NV_READ_STCLEAR cannot be read-locked (TPM_RC_ATTRIBUTES, handle 2).
    await tool('tpm2_nvdefine', '0x1500041', '-C', 'o', '-s', '8', '-a', 'ownerread|ownerwrite');
    try {
      await fails('Esys_NV_ReadLock', RC.ATTRIBUTES_H2, 'tpm2_nvreadlock', '0x1500041', '-C', 'o');
    } finally {
      await tool('tpm2_nvundefine', '0x1500041', '-C', 'o');
    }
    assert.doesNotMatch(await tool('tpm2_getcap', 'handles-nv-index'), /0x150004[01]/);
  });

  it('tpm2_hmac with an imported HMAC key equals node:crypto, for one TPM2_HMAC and for a 3000-byte HMAC sequence', async () => {
    const key = randomBytes(32);
    writeFileSync(f('hmac.key'), key);
    await tool('tpm2_import', '-C', f('primary.ctx'), '-G', 'hmac', '-i', f('hmac.key'), '-u', f('hmac.pub'), '-r', f('hmac.priv'));
    await tool('tpm2_load', '-C', f('primary.ctx'), '-u', f('hmac.pub'), '-r', f('hmac.priv'), '-c', f('hmac.ctx'));
    for (const size of [100, 3000]) {
      const data = randomBytes(size);
      writeFileSync(f('hmac.in'), data);
      await tool('tpm2_hmac', '-c', f('hmac.ctx'), '-g', 'sha256', '-o', f('hmac.out'), f('hmac.in'));
      assert.deepEqual(readFileSync(f('hmac.out')), createHmac('sha256', key).update(data).digest(), `HMAC of ${size} bytes`);
    }
  });

  it('tpm2_rsaencrypt → tpm2_rsadecrypt with an imported RSA key (OAEP and RSAES): node:crypto and the TPM decrypt each other\'s ciphertexts', async () => {
    const key = generatePrivateKey('rsa', { modulusLength: 2048, publicExponent: 65537 });
    writeFileSync(f('rsa.pem'), key.export({ type: 'pkcs8', format: 'pem' }));
    await tool('tpm2_import', '-C', f('primary.ctx'), '-G', 'rsa', '-i', f('rsa.pem'), '-u', f('rsa.pub'), '-r', f('rsa.priv'));
    await tool('tpm2_load', '-C', f('primary.ctx'), '-u', f('rsa.pub'), '-r', f('rsa.priv'), '-c', f('rsa.ctx'));
    await tool('tpm2_readpublic', '-c', f('rsa.ctx'), '-f', 'pem', '-o', f('rsa.pub.pem'));
    assert.equal(createPublicKey(readFileSync(f('rsa.pub.pem'))).export({ format: 'jwk' }).n, createPublicKey(key).export({ format: 'jwk' }).n, 'the loaded modulus');

    const message = randomBytes(48);
    writeFileSync(f('rsa.msg'), message);
    const decrypt = async (scheme: string, ciphertext: Buffer) => {
      writeFileSync(f('rsa.ct'), ciphertext);
      await tool('tpm2_rsadecrypt', '-c', f('rsa.ctx'), '-s', scheme, '-o', f('rsa.pt'), f('rsa.ct'));
      return readFileSync(f('rsa.pt'));
    };
    const oaep = { key, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' };

    await tool('tpm2_rsaencrypt', '-c', f('rsa.ctx'), '-s', 'oaep', '-o', f('rsa.oaep'), f('rsa.msg'));
    const tpmOaep = readFileSync(f('rsa.oaep'));
    assert.equal(tpmOaep.length, 256);
    assert.deepEqual(privateDecrypt(oaep, tpmOaep), message, 'node:crypto decrypts the TPM\'s OAEP (SHA-256) ciphertext');
    assert.deepEqual(await decrypt('oaep', tpmOaep), message, 'the TPM decrypts its own');
    assert.deepEqual(await decrypt('oaep', publicEncrypt(oaep, message)), message, 'the TPM decrypts node:crypto\'s OAEP ciphertext');

    await tool('tpm2_rsaencrypt', '-c', f('rsa.ctx'), '-s', 'rsaes', '-o', f('rsa.rsaes'), f('rsa.msg'));
    assert.deepEqual(await decrypt('rsaes', readFileSync(f('rsa.rsaes'))), message);
    assert.deepEqual(await decrypt('rsaes', publicEncrypt({ key, padding: constants.RSA_PKCS1_PADDING }, message)), message, 'the TPM decrypts node:crypto\'s PKCS#1 v1.5 ciphertext');
  });

  it('tpm2_encryptdecrypt with an imported AES-128 key: CFB and CBC ciphertexts (3000 bytes, several commands chained by ivOut) equal node:crypto\'s and decrypt back', async () => {
    const key = randomBytes(16);
    const iv = randomBytes(16);
    writeFileSync(f('aes.key'), key);
    writeFileSync(f('aes.iv'), iv);
    await tool('tpm2_import', '-C', f('primary.ctx'), '-G', 'aes', '-i', f('aes.key'), '-u', f('aes.pub'), '-r', f('aes.priv'));
    await tool('tpm2_load', '-C', f('primary.ctx'), '-u', f('aes.pub'), '-r', f('aes.priv'), '-c', f('aes.ctx'));
    const plain = randomBytes(3000);
    writeFileSync(f('aes.pt'), plain);
    const cipher = (mode: string, data: Buffer) => {
      const c = createCipheriv(`aes-128-${mode}`, key, iv);
      return Buffer.concat([c.update(data), c.final()]);
    };

    await tool('tpm2_encryptdecrypt', '-c', f('aes.ctx'), '-G', 'cfb', '-t', f('aes.iv'), '-o', f('aes.cfb'), f('aes.pt'));
    assert.deepEqual(readFileSync(f('aes.cfb')), cipher('cfb', plain));
    await tool('tpm2_encryptdecrypt', '-d', '-c', f('aes.ctx'), '-G', 'cfb', '-t', f('aes.iv'), '-o', f('aes.cfb.pt'), f('aes.cfb'));
    assert.deepEqual(readFileSync(f('aes.cfb.pt')), plain);

    // CBC with PKCS#7 padding added by the tool; decrypted without -e, the padding comes back too.
    await tool('tpm2_encryptdecrypt', '-c', f('aes.ctx'), '-G', 'cbc', '-e', '-t', f('aes.iv'), '-o', f('aes.cbc'), f('aes.pt'));
    assert.deepEqual(readFileSync(f('aes.cbc')), cipher('cbc', plain));
    await tool('tpm2_encryptdecrypt', '-d', '-c', f('aes.ctx'), '-G', 'cbc', '-t', f('aes.iv'), '-o', f('aes.cbc.pt'), f('aes.cbc'));
    const pad = 16 - (plain.length % 16);
    assert.deepEqual(readFileSync(f('aes.cbc.pt')), Buffer.concat([plain, Buffer.alloc(pad, pad)]));
  });

  it('tpm2_quote with a restricted ECC key: tpm2_checkquote and node:crypto verify it, its pcrDigest is that of the PCRs, a wrong nonce is refused', async () => {
    await createAk('ecc-ak');
    await quoteAndCheck('ecc-ak', 'plain');
  });

  for (const saltAlg of ['ecc256', 'rsa2048']) {
    it(`an ${saltAlg}-salted HMAC session encrypting both ways carries seal, unseal (-p session: and -S) and quote`, async () => {
      const file = (n: string) => f(`salt-${saltAlg}-${n}`);
      await tool('tpm2_createprimary', '-C', 'o', '-G', saltAlg, '-c', file('salt.ctx'));
      await createAk(`salt-${saltAlg}-ak`);
      const session = file('session.ctx');
      await tool('tpm2_startauthsession', '--hmac-session', '-c', file('salt.ctx'), '-S', session);
      try {
        await tool('tpm2_sessionconfig', '--enable-encrypt', '--enable-decrypt', session);
        assert.match(await tool('tpm2_sessionconfig', session), /Session-Attributes: continuesession\|decrypt\|encrypt$/m);

        // Create's inSensitive (the data and the authValue) goes encrypted under the parent's authorization…
        const objPw = `obj-${hex(4)}`;
        const secret = randomBytes(64);
        writeFileSync(file('sealed.in'), secret);
        await tool('tpm2_create', '-C', f('primary.ctx'), '-P', `session:${session}`, '-i', file('sealed.in'), '-p', objPw, '-a', 'fixedtpm|fixedparent|userwithauth|noda', '-u', file('sealed.pub'), '-r', file('sealed.priv'));
        await tool('tpm2_load', '-C', f('primary.ctx'), '-u', file('sealed.pub'), '-r', file('sealed.priv'), '-c', file('sealed.ctx'));
        // …and Unseal's outData comes back encrypted, with the session authorizing…
        assert.deepEqual(await unseal(`salt-${saltAlg}-sealed.ctx`, `session:${session}+${objPw}`), secret);
        // …or only encrypting, beside a password authorization.
        assert.deepEqual(await unseal(`salt-${saltAlg}-sealed.ctx`, objPw, '-S', session), secret);

        // Quote's qualifyingData goes encrypted and its quoted comes back encrypted.
        await quoteAndCheck(`salt-${saltAlg}-ak`, `salt-${saltAlg}`, '-p', `session:${session}`);

        await fails('Esys_Unseal', RC.BAD_AUTH_S1, 'tpm2_unseal', '-c', file('sealed.ctx'), '-p', `session:${session}+not-${objPw}`);
      } finally {
        await flushSession(session);
      }
    });
  }
});
