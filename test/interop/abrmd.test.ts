/**
 * tpm2-tools through tpm2-abrmd, a real resource manager, in front of vtpmd. tpm2-abrmd saves
 * (TPM2_ContextSave) and flushes every transient object and session after each command and loads
 * them back (TPM2_ContextLoad) before the next one that needs them, so every flow here exercises
 * vtpmd's context management; a raw connection holds more objects and sessions at once than
 * vtpmd has slots. Results are checked against values computed here with node:crypto.
 */
import assert from 'node:assert/strict';
import { createHash, createPublicKey, randomBytes, verify } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ALG, CAP, CC, ECC_CURVE, PT, RH } from '../../src/tpm/tpm2/constants.ts';
import { digestBuf } from '../../src/tpm/tpm2/types/basic.ts';
import { nameBuf, privateBuf } from '../../src/tpm/tpm2/types/creation.ts';
import { pcrSelectionList } from '../../src/tpm/tpm2/types/pcr.ts';
import { NULL_SCHEME, NULL_SYM } from '../../src/tpm/tpm2/types/public-parms.ts';
import { OBJECT_ATTR as A, public2b, publicArea, sensitiveCreate, type Public } from '../../src/tpm/tpm2/types/public.ts';
import { encode } from '../../src/tpm/wire/codec.ts';
import {
  RESPONSE_HANDLE_COMMANDS,
  buildCommand,
  commandCode,
  enc,
  getCapability,
  hexRc,
  params,
  parse,
  parseResponse,
  pw,
  responseParams,
  tpm2b,
  u16b,
  u32b,
  type Response,
  type SessionSpec,
} from '../helpers/tpm2-commands.ts';
import { Abrmd, DbusSession, abrmdUnavailable, type RawConnection } from './abrmd-harness.ts';
import { VtpmdServer, parsePcrRead, tempDir } from './harness.ts';

const PERSISTENT = '0x81000010';
const BANKS = ['sha1', 'sha256', 'sha384', 'sha512'] as const;
const SIZES = { sha1: 20, sha256: 32, sha384: 48, sha512: 64 } as const;
const HASH_OF_ALG: Record<number, string> = { 0x0004: 'sha1', 0x000b: 'sha256', 0x000c: 'sha384', 0x000d: 'sha512' };

const h = (alg: string, ...parts: Buffer[]) => {
  const x = createHash(alg);
  for (const p of parts) x.update(p);
  return x.digest();
};

/** The name of an object from its TPM2B_PUBLIC file: nameAlg || H_nameAlg(TPMT_PUBLIC). */
function nameOfPublicFile(file: Buffer): Buffer {
  const area = file.subarray(2, 2 + file.readUInt16BE(0));
  const nameAlg = area.readUInt16BE(2);
  return Buffer.concat([area.subarray(2, 4), h(HASH_OF_ALG[nameAlg]!, area)]);
}

// Templates for the raw connection's objects.
const EMPTY = Buffer.alloc(0);
const BASE = A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.noDA;
const AES128_CFB = { algorithm: ALG.AES, keyBits: 128, mode: ALG.CFB };
const TEMPLATES = {
  eccStorage: (): Public => ({
    type: ALG.ECC,
    nameAlg: ALG.SHA256,
    objectAttributes: BASE | A.restricted | A.decrypt,
    authPolicy: EMPTY,
    parameters: { type: ALG.ECC, symmetric: AES128_CFB, scheme: NULL_SCHEME, curveID: ECC_CURVE.NIST_P256, kdf: NULL_SCHEME },
    unique: { ecc: { x: EMPTY, y: EMPTY } },
  }),
  ecdsaKey: (): Public => ({
    type: ALG.ECC,
    nameAlg: ALG.SHA256,
    objectAttributes: BASE | A.sign,
    authPolicy: EMPTY,
    parameters: { type: ALG.ECC, symmetric: NULL_SYM, scheme: { scheme: ALG.ECDSA, hashAlg: ALG.SHA256 }, curveID: ECC_CURVE.NIST_P256, kdf: NULL_SCHEME },
    unique: { ecc: { x: EMPTY, y: EMPTY } },
  }),
  rsaDecryptKey: (): Public => ({
    type: ALG.RSA,
    nameAlg: ALG.SHA256,
    objectAttributes: BASE | A.decrypt,
    authPolicy: EMPTY,
    parameters: { type: ALG.RSA, symmetric: NULL_SYM, scheme: NULL_SCHEME, keyBits: 2048, exponent: 0 },
    unique: { rsa: EMPTY },
  }),
  aesKey: (): Public => ({
    type: ALG.SYMCIPHER,
    nameAlg: ALG.SHA256,
    objectAttributes: BASE | A.decrypt | A.sign,
    authPolicy: EMPTY,
    parameters: { type: ALG.SYMCIPHER, sym: AES128_CFB },
    unique: { digest: EMPTY },
  }),
  sealed: (objectAttributes: number, authPolicy: Buffer = EMPTY): Public => ({
    type: ALG.KEYEDHASH,
    nameAlg: ALG.SHA256,
    objectAttributes,
    authPolicy,
    parameters: { type: ALG.KEYEDHASH, scheme: NULL_SCHEME },
    unique: { digest: EMPTY },
  }),
};

