/**
 * Keys for tests of the secret-sharing, credential, asymmetric, symmetric and duplication
 * commands: templates, CreatePrimary / Create / Load / LoadExternal / FlushContext builders,
 * policy sessions, and the outside party's side of secret sharing (OAEP, ECDH, KDFa, KDFe),
 * computed with node:crypto alone.
 */
import assert from 'node:assert/strict';
import {
  constants,
  createCipheriv,
  createDecipheriv,
  createECDH,
  createHash,
  createHmac,
  createPublicKey,
  privateDecrypt,
  publicEncrypt,
  type KeyObject,
} from 'node:crypto';
import { Writer } from '../../src/tpm/wire/buffer.ts';
import { generatePrivateKey } from '../../src/tpm/crypto/rsa.ts';
import { ALG, CC, ECC_CURVE, RH } from '../../src/tpm/tpm2/constants.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { pcrSelectionList } from '../../src/tpm/tpm2/types/pcr.ts';
import { NULL_SCHEME, NULL_SYM, type Scheme, type SymDef } from '../../src/tpm/tpm2/types/public-parms.ts';
import { OBJECT_ATTR as A, public2b, publicArea, sensitive2b, sensitiveCreate, type Public, type Sensitive } from '../../src/tpm/tpm2/types/public.ts';
import { buildCommand, enc, params, pw, responseParams, tpm2b, u16b, u32b, type SessionSpec } from './tpm2-commands.ts';
import { nodeHashName, ok } from './tpm2-engine.ts';
import { digestBuf } from '../../src/tpm/tpm2/types/basic.ts';
import { nameBuf, privateBuf } from '../../src/tpm/tpm2/types/creation.ts';
import { encode } from '../../src/tpm/wire/codec.ts';

export const AES128_CFB: SymDef = { algorithm: ALG.AES, keyBits: 128, mode: ALG.CFB };
const EMPTY = Buffer.alloc(0);

export type Auth = string | Uint8Array | SessionSpec;
export const sess = (a: Auth): SessionSpec => (typeof a === 'string' || a instanceof Uint8Array ? pw(a) : a);

const STORAGE = A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.noDA | A.restricted | A.decrypt;

/** An RSA storage key (restricted decrypt, AES-128-CFB, NULL scheme). */
export function rsaStorage(bits = 1024, nameAlg: number = ALG.SHA256, attributes = STORAGE): Public {
  return {
    type: ALG.RSA,
    nameAlg,
    objectAttributes: attributes,
    authPolicy: EMPTY,
    parameters: { type: ALG.RSA, symmetric: AES128_CFB, scheme: NULL_SCHEME, keyBits: bits, exponent: 0 },
    unique: { rsa: EMPTY },
  };
}

/** An ECC storage key on a NIST curve. */
export function eccStorage(curveID: number = ECC_CURVE.NIST_P256, nameAlg: number = ALG.SHA256, attributes = STORAGE): Public {
  return {
    type: ALG.ECC,
    nameAlg,
    objectAttributes: attributes,
    authPolicy: EMPTY,
    parameters: { type: ALG.ECC, symmetric: AES128_CFB, scheme: NULL_SCHEME, curveID, kdf: NULL_SCHEME },
    unique: { ecc: { x: EMPTY, y: EMPTY } },
  };
}

/** An unrestricted RSA decryption key with the given scheme. */
export function rsaDecryptKey(scheme: Scheme = NULL_SCHEME, bits = 1024, extra = 0): Public {
  return {
    type: ALG.RSA,
    nameAlg: ALG.SHA256,
    objectAttributes: A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.noDA | A.decrypt | extra,
    authPolicy: EMPTY,
    parameters: { type: ALG.RSA, symmetric: NULL_SYM, scheme, keyBits: bits, exponent: 0 },
    unique: { rsa: EMPTY },
  };
}

/** An unrestricted ECC key; decrypt unless told otherwise. */
export function eccKey(attributes = A.decrypt, scheme: Scheme = NULL_SCHEME, curveID: number = ECC_CURVE.NIST_P256): Public {
  return {
    type: ALG.ECC,
    nameAlg: ALG.SHA256,
    objectAttributes: A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.noDA | attributes,
    authPolicy: EMPTY,
    parameters: { type: ALG.ECC, symmetric: NULL_SYM, scheme, curveID, kdf: NULL_SCHEME },
    unique: { ecc: { x: EMPTY, y: EMPTY } },
  };
}

