/**
 * End-to-end policy and session flows driven by Debian's tpm2-tools over both TCTIs, with real
 * (not trial) policy sessions doing the unsealing:
 *
 *  1. PolicyAuthorize: a PolicyPCR policy approved by a signing authority (a TPM-resident ECC key,
 *     and an RSA key generated off-TPM and loaded with tpm2_loadexternal), the ticket from
 *     tpm2_verifysignature, and a re-approval after the PCR moves without re-sealing;
 *     PolicyAuthorizeNV: the approved policy held in an NV index, re-approved by rewriting it;
 *  2. PolicySecret bound to the owner hierarchy's authValue;
 *  3. PolicyOR of two PolicyPCR branches (PCR 16 in two states);
 *  4. tpm2_changeauth of an object (signing key and sealed object);
 *  5. tpm2_quote (and tpm2_unseal) through a salted HMAC session with parameter encryption both
 *     ways, checked on the wire (TSS2_LOG=tcti+debug hexdumps) and by tpm2_checkquote.
 *
 * Every policy digest the tools compute is also recomputed here with node:crypto (Part 3's
 * PolicyUpdate), so an engine that agreed with itself but not with the specification would fail.
 *
 * The TPM has three transient object slots and three session slots, and tpm2-tools leaves what it
 * loads behind, so objects are flushed after every tool step that loads one, and objects plus
 * loaded and saved sessions after every flow.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, createPublicKey, randomBytes, sign as nodeSign } from 'node:crypto';
import { generatePrivateKey } from '../../src/tpm/crypto/rsa.ts';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, afterEach, before, describe, it } from 'node:test';
import { VtpmdServer, interopUnavailable, tempDir, type Tcti } from './harness.ts';

const run = promisify(execFile);

// Command codes (Part 2, table 12) and the bits of TPMA_SESSION.
const CC = { PolicySecret: 0x151, Quote: 0x158, PolicyAuthorize: 0x16a, PolicyOR: 0x171, StartAuthSession: 0x176, PolicyPCR: 0x17f, Unseal: 0x15e } as const;
const SESSION_DECRYPT = 0x20;
const SESSION_ENCRYPT = 0x40;
const TPM_GENERATED = Buffer.from('ff544347', 'hex');

const sha256 = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();
const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
/** PolicyUpdate with an empty policyRef, from the all-zero digest: H(H(0…0 ‖ cc ‖ arg) ‖ ''). */
const policyUpdate = (cc: number, arg: Buffer) => sha256(sha256(Buffer.alloc(32), u32(cc), arg));
/** TPM2_PolicyPCR over sha256:16 when PCR 16 holds `pcr16` (a single-PCR selection). */
const expectedPcrPolicy = (pcr16: Buffer) =>
  sha256(Buffer.alloc(32), u32(CC.PolicyPCR), Buffer.from('00000001000b03000001', 'hex'), sha256(pcr16));
const extended = (pcr: Buffer, digest: Buffer) => sha256(pcr, digest);

/**
 * The complete TPM commands and responses in a TSS2_LOG=tcti+debug log: the hexdump blocks
 * ("0000: 8001…  ascii") whose tag is a TPM_ST_(NO_)SESSIONS and whose size field is their length.
 * Both the swtpm and the mssim TCTI dump each whole command and each whole response.
 */
function tpmMessages(log: string): Buffer[] {
  const blocks: string[][] = [];
  let current: string[] | undefined;
  for (const line of log.split('\n')) {
    const m = /^([0-9a-f]{4}): ([0-9a-f]+)\s/.exec(line);
    if (!m) {
      current = undefined;
      continue;
    }
    if (m[1] === '0000') blocks.push((current = []));
    current?.push(m[2]!);
  }
  return blocks
    .map((hex) => Buffer.from(hex.join(''), 'hex'))
    .filter((b) => b.length >= 10 && (b.readUInt16BE(0) === 0x8001 || b.readUInt16BE(0) === 0x8002) && b.readUInt32BE(2) === b.length);
}

/** The first command with code `cc` in a traced tool run, and the response that follows it. */
function exchange(log: string, cc: number): { command: Buffer; response: Buffer } {
  const messages = tpmMessages(log);
  const i = messages.findIndex((m) => m.readUInt32BE(6) === cc);
  assert.ok(i >= 0 && i + 1 < messages.length, `no TPM command 0x${cc.toString(16)} and response in the TCTI trace`);
  return { command: messages[i]!, response: messages[i + 1]! };
}