/** nameAlg || H(TPMT_PUBLIC) of a template as the TPM filled it in. */
const objectNameOf = (pub: Public): Buffer => Buffer.concat([u16b(pub.nameAlg), h(HASH_OF_ALG[pub.nameAlg]!, Buffer.from(encode(publicArea, pub)))]);

/** The digest PolicyCommandCode(cc) leaves in a fresh SHA-256 session. */
const commandCodePolicy = (cc: number): Buffer => h('sha256', Buffer.alloc(32), u32b(CC.PolicyCommandCode), u32b(cc));

const skip = abrmdUnavailable();

describe('tpm2-tools through tpm2-abrmd in front of vtpmd', { skip }, () => {
  const state = tempDir('vtpmd-abrmd-state-');
  const files = tempDir('vtpmd-abrmd-files-');
  const busDir = tempDir('vtpmd-abrmd-bus-');
  let server: VtpmdServer | undefined;
  let bus: DbusSession | undefined;
  let abrmd: Abrmd;
  const f = (name: string) => join(files.path, name);
  const tool = (cmd: string, ...args: string[]) => abrmd.tool(cmd, args);
  /** Asserts that a tool fails, with a message matching `re`. */
  const fails = async (re: RegExp, cmd: string, ...args: string[]) => {
    await assert.rejects(abrmd.tool(cmd, args), (e: Error) => {
      assert.match(e.message, re);
      return true;
    });
  };

  before(async () => {
    server = await VtpmdServer.start('swtpm', state.path);
    bus = await DbusSession.start(busDir.path);
    abrmd = await Abrmd.start(bus, server.tcti);
  });

  after(async () => {
    // Clients first, then the daemon, the bus, and the TPM it was talking to.
    await abrmd?.stop();
    await bus?.stop();
    await server?.stop();
    state.remove();
    files.remove();
    busDir.remove();
  });

  it('tpm2_startup -c through tpm2-abrmd starts vtpmd; getrandom and getcap answer through the daemon', async () => {
    await tool('tpm2_startup', '-c');
    const a = (await tool('tpm2_getrandom', '--hex', '16')).trim();
    const b = (await tool('tpm2_getrandom', '--hex', '16')).trim();
    assert.match(a, /^[0-9a-f]{32}$/);
    assert.notEqual(a, b);
    // vtpmd has three transient object slots and three session slots: the flows below need more.
    const fixed = await tool('tpm2_getcap', 'properties-fixed');
    assert.match(fixed, /TPM2_PT_HR_TRANSIENT_MIN:\s*raw: 0x3\b/);
    assert.match(fixed, /TPM2_PT_HR_LOADED_MIN:\s*raw: 0x3\b/);
    // tpm2-abrmd shows a client only its own transient handles: a fresh connection has none.
    assert.equal((await tool('tpm2_getcap', 'handles-transient')).trim(), '');
  });

  it('RSA and ECC primaries, create and load: load and readpublic report the name computed from the public area', async () => {
    for (const [alg, keyAlg] of [
      ['rsa', 'rsa2048'],
      ['ecc', 'ecc256'],
    ] as const) {
      await tool('tpm2_createprimary', '-C', 'o', '-G', alg, '-c', f(`prim-${alg}.ctx`));
      await tool('tpm2_readpublic', '-c', f(`prim-${alg}.ctx`), '-o', f(`prim-${alg}.pub`), '-n', f(`prim-${alg}.name`));
      assert.deepEqual(readFileSync(f(`prim-${alg}.name`)), nameOfPublicFile(readFileSync(f(`prim-${alg}.pub`))), `${alg} primary name`);

      await tool('tpm2_create', '-C', f(`prim-${alg}.ctx`), '-G', keyAlg, '-u', f(`key-${alg}.pub`), '-r', f(`key-${alg}.priv`));
      await tool('tpm2_load', '-C', f(`prim-${alg}.ctx`), '-u', f(`key-${alg}.pub`), '-r', f(`key-${alg}.priv`), '-c', f(`key-${alg}.ctx`), '-n', f(`key-${alg}.name`));
      const out = await tool('tpm2_readpublic', '-c', f(`key-${alg}.ctx`), '-o', f(`key-${alg}.read.pub`), '-n', f(`key-${alg}.read.name`));
      assert.match(out, new RegExp(`type:\\s*value: ${alg}`));

      const expected = nameOfPublicFile(readFileSync(f(`key-${alg}.pub`)));
      assert.deepEqual(readFileSync(f(`key-${alg}.name`)), expected, `${alg}: the name tpm2_load printed`);
      assert.deepEqual(readFileSync(f(`key-${alg}.read.name`)), expected, `${alg}: the name tpm2_readpublic printed`);
      assert.match(out, new RegExp(`^name: ${expected.toString('hex')}$`, 'm'));
      assert.deepEqual(readFileSync(f(`key-${alg}.read.pub`)), readFileSync(f(`key-${alg}.pub`)), `${alg}: public area read back`);
    }
  });

  it('tpm2_evictcontrol persists the RSA primary at 0x81000010, which then parents keys', async () => {
    const out = await tool('tpm2_evictcontrol', '-C', 'o', '-c', f('prim-rsa.ctx'), PERSISTENT);
    assert.match(out, /persistent-handle: 0x81000010/);
    assert.match(out, /action: persisted/);
    assert.match(await tool('tpm2_getcap', 'handles-persistent'), /^- 0x81000010$/m);

    await tool('tpm2_readpublic', '-c', PERSISTENT, '-n', f('persistent.name'));
    assert.deepEqual(readFileSync(f('persistent.name')), readFileSync(f('prim-rsa.name')));

    await tool('tpm2_create', '-C', PERSISTENT, '-G', 'ecc256', '-u', f('under-persistent.pub'), '-r', f('under-persistent.priv'));
    await tool('tpm2_load', '-C', PERSISTENT, '-u', f('under-persistent.pub'), '-r', f('under-persistent.priv'), '-c', f('under-persistent.ctx'));
    await tool('tpm2_readpublic', '-c', f('under-persistent.ctx'), '-n', f('under-persistent.name'));
    assert.deepEqual(readFileSync(f('under-persistent.name')), nameOfPublicFile(readFileSync(f('under-persistent.pub'))));
  });

  it('tpm2_flushcontext flushes a saved session: the session context cannot be used afterwards', async () => {
    await tool('tpm2_startauthsession', '--hmac-session', '-S', f('flush.session'));
    assert.match(await tool('tpm2_sessionconfig', f('flush.session')), /Session-Handle: 0x02[0-9a-f]{6}/i);
    // A session that neither authorizes, audits nor encrypts is refused (TPM_RC_ATTRIBUTES, session 1)…
    await fails(/0x982|inconsistent attributes/i, 'tpm2_getrandom', '-S', f('flush.session'), '--hex', '8');
    // …and stays usable once it encrypts.
    await tool('tpm2_sessionconfig', '--enable-encrypt', f('flush.session'));
    assert.match((await tool('tpm2_getrandom', '-S', f('flush.session'), '--hex', '8')).trim(), /^[0-9a-f]{16}$/);
    await tool('tpm2_flushcontext', f('flush.session'));
    await fails(/ContextLoad|session/i, 'tpm2_getrandom', '-S', f('flush.session'), '--hex', '8');
    // Flushing everything this connection holds succeeds (tpm2-abrmd shows it nothing to flush).
    await tool('tpm2_flushcontext', '-t');
    await tool('tpm2_flushcontext', '-s');
    await tool('tpm2_flushcontext', '-l');
  });

  it('a sealed object under a PolicyPCR policy unseals while PCRs 0,1 are unchanged and not after tpm2_pcrextend', async () => {
    await tool('tpm2_pcrread', '-o', f('pcrs.bin'), 'sha256:0,1');
    await tool('tpm2_createpolicy', '--policy-pcr', '-l', 'sha256:0,1', '-f', f('pcrs.bin'), '-L', f('pcr.policy'));
    // PolicyPCR: H(0…0 || TPM_CC_PolicyPCR || TPML_PCR_SELECTION{sha256: 0,1} || H(PCR0 || PCR1)).
    const selection = Buffer.from('00000001000b03030000', 'hex');
    const expected = h('sha256', Buffer.alloc(32), u32b(CC.PolicyPCR), selection, h('sha256', readFileSync(f('pcrs.bin'))));
    assert.deepEqual(readFileSync(f('pcr.policy')), expected, 'the PolicyPCR digest of the trial session');

    const secret = randomBytes(24);
    writeFileSync(f('sealed.in'), secret);
    await tool('tpm2_create', '-C', PERSISTENT, '-L', f('pcr.policy'), '-i', f('sealed.in'), '-a', 'fixedtpm|fixedparent', '-u', f('sealed.pub'), '-r', f('sealed.priv'));
    await tool('tpm2_load', '-C', PERSISTENT, '-u', f('sealed.pub'), '-r', f('sealed.priv'), '-c', f('sealed.ctx'));
    await tool('tpm2_unseal', '-c', f('sealed.ctx'), '-p', 'pcr:sha256:0,1', '-o', f('sealed.out'));
    assert.deepEqual(readFileSync(f('sealed.out')), secret);

    await tool('tpm2_pcrextend', `1:sha256=${randomBytes(32).toString('hex')}`);
    await fails(/0x99d|policy check failed/i, 'tpm2_unseal', '-c', f('sealed.ctx'), '-p', 'pcr:sha256:0,1');
  });

  it('tpm2_hash and tpm2_pcrevent of 5000 bytes (hash and event sequences) match node:crypto', async () => {
    const data = randomBytes(5000);
    writeFileSync(f('big.bin'), data);
    for (const alg of BANKS) {
      await tool('tpm2_hash', '-C', 'o', '-g', alg, '-o', f(`big.${alg}`), '-t', f(`big.${alg}.tk`), f('big.bin'));
      assert.deepEqual(readFileSync(f(`big.${alg}`)), h(alg, data), alg);
      const ticket = readFileSync(f(`big.${alg}.tk`));
      assert.equal(ticket.readUInt16BE(0), 0x8024, 'TPM_ST_HASHCHECK');
      assert.equal(ticket.readUInt32BE(2), RH.OWNER);
    }
    await tool('tpm2_pcrreset', '16');
    await tool('tpm2_pcrevent', '16', f('big.bin'));
    const read = parsePcrRead(await tool('tpm2_pcrread', 'sha1:16+sha256:16+sha384:16+sha512:16'));
    for (const b of BANKS) assert.equal(read.get(b)!.get(16), h(b, Buffer.alloc(SIZES[b]), h(b, data)).toString('hex'), b);
  });

  it('HMAC sessions with parameter encryption: getrandom, and create/unseal with a salted session encrypting both ways', async () => {
    await tool('tpm2_startauthsession', '--hmac-session', '-S', f('hmac.session'));
    await tool('tpm2_sessionconfig', '--enable-encrypt', f('hmac.session'));
    assert.match(await tool('tpm2_sessionconfig', f('hmac.session')), /Session-Attributes: continuesession\|encrypt/);
    const r1 = (await tool('tpm2_getrandom', '-S', f('hmac.session'), '--hex', '16')).trim();
    const r2 = (await tool('tpm2_getrandom', '-S', f('hmac.session'), '--hex', '16')).trim();
    assert.match(r1, /^[0-9a-f]{32}$/);
    assert.notEqual(r1, r2);
    await tool('tpm2_flushcontext', f('hmac.session'));

    // Salted with the persistent RSA key: the session key comes from an RSA-OAEP-encrypted seed.
    await tool('tpm2_startauthsession', '--hmac-session', '-c', PERSISTENT, '-S', f('salted.session'));
    await tool('tpm2_sessionconfig', '--enable-encrypt', '--enable-decrypt', f('salted.session'));
    // Create's inSensitive (auth value and data) goes encrypted under the parent's session…
    const secret = randomBytes(32);
    writeFileSync(f('hmac-sealed.in'), secret);
    await tool(
      'tpm2_create',
      '-C', PERSISTENT,
      '-P', `session:${f('salted.session')}`,
      '-i', f('hmac-sealed.in'),
      '-p', 'hunter2',
      '-a', 'fixedtpm|fixedparent|userwithauth|noda',
      '-u', f('hmac-sealed.pub'),
      '-r', f('hmac-sealed.priv'),
    );
    await tool('tpm2_load', '-C', PERSISTENT, '-u', f('hmac-sealed.pub'), '-r', f('hmac-sealed.priv'), '-c', f('hmac-sealed.ctx'));
    // …and Unseal's outData comes back encrypted: both must round-trip.
    await tool('tpm2_unseal', '-c', f('hmac-sealed.ctx'), '-p', `session:${f('salted.session')}+hunter2`, '-o', f('hmac-sealed.out'));
    assert.deepEqual(readFileSync(f('hmac-sealed.out')), secret);
    // The object is noDA: a wrong password is TPM_RC_BAD_AUTH (no DA implications), session 1.
    await fails(/0x9a2|without DA implications/i, 'tpm2_unseal', '-c', f('hmac-sealed.ctx'), '-p', `session:${f('salted.session')}+wrong`);
    await tool('tpm2_flushcontext', f('salted.session'));
  });

  it('five keys created and loaded with tpm2-tools are read back by five concurrent clients, each with its own contexts', async () => {
    const keys = [0, 1, 2, 3, 4];
    for (const i of keys) {
      await tool('tpm2_create', '-C', PERSISTENT, '-G', 'ecc256', '-u', f(`five-${i}.pub`), '-r', f(`five-${i}.priv`));
      await tool('tpm2_load', '-C', PERSISTENT, '-u', f(`five-${i}.pub`), '-r', f(`five-${i}.priv`), '-c', f(`five-${i}.ctx`));
    }
    await Promise.all(keys.map((i) => tool('tpm2_readpublic', '-c', f(`five-${i}.ctx`), '-n', f(`five-${i}.name`))));
    const names = keys.map((i) => readFileSync(f(`five-${i}.name`)).toString('hex'));
    keys.forEach((i) => assert.equal(names[i], nameOfPublicFile(readFileSync(f(`five-${i}.pub`))).toString('hex'), `key ${i}`));
    assert.equal(new Set(names).size, 5);
  });

  describe('one connection holding more objects and sessions than vtpmd has slots', () => {
    let conn: RawConnection;
    before(async () => {
      conn = await abrmd.connect();
    });
    after(async () => {
      await conn?.close();
    });

    const run = async (cmd: Buffer): Promise<Response> => {
      const raw = await conn.send(cmd);
      return parseResponse(raw, { responseHandle: RESPONSE_HANDLE_COMMANDS.has(commandCode(cmd)) });
    };
    const ok = async (cmd: Buffer): Promise<Response> => {
      const r = await run(cmd);
      assert.equal(r.rc, 0, `command 0x${commandCode(cmd).toString(16)} answered ${hexRc(r.rc)}\n${abrmd.diagnostics()}`);
      return r;
    };
    const createParams = (template: Public, data: Buffer) =>
      params(enc(sensitiveCreate, { userAuth: EMPTY, data }), enc(public2b, template), tpm2b(''), enc(pcrSelectionList, []));
    const transientHandles = async () =>
      (parse.getCapability(await ok(getCapability(CAP.HANDLES, 0x80000000, 64))).capabilityData as { items: number[] }).items;
    const readPublic = async (handle: number) =>
      responseParams(await ok(buildCommand({ cc: CC.ReadPublic, handles: [handle] })), { outPublic: public2b, name: nameBuf, qualifiedName: nameBuf });
    const unseal = async (handle: number, session: SessionSpec = pw()) =>
      digestBuf.decode((await ok(buildCommand({ cc: CC.Unseal, handles: [handle], sessions: [session] }))).reader());

    it('a primary and five keys loaded at once are swapped in for each command: ReadPublic, Unseal and a policy session all answer', async () => {
      const slots = parse.getCapability(await ok(getCapability(CAP.TPM_PROPERTIES, PT.HR_TRANSIENT_MIN, 1))).capabilityData as {
        properties: { property: number; value: number }[];
      };
      const transientMin = slots.properties[0]!.value;
      assert.equal(transientMin, 3);

      const primaryResp = await ok(buildCommand({ cc: CC.CreatePrimary, handles: [RH.OWNER], sessions: [pw()], params: createParams(TEMPLATES.eccStorage(), EMPTY) }));
      const primaryPub = public2b.decode(primaryResp.reader());
      const primary = primaryResp.handle!;

      const sealedPlain = Buffer.from('sealed under a password');
      const sealedPolicy = Buffer.from('sealed under PolicyCommandCode(Unseal)');
      const templates: [Public, Buffer][] = [
        [TEMPLATES.ecdsaKey(), EMPTY],
        [TEMPLATES.rsaDecryptKey(), EMPTY],
        [TEMPLATES.aesKey(), EMPTY],
        [TEMPLATES.sealed(A.fixedTPM | A.fixedParent | A.userWithAuth | A.noDA), sealedPlain],
        // No userWithAuth: only the policy session can authorize Unseal.
        [TEMPLATES.sealed(A.fixedTPM | A.fixedParent | A.noDA, commandCodePolicy(CC.Unseal)), sealedPolicy],
      ];
      const created: { priv: Buffer; pub: Public }[] = [];
      for (const [template, data] of templates) {
        const rd = (await ok(buildCommand({ cc: CC.Create, handles: [primary], sessions: [pw()], params: createParams(template, data) }))).reader();
        created.push({ priv: privateBuf.decode(rd), pub: public2b.decode(rd) });
      }
      const loaded: number[] = [];
      for (const [i, { priv, pub }] of created.entries()) {
        const r = await ok(buildCommand({ cc: CC.Load, handles: [primary], sessions: [pw()], params: params(enc(privateBuf, priv), enc(public2b, pub)) }));
        assert.deepEqual(nameBuf.decode(r.reader()), objectNameOf(pub), `Load's name for key ${i}`);
        loaded.push(r.handle!);
      }
      const all = [primary, ...loaded];
      assert.equal(new Set(all).size, 6, 'six distinct handles');
      assert.ok(all.length > transientMin);
      assert.deepEqual([...(await transientHandles())].sort(), [...all].sort(), 'GetCapability lists every object this connection holds');

      // Every handle still means its own object: the names and public areas come back right.
      assert.deepEqual((await readPublic(primary)).name, objectNameOf(primaryPub));
      for (const [i, handle] of loaded.entries()) {
        const out = await readPublic(handle);
        assert.deepEqual(out.name, objectNameOf(created[i]!.pub), `ReadPublic name of key ${i}`);
        assert.deepEqual(enc(public2b, out.outPublic), enc(public2b, created[i]!.pub), `ReadPublic area of key ${i}`);
      }
      assert.deepEqual(await unseal(loaded[3]!), sealedPlain);

      // Four policy sessions at once (vtpmd has three session slots; tpm2-abrmd allows four per connection).
      const codes = [CC.Unseal, CC.ReadPublic, CC.FlushContext, CC.GetCapability];
      const sessions: number[] = [];
      for (const _ of codes) {
        const r = await ok(
          buildCommand({ cc: CC.StartAuthSession, handles: [RH.NULL, RH.NULL], params: params(tpm2b(randomBytes(16)), tpm2b(''), Buffer.from([1]), u16b(ALG.NULL), u16b(ALG.SHA256)) }),
        );
        sessions.push(r.handle!);
      }
      assert.equal(new Set(sessions).size, 4);
      for (const [i, s] of sessions.entries()) await ok(buildCommand({ cc: CC.PolicyCommandCode, handles: [s], params: u32b(codes[i]!) }));
      for (const [i, s] of sessions.entries()) {
        const digest = digestBuf.decode((await ok(buildCommand({ cc: CC.PolicyGetDigest, handles: [s] }))).reader());
        assert.deepEqual(digest, commandCodePolicy(codes[i]!), `policy digest of session ${i}`);
      }
      // The session bound to Unseal authorizes it; the one bound to ReadPublic does not.
      const wrong = await run(buildCommand({ cc: CC.Unseal, handles: [loaded[4]!], sessions: [{ handle: sessions[1]!, nonce: randomBytes(16), attributes: 1, password: '' }] }));
      assert.equal(wrong.rc, 0x99d, `Unseal under the wrong policy answered ${hexRc(wrong.rc)}, expected TPM_RC_POLICY_FAIL for session 1`);
      assert.deepEqual(await unseal(loaded[4]!, { handle: sessions[0]!, nonce: randomBytes(16), attributes: 0, password: '' }), sealedPolicy);

      // The session without continueSession is gone; flush the rest, and the objects.
      for (const s of sessions.slice(1)) await ok(buildCommand({ cc: CC.FlushContext, params: u32b(s) }));
      assert.notEqual((await run(buildCommand({ cc: CC.FlushContext, params: u32b(sessions[0]!) }))).rc, 0, 'the used-up session is gone');
      for (const handle of all) await ok(buildCommand({ cc: CC.FlushContext, params: u32b(handle) }));
      assert.deepEqual(await transientHandles(), []);
      assert.notEqual((await run(buildCommand({ cc: CC.ReadPublic, handles: [loaded[0]!] }))).rc, 0, 'a flushed handle is refused');
    });
  });

  it('tpm2_sign with ECDSA and RSASSA keys: node:crypto and tpm2_verifysignature accept the signatures', async () => {
    const message = randomBytes(300);
    writeFileSync(f('message.bin'), message);
    writeFileSync(f('other.bin'), Buffer.concat([message, Buffer.from([1])]));
    for (const [name, alg] of [
      ['ecdsa', 'ecc256:ecdsa-sha256'],
      ['rsassa', 'rsa2048:rsassa-sha256'],
    ] as const) {
      await tool('tpm2_create', '-C', PERSISTENT, '-G', alg, '-u', f(`${name}.pub`), '-r', f(`${name}.priv`));
      await tool('tpm2_load', '-C', PERSISTENT, '-u', f(`${name}.pub`), '-r', f(`${name}.priv`), '-c', f(`${name}.ctx`));
      await tool('tpm2_readpublic', '-c', f(`${name}.ctx`), '-f', 'pem', '-o', f(`${name}.pem`));
      await tool('tpm2_sign', '-c', f(`${name}.ctx`), '-g', 'sha256', '-f', 'plain', '-o', f(`${name}.plain`), f('message.bin'));
      const key = createPublicKey(readFileSync(f(`${name}.pem`)));
      assert.ok(verify('sha256', message, key, readFileSync(f(`${name}.plain`))), `${name}: node:crypto verifies the signature`);

      await tool('tpm2_sign', '-c', f(`${name}.ctx`), '-g', 'sha256', '-o', f(`${name}.sig`), f('message.bin'));
      await tool('tpm2_verifysignature', '-c', f(`${name}.ctx`), '-g', 'sha256', '-m', f('message.bin'), '-s', f(`${name}.sig`), '-t', f(`${name}.tk`));
      assert.equal(readFileSync(f(`${name}.tk`)).readUInt16BE(0), 0x8022, `${name}: a TPM_ST_VERIFIED ticket`);
      await fails(/0x2db|signature is not valid/i, 'tpm2_verifysignature', '-c', f(`${name}.ctx`), '-g', 'sha256', '-m', f('other.bin'), '-s', f(`${name}.sig`));
    }
  });

  it('tpm2_quote with a restricted RSA key: tpm2_checkquote verifies it against the nonce and the PCR values', async () => {
    await tool(
      'tpm2_create',
      '-C', PERSISTENT,
      '-G', 'rsa2048:rsassa-sha256:null',
      '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign',
      '-u', f('ak.pub'),
      '-r', f('ak.priv'),
    );
    await tool('tpm2_load', '-C', PERSISTENT, '-u', f('ak.pub'), '-r', f('ak.priv'), '-c', f('ak.ctx'));
    await tool('tpm2_readpublic', '-c', f('ak.ctx'), '-f', 'pem', '-o', f('ak.pem'));
    const nonce = randomBytes(16).toString('hex');
    await tool('tpm2_quote', '-c', f('ak.ctx'), '-l', 'sha256:0,1,16', '-q', nonce, '-m', f('quote.msg'), '-s', f('quote.sig'), '-o', f('quote.pcrs'), '-g', 'sha256');
    const attest = readFileSync(f('quote.msg'));
    assert.equal(attest.readUInt32BE(0), 0xff544347, 'TPM_GENERATED_VALUE');
    assert.equal(attest.readUInt16BE(4), 0x8018, 'TPM_ST_ATTEST_QUOTE');
    assert.ok(attest.includes(Buffer.from(nonce, 'hex')), 'the nonce is the extraData');
    await tool('tpm2_checkquote', '-u', f('ak.pem'), '-m', f('quote.msg'), '-s', f('quote.sig'), '-f', f('quote.pcrs'), '-g', 'sha256', '-q', nonce);
    await assert.rejects(
      abrmd.tool('tpm2_checkquote', ['-u', f('ak.pem'), '-m', f('quote.msg'), '-s', f('quote.sig'), '-f', f('quote.pcrs'), '-g', 'sha256', '-q', 'ff'.repeat(16)]),
    );
  });

  it('NV through tpm2-abrmd: define, write, read, increment, extend, setbits, writelock, undefine', async () => {
    const nvread = async (index: string, size: number) => {
      await tool('tpm2_nvread', index, '-C', 'o', '-s', String(size), '-o', f('nv.out'));
      return readFileSync(f('nv.out'));
    };
    await tool('tpm2_nvdefine', '0x1500020', '-C', 'o', '-s', '16', '-a', 'ownerread|ownerwrite|authread|authwrite|write_stclear');
    writeFileSync(f('nv.data'), Buffer.from('abrmd nv bytes!!'));
    await tool('tpm2_nvwrite', '0x1500020', '-C', 'o', '-i', f('nv.data'));
    assert.equal((await nvread('0x1500020', 16)).toString(), 'abrmd nv bytes!!');
    await tool('tpm2_nvdefine', '0x1500021', '-C', 'o', '-s', '8', '-a', 'nt=counter|ownerread|authread|authwrite');
    await tool('tpm2_nvincrement', '0x1500021', '-C', '0x1500021');
    await tool('tpm2_nvincrement', '0x1500021', '-C', '0x1500021');
    const c1 = (await nvread('0x1500021', 8)).readBigUInt64BE(0);
    await tool('tpm2_nvincrement', '0x1500021', '-C', '0x1500021');
    assert.equal((await nvread('0x1500021', 8)).readBigUInt64BE(0), c1 + 1n);
    await tool('tpm2_nvdefine', '0x1500022', '-C', 'o', '-g', 'sha256', '-a', 'nt=extend|ownerread|authread|authwrite');
    await tool('tpm2_nvextend', '0x1500022', '-C', '0x1500022', '-i', f('nv.data'));
    const extended = await nvread('0x1500022', 32);
    assert.deepEqual(extended, h('sha256', Buffer.alloc(32), Buffer.from('abrmd nv bytes!!')));
    await tool('tpm2_nvdefine', '0x1500023', '-C', 'o', '-a', 'nt=bits|ownerread|authread|authwrite');
    await tool('tpm2_nvsetbits', '0x1500023', '-C', '0x1500023', '-i', '0x5');
    await tool('tpm2_nvsetbits', '0x1500023', '-C', '0x1500023', '-i', '0x100');
    assert.equal((await nvread('0x1500023', 8)).readBigUInt64BE(0), 0x105n);
    await tool('tpm2_nvwritelock', '0x1500020', '-C', 'o');
    await fails(/NV access locked|0x148/i, 'tpm2_nvwrite', '0x1500020', '-C', 'o', '-i', f('nv.data'));
    for (const ix of ['0x1500020', '0x1500021', '0x1500022', '0x1500023']) await tool('tpm2_nvundefine', ix, '-C', 'o');
    assert.doesNotMatch(await tool('tpm2_getcap', 'handles-nv-index'), /0x1500020/);
  });

  it('tpm2_makecredential to the EK and tpm2_activatecredential through tpm2-abrmd recover the secret', async () => {
    await tool('tpm2_createek', '-c', f('cred-ek.ctx'), '-G', 'rsa', '-u', f('cred-ek.pub'));
    await tool('tpm2_createak', '-C', f('cred-ek.ctx'), '-c', f('cred-ak.ctx'), '-G', 'rsa', '-g', 'sha256', '-s', 'rsassa', '-u', f('cred-ak.pub'), '-n', f('cred-ak.name'));
    const secret = randomBytes(24);
    writeFileSync(f('cred.secret'), secret);
    await tool('tpm2_makecredential', '-T', 'none', '-u', f('cred-ek.pub'), '-s', f('cred.secret'), '-n', (readFileSync(f('cred-ak.name'))).toString('hex'), '-o', f('cred.blob'));
    await tool('tpm2_startauthsession', '--policy-session', '-S', f('cred-session.ctx'));
    await tool('tpm2_policysecret', '-S', f('cred-session.ctx'), '-c', 'e');
    await tool('tpm2_activatecredential', '-c', f('cred-ak.ctx'), '-C', f('cred-ek.ctx'), '-i', f('cred.blob'), '-o', f('cred.out'), '-P', `session:${f('cred-session.ctx')}`);
    await tool('tpm2_flushcontext', f('cred-session.ctx'));
    assert.deepEqual(readFileSync(f('cred.out')), secret);
  });

  it('policyor and policyauthvalue flows through tpm2-abrmd: a sealed object opens under either branch only', async () => {
    await tool('tpm2_createprimary', '-C', 'o', '-c', f('pol-primary.ctx'));
    // Branch A: PolicyAuthValue; branch B: PolicyPCR over PCR 23. The object's policy is their OR.
    await tool('tpm2_startauthsession', '-S', f('trial.ctx'));
    await tool('tpm2_policyauthvalue', '-S', f('trial.ctx'), '-L', f('branch-a.policy'));
    await tool('tpm2_flushcontext', f('trial.ctx'));
    await tool('tpm2_startauthsession', '-S', f('trial.ctx'));
    await tool('tpm2_policypcr', '-S', f('trial.ctx'), '-l', 'sha256:23', '-L', f('branch-b.policy'));
    await tool('tpm2_flushcontext', f('trial.ctx'));
    await tool('tpm2_startauthsession', '-S', f('trial.ctx'));
    await tool('tpm2_policyor', '-S', f('trial.ctx'), '-L', f('or.policy'), '-l', `sha256:${f('branch-a.policy')},${f('branch-b.policy')}`);
    await tool('tpm2_flushcontext', f('trial.ctx'));
    writeFileSync(f('or.data'), 'or-sealed');
    await tool('tpm2_create', '-C', f('pol-primary.ctx'), '-L', f('or.policy'), '-p', 'objpass', '-i', f('or.data'), '-u', f('or.pub'), '-r', f('or.priv'), '-a', 'fixedtpm|fixedparent|noda');
    await tool('tpm2_load', '-C', f('pol-primary.ctx'), '-u', f('or.pub'), '-r', f('or.priv'), '-c', f('or.ctx'));
    // Branch A with the object's password.
    await tool('tpm2_startauthsession', '--policy-session', '-S', f('s.ctx'));
    await tool('tpm2_policyauthvalue', '-S', f('s.ctx'));
    await tool('tpm2_policyor', '-S', f('s.ctx'), '-l', `sha256:${f('branch-a.policy')},${f('branch-b.policy')}`);
    assert.equal(await tool('tpm2_unseal', '-c', f('or.ctx'), '-p', `session:${f('s.ctx')}+objpass`), 'or-sealed');
    await tool('tpm2_flushcontext', f('s.ctx'));
    // Branch A with a wrong password fails.
    await tool('tpm2_startauthsession', '--policy-session', '-S', f('s.ctx'));
    await tool('tpm2_policyauthvalue', '-S', f('s.ctx'));
    await tool('tpm2_policyor', '-S', f('s.ctx'), '-l', `sha256:${f('branch-a.policy')},${f('branch-b.policy')}`);
    await fails(/auth|0x98e|0x9a2/i, 'tpm2_unseal', '-c', f('or.ctx'), '-p', `session:${f('s.ctx')}+wrong`);
    await tool('tpm2_flushcontext', f('s.ctx'));
  });

  it('tpm2_evictcontrol removes the persistent key again; tpm2-abrmd is still running', async () => {
    const out = await tool('tpm2_evictcontrol', '-C', 'o', '-c', PERSISTENT);
    assert.match(out, /action: evicted/);
    assert.doesNotMatch(await tool('tpm2_getcap', 'handles-persistent'), /0x81000010/);
    assert.ok(abrmd.alive, abrmd.diagnostics());
  });
});