/** An RSA signing key (restricted unless told otherwise), to activate credentials for. */
export function rsaSigningKey(restricted = true): Public {
  return {
    type: ALG.RSA,
    nameAlg: ALG.SHA256,
    objectAttributes: A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.noDA | A.sign | (restricted ? A.restricted : 0),
    authPolicy: EMPTY,
    parameters: { type: ALG.RSA, symmetric: NULL_SYM, scheme: { scheme: ALG.RSASSA, hashAlg: ALG.SHA256 }, keyBits: 1024, exponent: 0 },
    unique: { rsa: EMPTY },
  };
}

/**
 * A SYMCIPHER key; `attributes` chooses decrypt and/or sign (encrypt). With `keyFromCaller` the
 * key comes in the sensitive data of Create instead of from the TPM (sensitiveDataOrigin CLEAR).
 */
export function aesKey(mode: number = ALG.NULL, attributes = A.decrypt | A.sign, keyBits = 128, keyFromCaller = false): Public {
  return {
    type: ALG.SYMCIPHER,
    nameAlg: ALG.SHA256,
    objectAttributes: A.fixedTPM | A.fixedParent | A.userWithAuth | A.noDA | (keyFromCaller ? 0 : A.sensitiveDataOrigin) | attributes,
    authPolicy: EMPTY,
    parameters: { type: ALG.SYMCIPHER, sym: { algorithm: ALG.AES, keyBits, mode } },
    unique: { digest: EMPTY },
  };
}

/** A sealed data object (KEYEDHASH, no sign or decrypt). */
export function sealedData(attributes = A.fixedTPM | A.fixedParent | A.userWithAuth | A.noDA, authPolicy: Buffer = EMPTY): Public {
  return {
    type: ALG.KEYEDHASH,
    nameAlg: ALG.SHA256,
    objectAttributes: attributes,
    authPolicy,
    parameters: { type: ALG.KEYEDHASH, scheme: NULL_SCHEME },
    unique: { digest: EMPTY },
  };
}

export interface Loaded {
  handle: number;
  pub: Public;
  name: Buffer;
}

function createParams(template: Public, userAuth: Uint8Array | string, data: Uint8Array): Buffer {
  return params(
    enc(sensitiveCreate, { userAuth: Buffer.from(userAuth), data: Buffer.from(data) }),
    enc(public2b, template),
    tpm2b(''),
    enc(pcrSelectionList, []),
  );
}

export function createPrimary(tpm: Tpm2Engine, template: Public, hierarchy: number = RH.OWNER, opts: { userAuth?: string; hierarchyAuth?: Auth } = {}): Loaded {
  const r = ok(
    tpm,
    buildCommand({ cc: CC.CreatePrimary, handles: [hierarchy], sessions: [sess(opts.hierarchyAuth ?? '')], params: createParams(template, opts.userAuth ?? '', EMPTY) }),
  );
  const rd = r.reader();
  const pub = public2b.decode(rd);
  return { handle: r.handle!, pub, name: objectNameOf(pub) };
}

export function create(tpm: Tpm2Engine, parent: number, template: Public, opts: { userAuth?: string; data?: Uint8Array; parentAuth?: Auth } = {}): { priv: Buffer; pub: Public } {
  const r = ok(
    tpm,
    buildCommand({ cc: CC.Create, handles: [parent], sessions: [sess(opts.parentAuth ?? '')], params: createParams(template, opts.userAuth ?? '', opts.data ?? EMPTY) }),
  );
  const rd = r.reader();
  const priv = privateBuf.decode(rd);
  const pub = public2b.decode(rd);
  return { priv, pub };
}

export function loadCommand(parent: number, priv: Buffer, pub: Public, parentAuth: Auth = ''): Buffer {
  return buildCommand({ cc: CC.Load, handles: [parent], sessions: [sess(parentAuth)], params: params(enc(privateBuf, priv), enc(public2b, pub)) });
}

export function load(tpm: Tpm2Engine, parent: number, priv: Buffer, pub: Public): Loaded {
  const r = ok(tpm, loadCommand(parent, priv, pub));
  return { handle: r.handle!, pub, name: nameBuf.decode(r.reader()) };
}