/** A TPM2B at `offset`: its contents and the offset after it. */
function tpm2b(b: Buffer, offset: number): { value: Buffer; end: number } {
  const size = b.readUInt16BE(offset);
  return { value: b.subarray(offset + 2, offset + 2 + size), end: offset + 2 + size };
}

/** The one authorization session of a command with `handles` handles, and where the parameters start. */
function commandSession(command: Buffer, handles: number) {
  let o = 10 + 4 * handles;
  const authSize = command.readUInt32BE(o);
  o += 4;
  const parameters = o + authSize;
  const handle = command.readUInt32BE(o);
  const nonce = tpm2b(command, o + 4);
  const attributes = command.readUInt8(nonce.end);
  assert.equal(tpm2b(command, nonce.end + 1).end, parameters, 'exactly one session in the authorization area');
  return { handle, attributes, parameters };
}

/** The first response parameter (a TPM2B) of a successful response with sessions and no handles. */
function firstResponseParameter(response: Buffer): Buffer {
  assert.equal(response.readUInt16BE(0), 0x8002);
  assert.equal(response.readUInt32BE(6), 0, 'response code');
  return tpm2b(response, 14).value; // after the header and the parameterSize
}

for (const tcti of ['swtpm', 'mssim'] as Tcti[]) {
  const skip = interopUnavailable(tcti);

  describe(`policy and session flows with tpm2-tools over the ${tcti} TCTI`, { skip }, () => {
    const state = tempDir(`vtpmd-policy-${tcti}-`);
    const files = tempDir(`vtpmd-policy-files-${tcti}-`);
    const f = (name: string) => join(files.path, name);
    let server: VtpmdServer;

    const tool = (cmd: string, ...args: string[]) => server.tool(cmd, args);
    const flushObjects = () => tool('tpm2_flushcontext', '-t');
    const flushAll = async () => {
      await tool('tpm2_flushcontext', '-t');
      await tool('tpm2_flushcontext', '-l');
      await tool('tpm2_flushcontext', '-s');
    };
    /** Runs a tool that loads objects, then empties the transient slots. */
    const step = async (cmd: string, ...args: string[]) => {
      try {
        return await tool(cmd, ...args);
      } finally {
        await flushObjects();
      }
    };
    /** Runs a tool with TSS2_LOG=tcti+debug and returns its stdout and the log. */
    const traced = async (cmd: string, ...args: string[]) => {
      try {
        const env = { ...process.env, TPM2TOOLS_TCTI: server.tcti, TSS2_LOG: 'tcti+debug' };
        const { stdout, stderr } = await run(cmd, args, { env, encoding: 'utf8', timeout: 30_000, maxBuffer: 64 << 20 });
        return { stdout, log: stderr };
      } finally {
        await flushObjects();
      }
    };
    const pcr16 = { reset: () => tool('tpm2_pcrreset', '16'), extend: (d: Buffer) => tool('tpm2_pcrextend', `16:sha256=${d.toString('hex')}`) };

    /** A trial session running one policy command; returns the digest it wrote to `out`. */
    const trial = async (out: string, cmd: string, ...args: string[]): Promise<Buffer> => {
      await tool('tpm2_startauthsession', '-S', f('trial.ctx'));
      try {
        await tool(cmd, '-S', f('trial.ctx'), '-L', f(out), ...args);
      } finally {
        await flushAll();
      }
      return readFileSync(f(out));
    };
    /** A real policy session satisfied by `policy` (each a tool and its arguments bar -S); then Unseal. */
    const unsealWithPolicy = async (sealed: string, ...policy: string[][]): Promise<string> => {
      await tool('tpm2_startauthsession', '--policy-session', '-S', f('policy.ctx'));
      try {
        for (const [cmd, ...args] of policy) await tool(cmd!, '-S', f('policy.ctx'), ...args);
        return await tool('tpm2_unseal', '-c', f(sealed), '-p', `session:${f('policy.ctx')}`);
      } finally {
        await flushAll();
      }
    };
    /** Seals `secret` under the storage primary with `args` (policy, auth); loads it as `${name}.ctx`. */
    const seal = async (name: string, secret: string, ...args: string[]) => {
      writeFileSync(f(`${name}.secret`), secret);
      await step('tpm2_create', '-C', f('primary.ctx'), '-i', f(`${name}.secret`), '-u', f(`${name}.pub`), '-r', f(`${name}.priv`), ...args);
      await step('tpm2_load', '-C', f('primary.ctx'), '-u', f(`${name}.pub`), '-r', f(`${name}.priv`), '-c', f(`${name}.ctx`));
    };
    /** Sealed under a policy only: no userWithAuth, so a password (or HMAC) session cannot unseal it. */
    const sealUnderPolicy = (name: string, secret: string, policy: string) => seal(name, secret, '-L', f(policy), '-a', 'fixedtpm|fixedparent');

    before(async () => {
      server = await VtpmdServer.start(tcti, state.path);
      await tool('tpm2_startup', '-c');
      await step('tpm2_createprimary', '-C', 'o', '-g', 'sha256', '-G', 'ecc256', '-c', f('primary.ctx'));
    });
    afterEach(async () => {
      if (server) await flushAll();
    });
    after(async () => {
      await server?.stop();
      state.remove();
      files.remove();
    });

    /**
     * Flow 1 for one signing authority: `nameFile` holds its Name, `approve` signs a policy digest
     * and has tpm2_verifysignature turn the signature into a TPM_ST_VERIFIED ticket.
     */
    const policyAuthorizeFlow = async (tag: string, nameFile: string, approve: (policy: string, ticket: string) => Promise<void>) => {
      await pcr16.reset();
      const pcrPolicy = await trial(`${tag}-pcr0.policy`, 'tpm2_policypcr', '-l', 'sha256:16');
      assert.deepEqual(pcrPolicy, expectedPcrPolicy(Buffer.alloc(32)));
      const authPolicy = await trial(`${tag}-auth.policy`, 'tpm2_policyauthorize', '-n', nameFile);
      assert.deepEqual(authPolicy, policyUpdate(CC.PolicyAuthorize, readFileSync(nameFile)), 'PolicyAuthorize digest = H(H(0 ‖ CC ‖ keySign.name) ‖ policyRef)');

      await approve(f(`${tag}-pcr0.policy`), f(`${tag}-pcr0.tkt`));
      const ticket = readFileSync(f(`${tag}-pcr0.tkt`));
      assert.equal(ticket.readUInt16BE(0), 0x8022, 'TPM_ST_VERIFIED');
      assert.equal(ticket.readUInt32BE(2), 0x40000001, 'an owner-hierarchy ticket (a NULL one could not authorize)');

      const secret = randomBytes(20).toString('hex');
      await sealUnderPolicy(`${tag}-sealed`, secret, `${tag}-auth.policy`);
      const authorize = (policy: string, tkt: string) => ['tpm2_policyauthorize', '-i', f(policy), '-n', nameFile, '-t', f(tkt)];
      assert.equal(await unsealWithPolicy(`${tag}-sealed.ctx`, ['tpm2_policypcr', '-l', 'sha256:16'], authorize(`${tag}-pcr0.policy`, `${tag}-pcr0.tkt`)), secret);

      // Without the policy session the object is out of reach: userWithAuth is clear.
      await assert.rejects(step('tpm2_unseal', '-c', f(`${tag}-sealed.ctx`)), /0x12F/i);

      // A ticket that does not match what the authority signed is refused (checkTicket, parameter 4).
      const forged = Buffer.from(ticket);
      forged[forged.length - 1]! ^= 1;
      writeFileSync(f(`${tag}-forged.tkt`), forged);
      await assert.rejects(unsealWithPolicy(`${tag}-sealed.ctx`, ['tpm2_policypcr', '-l', 'sha256:16'], authorize(`${tag}-pcr0.policy`, `${tag}-forged.tkt`)), /0x4C4/i);

      // Once PCR 16 moves, the approved policy no longer matches the session (approvedPolicy, parameter 1)…
      const measurement = randomBytes(32);
      await pcr16.extend(measurement);
      await assert.rejects(unsealWithPolicy(`${tag}-sealed.ctx`, ['tpm2_policypcr', '-l', 'sha256:16'], authorize(`${tag}-pcr0.policy`, `${tag}-pcr0.tkt`)), /0x1C4/i);

      // …until the authority approves the new state: the same sealed object, no re-sealing.
      const pcr1Policy = await trial(`${tag}-pcr1.policy`, 'tpm2_policypcr', '-l', 'sha256:16');
      assert.deepEqual(pcr1Policy, expectedPcrPolicy(extended(Buffer.alloc(32), measurement)));
      await approve(f(`${tag}-pcr1.policy`), f(`${tag}-pcr1.tkt`));
      assert.equal(await unsealWithPolicy(`${tag}-sealed.ctx`, ['tpm2_policypcr', '-l', 'sha256:16'], authorize(`${tag}-pcr1.policy`, `${tag}-pcr1.tkt`)), secret);
      // The old approval does not stretch to the new state.
      await assert.rejects(unsealWithPolicy(`${tag}-sealed.ctx`, ['tpm2_policypcr', '-l', 'sha256:16'], authorize(`${tag}-pcr0.policy`, `${tag}-pcr0.tkt`)), /0x1C4/i);
    };

    it('PolicyAuthorizeNV: the policy an NV index holds unseals; rewriting the index re-approves without re-sealing', async () => {
      const ix = '0x1500020';
      await tool('tpm2_nvdefine', '-C', 'o', '-a', 'authread|authwrite', '-s', '34', ix);
      try {
        const approve = async (policy: Buffer) => {
          writeFileSync(f('anv.ha'), Buffer.concat([Buffer.from('000b', 'hex'), policy]));
          await tool('tpm2_nvwrite', '-C', ix, '-i', f('anv.ha'), ix);
        };
        await pcr16.reset();
        await approve(await trial('anv-pcr0.policy', 'tpm2_policypcr', '-l', 'sha256:16'));
        const anv = await trial('anv.policy', 'tpm2_policyauthorizenv', '-C', ix, ix);
        const nvName = Buffer.from(/name: ([0-9a-f]+)/.exec(await tool('tpm2_nvreadpublic', ix))![1]!, 'hex');
        assert.deepEqual(anv, sha256(Buffer.alloc(32), u32(0x192), nvName), 'PolicyAuthorizeNV digest = H(0 ‖ CC ‖ nvIndex.name)');
        const secret = randomBytes(20).toString('hex');
        await sealUnderPolicy('anv-sealed', secret, 'anv.policy');
        const policy = [['tpm2_policypcr', '-l', 'sha256:16'], ['tpm2_policyauthorizenv', '-C', ix, ix]];
        assert.equal(await unsealWithPolicy('anv-sealed.ctx', ...policy), secret);
        // PCR 16 moves: the session's digest no longer matches the index (TPM_RC_VALUE)…
        await pcr16.extend(randomBytes(32));
        await assert.rejects(unsealWithPolicy('anv-sealed.ctx', ...policy), /0x84\b|0x084/i);
        // …until the index is rewritten with the new state's policy.
        await approve(await trial('anv-pcr1.policy', 'tpm2_policypcr', '-l', 'sha256:16'));
        assert.equal(await unsealWithPolicy('anv-sealed.ctx', ...policy), secret);
      } finally {
        await tool('tpm2_nvundefine', '-C', 'o', ix);
      }
    });

    it('PolicyAuthorize: a PolicyPCR policy approved by a TPM-resident ECC key unseals through a real policy session', async () => {
      await step('tpm2_create', '-C', f('primary.ctx'), '-G', 'ecc256:ecdsa-sha256', '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign', '-u', f('authority.pub'), '-r', f('authority.priv'));
      await step('tpm2_load', '-C', f('primary.ctx'), '-u', f('authority.pub'), '-r', f('authority.priv'), '-c', f('authority.ctx'));
      await step('tpm2_readpublic', '-c', f('authority.ctx'), '-n', f('authority.name'));
      await policyAuthorizeFlow('tpmkey', f('authority.name'), async (policy, ticket) => {
        await step('tpm2_sign', '-c', f('authority.ctx'), '-g', 'sha256', '-o', `${policy}.sig`, policy);
        await step('tpm2_verifysignature', '-c', f('authority.ctx'), '-g', 'sha256', '-m', policy, '-s', `${policy}.sig`, '-t', ticket);
      });
    });

    it('PolicyAuthorize: a policy signed off-TPM by an RSA key loaded with tpm2_loadexternal -C o unseals through a real policy session', async () => {
      const privateKey = generatePrivateKey('rsa', { modulusLength: 2048, publicExponent: 65537 });
      writeFileSync(f('ext.pem'), createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }));
      await step('tpm2_loadexternal', '-C', 'o', '-G', 'rsa', '-u', f('ext.pem'), '-c', f('ext.ctx'), '-n', f('ext.name'));
      await policyAuthorizeFlow('extkey', f('ext.name'), async (policy, ticket) => {
        // RSASSA-PKCS1-v1_5 over SHA-256 of the digest, as an offline policy authority would sign.
        writeFileSync(`${policy}.sig`, nodeSign('sha256', readFileSync(policy), privateKey));
        await step('tpm2_verifysignature', '-c', f('ext.ctx'), '-g', 'sha256', '-m', policy, '-f', 'rsassa', '-s', `${policy}.sig`, '-t', ticket);
      });
    });

    it('PolicySecret: owner authValue unseals through a real policy session; the wrong password does not', async () => {
      const ownerPw = 'owner-' + randomBytes(6).toString('hex');
      await tool('tpm2_changeauth', '-c', 'o', ownerPw);
      try {
        const policy = await trial('secret.policy', 'tpm2_policysecret', '-c', 'o', ownerPw);
        assert.deepEqual(policy, policyUpdate(CC.PolicySecret, u32(0x40000001)), 'PolicySecret digest = H(H(0 ‖ CC ‖ TPM_RH_OWNER) ‖ policyRef)');
        const secret = randomBytes(20).toString('hex');
        await sealUnderPolicy('ps-sealed', secret, 'secret.policy');

        assert.equal(await unsealWithPolicy('ps-sealed.ctx', ['tpm2_policysecret', '-c', 'o', ownerPw]), secret);
        // The wrong owner password fails PolicySecret itself (hierarchy auth: no DA implications)…
        await assert.rejects(unsealWithPolicy('ps-sealed.ctx', ['tpm2_policysecret', '-c', 'o', 'not-' + ownerPw]), /0x9A2/i);
        // …and a policy session that skipped it cannot unseal.
        await assert.rejects(unsealWithPolicy('ps-sealed.ctx'), /0x99D/i);
        await assert.rejects(step('tpm2_unseal', '-c', f('ps-sealed.ctx')), /0x12F/i);
        // The password session still works after the failures.
        assert.equal(await unsealWithPolicy('ps-sealed.ctx', ['tpm2_policysecret', '-c', 'o', ownerPw]), secret);
      } finally {
        await tool('tpm2_changeauth', '-c', 'o', '-p', ownerPw);
      }
      const permanent = await tool('tpm2_getcap', 'properties-variable');
      assert.match(permanent, /ownerAuthSet:\s+0/);
    });

    it('PolicyOR of two PolicyPCR branches: unseal works with PCR 16 in either state, not in a third', async () => {
      const measurement = randomBytes(32);
      await pcr16.reset();
      const a = await trial('or-a.policy', 'tpm2_policypcr', '-l', 'sha256:16');
      await pcr16.extend(measurement);
      const b = await trial('or-b.policy', 'tpm2_policypcr', '-l', 'sha256:16');
      assert.deepEqual(a, expectedPcrPolicy(Buffer.alloc(32)));
      assert.deepEqual(b, expectedPcrPolicy(extended(Buffer.alloc(32), measurement)));
      const branches = `sha256:${f('or-a.policy')},${f('or-b.policy')}`;
      const or = await trial('or.policy', 'tpm2_policyor', branches);
      assert.deepEqual(or, sha256(Buffer.alloc(32), u32(CC.PolicyOR), a, b), 'PolicyOR digest = H(0 ‖ CC ‖ digests)');

      const secret = randomBytes(20).toString('hex');
      await sealUnderPolicy('or-sealed', secret, 'or.policy');
      const satisfy = [['tpm2_policypcr', '-l', 'sha256:16'], ['tpm2_policyor', branches]];
      // Second branch (PCR 16 extended) …
      assert.equal(await unsealWithPolicy('or-sealed.ctx', ...satisfy), secret);
      // … and the first (PCR 16 reset).
      await pcr16.reset();
      assert.equal(await unsealWithPolicy('or-sealed.ctx', ...satisfy), secret);
      // In any other state the session digest matches neither branch: PolicyOR fails (pHashList, parameter 1).
      await pcr16.extend(randomBytes(32));
      await assert.rejects(unsealWithPolicy('or-sealed.ctx', ...satisfy), /0x1C4/i);
      // PolicyPCR alone does not satisfy the OR policy.
      await pcr16.reset();
      await assert.rejects(unsealWithPolicy('or-sealed.ctx', ['tpm2_policypcr', '-l', 'sha256:16']), /0x99D/i);
    });

    it('tpm2_changeauth of an object: the reloaded private takes the new password and refuses the old', async () => {
      const oldPw = 'old-' + randomBytes(4).toString('hex');
      const newPw = 'new-' + randomBytes(4).toString('hex');
      writeFileSync(f('msg.dat'), randomBytes(64));
      try {
        // A signing key.
        await step('tpm2_create', '-C', f('primary.ctx'), '-G', 'ecc256:ecdsa-sha256', '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|sign', '-p', oldPw, '-u', f('ck.pub'), '-r', f('ck.priv'));
        await step('tpm2_load', '-C', f('primary.ctx'), '-u', f('ck.pub'), '-r', f('ck.priv'), '-c', f('ck.ctx'));
        await step('tpm2_changeauth', '-c', f('ck.ctx'), '-C', f('primary.ctx'), '-p', oldPw, '-r', f('ck.new.priv'), newPw);
        assert.notDeepEqual(readFileSync(f('ck.new.priv')), readFileSync(f('ck.priv')));
        const loaded = await step('tpm2_load', '-C', f('primary.ctx'), '-u', f('ck.pub'), '-r', f('ck.new.priv'), '-c', f('ck2.ctx'));
        const name = (out: string) => /name:\s*([0-9a-f]+)/i.exec(out)?.[1]?.toLowerCase();
        assert.equal(name(loaded), name(await step('tpm2_readpublic', '-c', f('ck.ctx'))), 'same public area, same Name');
        await step('tpm2_sign', '-c', f('ck2.ctx'), '-p', newPw, '-g', 'sha256', '-o', f('ck2.sig'), f('msg.dat'));
        await step('tpm2_verifysignature', '-c', f('ck2.ctx'), '-g', 'sha256', '-m', f('msg.dat'), '-s', f('ck2.sig'));
        await assert.rejects(step('tpm2_sign', '-c', f('ck2.ctx'), '-p', oldPw, '-g', 'sha256', '-o', f('ck3.sig'), f('msg.dat')), /0x98E/i);
        // ObjectChangeAuth leaves the object it operated on (and its old private blob) alone.
        await step('tpm2_sign', '-c', f('ck.ctx'), '-p', oldPw, '-g', 'sha256', '-o', f('ck1.sig'), f('msg.dat'));
        await tool('tpm2_dictionarylockout', '-c');

        // A sealed object.
        const secret = randomBytes(20).toString('hex');
        await seal('cs', secret, '-p', oldPw);
        await step('tpm2_changeauth', '-c', f('cs.ctx'), '-C', f('primary.ctx'), '-p', oldPw, '-r', f('cs.new.priv'), newPw);
        await step('tpm2_load', '-C', f('primary.ctx'), '-u', f('cs.pub'), '-r', f('cs.new.priv'), '-c', f('cs2.ctx'));
        assert.equal(await step('tpm2_unseal', '-c', f('cs2.ctx'), '-p', newPw), secret);
        await assert.rejects(step('tpm2_unseal', '-c', f('cs2.ctx'), '-p', oldPw), /0x98E/i);
      } finally {
        // Wrong passwords on DA-protected objects count towards lockout (TPM_PT_MAX_AUTH_FAIL is 3).
        await tool('tpm2_dictionarylockout', '-c');
      }
    });

    for (const saltKey of ['rsa2048', 'ecc256']) {
      it(`tpm2_quote through a salted (${saltKey}), bound HMAC session with command and response encryption; tpm2_checkquote verifies`, async () => {
        const ctx = (n: string) => f(`${saltKey}-${n}`);
        await step('tpm2_createprimary', '-C', 'o', '-g', 'sha256', '-G', saltKey, '-c', ctx('salt.ctx'));
        await step('tpm2_create', '-C', f('primary.ctx'), '-G', 'ecc256:ecdsa-sha256:null', '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign', '-u', ctx('ak.pub'), '-r', ctx('ak.priv'));
        await step('tpm2_load', '-C', f('primary.ctx'), '-u', ctx('ak.pub'), '-r', ctx('ak.priv'), '-c', ctx('ak.ctx'));
        const secret = randomBytes(20).toString('hex');
        await seal(`${saltKey}-hs`, secret);

        // StartAuthSession carries a salt encrypted to the primary (RSA-OAEP or ECDH).
        const started = await traced('tpm2_startauthsession', '--hmac-session', '-S', ctx('s.ctx'), '-c', ctx('salt.ctx'));
        {
          const { command, response } = exchange(started.log, CC.StartAuthSession);
          assert.equal(response.readUInt32BE(6), 0, 'StartAuthSession response code');
          assert.equal(command.readUInt32BE(10) >>> 24, 0x80, 'tpmKey is the loaded primary');
          const nonceCaller = tpm2b(command, 18);
          const salt = tpm2b(command, nonceCaller.end);
          assert.ok(salt.value.length > 0, 'encryptedSalt present');
          assert.equal(command.readUInt8(salt.end), 0x00, 'TPM_SE_HMAC');
          assert.equal(command.readUInt16BE(salt.end + 1), 0x0006, 'symmetric: AES');
          assert.equal(command.readUInt16BE(salt.end + 5), 0x0043, 'mode: CFB');
          assert.equal(response.readUInt32BE(10) >>> 24, 0x02, 'an HMAC session handle');
        }
        await tool('tpm2_sessionconfig', '--enable-encrypt', '--enable-decrypt', '--enable-continuesession', ctx('s.ctx'));
        assert.match(await tool('tpm2_sessionconfig', ctx('s.ctx')), /Session-Attributes:.*decrypt.*encrypt|Session-Attributes:.*encrypt.*decrypt/);

        await pcr16.extend(randomBytes(32));
        const nonce = randomBytes(16);
        const quoted = await traced('tpm2_quote', '-c', ctx('ak.ctx'), '-p', `session:${ctx('s.ctx')}`, '-l', 'sha256:0,16', '-q', nonce.toString('hex'), '-m', ctx('q.msg'), '-s', ctx('q.sig'), '-o', ctx('q.pcrs'), '-g', 'sha256');
        {
          const { command, response } = exchange(quoted.log, CC.Quote);
          const session = commandSession(command, 1);
          assert.equal(session.handle >>> 24, 0x02, 'authorized by the HMAC session');
          assert.equal(session.attributes & (SESSION_DECRYPT | SESSION_ENCRYPT), SESSION_DECRYPT | SESSION_ENCRYPT);
          const qualifyingData = tpm2b(command, session.parameters).value;
          assert.equal(qualifyingData.length, nonce.length);
          assert.notDeepEqual(qualifyingData, nonce, 'qualifyingData travels encrypted');
          assert.equal(command.indexOf(nonce), -1);
          const attest = firstResponseParameter(response);
          const plain = readFileSync(ctx('q.msg'));
          assert.equal(attest.length, plain.length, 'CFB keeps the length');
          assert.deepEqual(plain.subarray(0, 4), TPM_GENERATED);
          assert.notDeepEqual(attest, plain, 'quoted travels encrypted');
          assert.equal(response.indexOf(TPM_GENERATED), -1);
          assert.notEqual(plain.indexOf(nonce), -1, 'the decrypted TPMS_ATTEST carries the nonce');
        }
        await tool('tpm2_checkquote', '-u', ctx('ak.pub'), '-m', ctx('q.msg'), '-s', ctx('q.sig'), '-f', ctx('q.pcrs'), '-g', 'sha256', '-q', nonce.toString('hex'));
        await assert.rejects(tool('tpm2_checkquote', '-u', ctx('ak.pub'), '-m', ctx('q.msg'), '-s', ctx('q.sig'), '-f', ctx('q.pcrs'), '-g', 'sha256', '-q', randomBytes(16).toString('hex')));

        // The same session (continueSession) unseals with the secret encrypted on the wire.
        const unsealed = await traced('tpm2_unseal', '-c', f(`${saltKey}-hs.ctx`), '-p', `session:${ctx('s.ctx')}`);
        assert.equal(unsealed.stdout, secret);
        {
          const { command, response } = exchange(unsealed.log, CC.Unseal);
          assert.equal(commandSession(command, 1).attributes & SESSION_ENCRYPT, SESSION_ENCRYPT);
          const outData = firstResponseParameter(response);
          assert.equal(outData.length, secret.length);
          assert.equal(response.indexOf(Buffer.from(secret)), -1, 'outData travels encrypted');
        }
      });
    }
  });
}