/** Create then Load under `parent`. */
export function createLoaded(tpm: Tpm2Engine, parent: number, template: Public, opts: { userAuth?: string; data?: Uint8Array } = {}): Loaded {
  const { priv, pub } = create(tpm, parent, template, opts);
  return load(tpm, parent, priv, pub);
}

export function loadExternal(tpm: Tpm2Engine, pub: Public, sensitive: Sensitive | null = null, hierarchy: number = RH.NULL): Loaded {
  const r = ok(tpm, buildCommand({ cc: CC.LoadExternal, params: params(enc(sensitive2b, sensitive), enc(public2b, pub), u32b(hierarchy)) }));
  return { handle: r.handle!, pub, name: nameBuf.decode(r.reader()) };
}

export function flush(tpm: Tpm2Engine, handle: number): void {
  ok(tpm, buildCommand({ cc: CC.FlushContext, params: u32b(handle) }));
}

export function readPublic(tpm: Tpm2Engine, handle: number): { pub: Public; name: Buffer } {
  const r = ok(tpm, buildCommand({ cc: CC.ReadPublic, handles: [handle] }));
  const out = responseParams(r, { outPublic: public2b, name: nameBuf, qualifiedName: nameBuf });
  return { pub: out.outPublic, name: out.name };
}

/** nameAlg || H(TPMT_PUBLIC), computed here. */
export function objectNameOf(pub: Public): Buffer {
  const alg = u16b(pub.nameAlg);
  return Buffer.concat([alg, createHash(nodeHashName(pub.nameAlg)).update(encode(publicArea, pub)).digest()]);
}

// ---------------------------------------------------------------------------------------------
// Policy sessions

export interface PolicySession {
  handle: number;
  nonceTPM: Buffer;
}

export function startPolicySession(tpm: Tpm2Engine, authHash: number = ALG.SHA256): PolicySession {
  const r = ok(
    tpm,
    buildCommand({ cc: CC.StartAuthSession, handles: [RH.NULL, RH.NULL], params: params(tpm2b(Buffer.alloc(16, 7)), tpm2b(''), Buffer.from([1]), u16b(ALG.NULL), u16b(authHash)) }),
  );
  return { handle: r.handle!, nonceTPM: digestBuf.decode(r.reader()) };
}

/** PolicyCommandCode(cc) on a session. */
export function policyCommandCode(tpm: Tpm2Engine, s: PolicySession, cc: number): void {
  ok(tpm, buildCommand({ cc: CC.PolicyCommandCode, handles: [s.handle], params: u32b(cc) }));
}

/** The digest PolicyCommandCode(cc) leaves in a fresh session: H(0…0 || TPM_CC_PolicyCommandCode || cc). */
export function commandCodePolicy(cc: number, alg: number = ALG.SHA256): Buffer {
  const size = createHash(nodeHashName(alg)).digest().length;
  return createHash(nodeHashName(alg)).update(Buffer.alloc(size)).update(u32b(CC.PolicyCommandCode)).update(u32b(cc)).digest();
}

/** A policy session used to authorize a handle (no HMAC: the session key and authValue are not needed). */
export function policyAuth(s: PolicySession, continueSession = false): SessionSpec {
  return { handle: s.handle, nonce: Buffer.alloc(16, 9), attributes: continueSession ? 1 : 0, password: '' };
}

// ---------------------------------------------------------------------------------------------
// The outside party, independently of the engine

export function kdfa(alg: number, key: Uint8Array, label: string, u: Uint8Array, v: Uint8Array, bits: number): Buffer {
  const out: Buffer[] = [];
  for (let i = 1, have = 0; have * 8 < bits; i++) {
    const block = createHmac(nodeHashName(alg), key).update(u32b(i)).update(label).update(Buffer.from([0])).update(u).update(v).update(u32b(bits)).digest();
    out.push(block);
    have += block.length;
  }
  return Buffer.concat(out).subarray(0, Math.ceil(bits / 8));
}

/** KDFe (SP 800-56A concatenation KDF as TPM 2.0 Part 1 11.4.10.3 uses it). */
export function kdfe(alg: number, z: Uint8Array, label: string, u: Uint8Array, v: Uint8Array, bits: number): Buffer {
  const out: Buffer[] = [];
  for (let i = 1, have = 0; have * 8 < bits; i++) {
    const block = createHash(nodeHashName(alg)).update(u32b(i)).update(z).update(label).update(Buffer.from([0])).update(u).update(v).digest();
    out.push(block);
    have += block.length;
  }
  return Buffer.concat(out).subarray(0, Math.ceil(bits / 8));
}

/** The public key of a TPM RSA public area, as node:crypto sees it. */
export function rsaPublicKeyOf(pub: Public): KeyObject {
  assert.ok('rsa' in pub.unique);
  const e = pub.parameters.type === ALG.RSA && pub.parameters.exponent ? pub.parameters.exponent : 65537;
  const eb = Buffer.alloc(4);
  eb.writeUInt32BE(e);
  let i = 0;
  while (eb[i] === 0) i++;
  return createPublicKey({ key: { kty: 'RSA', n: pub.unique.rsa.toString('base64url'), e: eb.subarray(i).toString('base64url') }, format: 'jwk' });
}

const NODE_CURVE: Record<number, string> = { [ECC_CURVE.NIST_P256]: 'prime256v1', [ECC_CURVE.NIST_P384]: 'secp384r1' };

/** A TPMS_ECC_POINT's wire form. */
export function eccPointBytes(x: Buffer, y: Buffer): Buffer {
  const w = new Writer(128);
  w.u16(x.length).bytes(x).u16(y.length).bytes(y);
  return Buffer.from(w.finish());
}

/**
 * Shares a secret with a TPM key's public area as Part 1, 24 says an outside party does: returns
 * the seed and the TPM2B_ENCRYPTED_SECRET contents.
 */
export function shareSecret(pub: Public, use: string, seedIn?: Buffer): { seed: Buffer; secret: Buffer } {
  const hash = nodeHashName(pub.nameAlg);
  const size = createHash(hash).digest().length;
  if (pub.type === ALG.RSA) {
    const seed = seedIn ?? Buffer.alloc(size, 0x5a);
    const secret = publicEncrypt(
      { key: rsaPublicKeyOf(pub), padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash, oaepLabel: Buffer.from(`${use}\0`) },
      seed,
    );
    return { seed, secret };
  }
  assert.ok(pub.parameters.type === ALG.ECC && 'ecc' in pub.unique);
  const ecdh = createECDH(NODE_CURVE[pub.parameters.curveID]!);
  ecdh.generateKeys();
  const q = Buffer.concat([Buffer.from([4]), pub.unique.ecc.x, pub.unique.ecc.y]);
  const z = ecdh.computeSecret(q);
  const e = ecdh.getPublicKey();
  const n = (e.length - 1) / 2;
  const ex = e.subarray(1, 1 + n);
  const ey = e.subarray(1 + n);
  return { seed: kdfe(pub.nameAlg, z, use, ex, pub.unique.ecc.x, size * 8), secret: eccPointBytes(ex, ey) };
}

export function u16(n: number): Buffer {
  return u16b(n);
}

// ---------------------------------------------------------------------------------------------
// Keys generated outside the TPM (node:crypto), for LoadExternal with their private parts

export interface ExternalKey {
  pub: Public;
  sensitive: Sensitive;
  privateKey: KeyObject;
}

/** An RSA key made by node:crypto as a TPM public/sensitive pair (the sensitive part: prime p). */
export function externalRsa(attributes: number, opts: { bits?: number; scheme?: Scheme; symmetric?: SymDef; nameAlg?: number } = {}): ExternalKey {
  const bits = opts.bits ?? 1024;
  const privateKey = generatePrivateKey('rsa', { modulusLength: bits, publicExponent: 65537 });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    pub: {
      type: ALG.RSA,
      nameAlg: opts.nameAlg ?? ALG.SHA256,
      objectAttributes: attributes,
      authPolicy: EMPTY,
      parameters: { type: ALG.RSA, symmetric: opts.symmetric ?? NULL_SYM, scheme: opts.scheme ?? NULL_SCHEME, keyBits: bits, exponent: 0 },
      unique: { rsa: Buffer.from(jwk.n!, 'base64url') },
    },
    sensitive: { sensitiveType: ALG.RSA, authValue: EMPTY, seedValue: EMPTY, sensitive: Buffer.from(jwk.p!, 'base64url') },
    privateKey,
  };
}

/** A P-256 key made by node:crypto as a TPM public/sensitive pair. */
export function externalEcc(attributes: number, opts: { scheme?: Scheme; symmetric?: SymDef; nameAlg?: number } = {}): ExternalKey {
  const privateKey = generatePrivateKey('ec', { namedCurve: 'P-256' });
  const jwk = privateKey.export({ format: 'jwk' });
  return {
    pub: {
      type: ALG.ECC,
      nameAlg: opts.nameAlg ?? ALG.SHA256,
      objectAttributes: attributes,
      authPolicy: EMPTY,
      parameters: { type: ALG.ECC, symmetric: opts.symmetric ?? NULL_SYM, scheme: opts.scheme ?? NULL_SCHEME, curveID: ECC_CURVE.NIST_P256, kdf: NULL_SCHEME },
      unique: { ecc: { x: Buffer.from(jwk.x!, 'base64url'), y: Buffer.from(jwk.y!, 'base64url') } },
    },
    sensitive: { sensitiveType: ALG.ECC, authValue: EMPTY, seedValue: EMPTY, sensitive: Buffer.from(jwk.d!, 'base64url') },
    privateKey,
  };
}

/** Recovers a secret shared with an external key, as its holder would (OAEP or ECDH + KDFe). */
export function recoverSecretOutside(key: ExternalKey, use: string, secret: Buffer): Buffer {
  const pub = key.pub;
  const hash = nodeHashName(pub.nameAlg);
  if (pub.type === ALG.RSA) {
    return privateDecrypt({ key: key.privateKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: hash, oaepLabel: Buffer.from(`${use}\0`) }, secret);
  }
  assert.ok('ecc' in pub.unique);
  const n = secret.readUInt16BE(0);
  const ex = secret.subarray(2, 2 + n);
  const ey = secret.subarray(4 + n, 4 + n + secret.readUInt16BE(2 + n));
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(key.sensitive.sensitive);
  const z = ecdh.computeSecret(Buffer.concat([Buffer.from([4]), ex, ey]));
  return kdfe(pub.nameAlg, z, use, ex, pub.unique.ecc.x, createHash(hash).digest().length * 8);
}

/** AES-CFB with a zero IV, as the protection wrappers use it. */
export function aesCfb(key: Buffer, data: Buffer, decrypt: boolean): Buffer {
  const name = `aes-${key.length * 8}-cfb`;
  const c = decrypt ? createDecipheriv(name, key, Buffer.alloc(16)) : createCipheriv(name, key, Buffer.alloc(16));
  return Buffer.concat([c.update(data), c.final()]);
}

/** An outer wrapper made as Part 1, 23.3 says: TPM2B(HMAC) || AES-CFB(data), keys from KDFa(seed). */
export function outerWrap(nameAlg: number, keyBits: number, seed: Buffer, name: Buffer, data: Buffer): Buffer {
  const hLen = createHash(nodeHashName(nameAlg)).digest().length;
  const enc = aesCfb(kdfa(nameAlg, seed, 'STORAGE', name, EMPTY, keyBits), data, false);
  const mac = createHmac(nodeHashName(nameAlg), kdfa(nameAlg, seed, 'INTEGRITY', EMPTY, EMPTY, hLen * 8)).update(enc).update(name).digest();
  return Buffer.concat([u16b(mac.length), mac, enc]);
}

/** Checks and removes an outer wrapper made by the TPM. */
export function outerUnwrap(nameAlg: number, keyBits: number, seed: Buffer, name: Buffer, blob: Buffer): Buffer {
  const hLen = createHash(nodeHashName(nameAlg)).digest().length;
  const n = blob.readUInt16BE(0);
  assert.equal(n, hLen, 'integrity is a digest of the nameAlg');
  const mac = blob.subarray(2, 2 + n);
  const enc = blob.subarray(2 + n);
  const expected = createHmac(nodeHashName(nameAlg), kdfa(nameAlg, seed, 'INTEGRITY', EMPTY, EMPTY, hLen * 8)).update(enc).update(name).digest();
  assert.deepEqual(mac, expected, 'outer integrity HMAC');
  return aesCfb(kdfa(nameAlg, seed, 'STORAGE', name, EMPTY, keyBits), enc, true);
}
