/**
 * Property tests for every wire codec in src/tpm/tpm2/types: decode(encode(x)) deep-equals x for
 * generated valid x, and decoding arbitrary or mutated bytes either returns or throws TpmError.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { join } from 'node:path';
import fc from 'fast-check';
import { decode, encode, sizedStruct, type Codec } from '../../src/tpm/wire/codec.ts';
import { Reader } from '../../src/tpm/wire/buffer.ts';
import { TpmError } from '../../src/tpm/tpm2/rc.ts';
import { ALG, CAP, ECC_CURVE, RH } from '../../src/tpm/tpm2/constants.ts';
import * as basic from '../../src/tpm/tpm2/types/basic.ts';
import * as capability from '../../src/tpm/tpm2/types/capability.ts';
import * as handles from '../../src/tpm/tpm2/types/handles.ts';
import * as pcr from '../../src/tpm/tpm2/types/pcr.ts';
import * as pp from '../../src/tpm/tpm2/types/public-parms.ts';
import * as pub from '../../src/tpm/tpm2/types/public.ts';
import * as time from '../../src/tpm/tpm2/types/time.ts';
import * as nv from '../../src/tpm/tpm2/types/nv.ts';
import * as policy from '../../src/tpm/tpm2/types/policy.ts';
import * as creation from '../../src/tpm/tpm2/types/creation.ts';
import * as ctx from '../../src/tpm/tpm2/types/context.ts';
import * as secret from '../../src/tpm/tpm2/types/secret.ts';
import * as attestTypes from '../../src/tpm/tpm2/types/attest.ts';
import * as sig from '../../src/tpm/tpm2/types/signature.ts';
import { parseAuthArea } from '../../src/tpm/tpm2/auth/session-area.ts';

const TYPES_DIR = fileURLToPath(new URL('../../src/tpm/tpm2/types/', import.meta.url));

const HASHES = [
  { alg: ALG.SHA1, size: 20 },
  { alg: ALG.SHA256, size: 32 },
  { alg: ALG.SHA384, size: 48 },
  { alg: ALG.SHA512, size: 64 },
];
const KDFS = [ALG.MGF1, ALG.KDF1_SP800_56A, ALG.KDF2, ALG.KDF1_SP800_108];

/** fc.record with ordinary prototypes, so deepStrictEqual compares with decoded objects. */
const rec = ((model: Record<string, fc.Arbitrary<unknown>>) => fc.record(model, { noNullPrototype: true })) as unknown as typeof fc.record;

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const bytes = (min: number, max: number) => fc.uint8Array({ minLength: min, maxLength: max }).map((b) => Buffer.from(b));
const hashAlg = fc.constantFrom(...HASHES.map((h) => h.alg));
const taggedHash = fc.constantFrom(...HASHES).chain((h) => bytes(h.size, h.size).map((digest) => ({ hashAlg: h.alg, digest })));
const pcrSelection = rec({ hash: hashAlg, select: bytes(pcr.PCR_SELECT_MIN, pcr.PCR_SELECT_LIMIT) });

type Arm = 'none' | 'hash' | 'hashKdf';
function scheme(arms: [number, Arm][]): fc.Arbitrary<pp.Scheme> {
  return fc.constantFrom(...arms).chain(([s, arm]): fc.Arbitrary<pp.Scheme> => {
    if (arm === 'none') return fc.constant({ scheme: s, hashAlg: ALG.NULL });
    if (arm === 'hash') return hashAlg.map((h) => ({ scheme: s, hashAlg: h }));
    return fc.tuple(hashAlg, fc.constantFrom(...KDFS)).map(([h, kdf]) => ({ scheme: s, hashAlg: h, kdf }));
  });
}
const rsaScheme = scheme([
  [ALG.RSASSA, 'hash'],
  [ALG.RSAPSS, 'hash'],
  [ALG.OAEP, 'hash'],
  [ALG.RSAES, 'none'],
  [ALG.NULL, 'none'],
]);
const eccScheme = scheme([
  [ALG.ECDSA, 'hash'],
  [ALG.ECDH, 'hash'],
  [ALG.NULL, 'none'],
]);
const kdfScheme = scheme([...KDFS.map((k): [number, Arm] => [k, 'hash']), [ALG.NULL, 'none']]);
const keyedHashScheme = scheme([
  [ALG.HMAC, 'hash'],
  [ALG.XOR, 'hashKdf'],
  [ALG.NULL, 'none'],
]);

const aesDef = rec({
  algorithm: fc.constant(ALG.AES),
  keyBits: fc.constantFrom(...pp.AES_KEY_BITS),
  mode: fc.constantFrom(...pp.SYM_MODES, ALG.NULL),
});
const symOrNull = fc.oneof(fc.constant(pp.NULL_SYM), aesDef);

const publicParms = fc.oneof(
  rec({
    type: fc.constant(ALG.RSA),
    symmetric: symOrNull,
    scheme: rsaScheme,
    keyBits: fc.constantFrom(...pp.RSA_KEY_BITS),
    exponent: u32,
  }),
  rec({ type: fc.constant(ALG.ECC), symmetric: symOrNull, scheme: eccScheme, curveID: fc.constantFrom(...pp.ECC_CURVES), kdf: kdfScheme }),
  rec({ type: fc.constant(ALG.KEYEDHASH), scheme: keyedHashScheme }),
  rec({ type: fc.constant(ALG.SYMCIPHER), sym: aesDef }),
);

const capabilityData = fc.oneof(
  fc.array(rec({ alg: u16, attributes: u32 }), { maxLength: capability.MAX_CAP.algs }).map((algs) => ({ capability: CAP.ALGS, algs })),
  fc
    .tuple(fc.constantFrom(CAP.HANDLES, CAP.COMMANDS, CAP.PP_COMMANDS, CAP.AUDIT_COMMANDS), fc.array(u32, { maxLength: capability.MAX_CAP.handles }))
    .map(([c, items]) => ({ capability: c, items })),
  fc.array(pcrSelection, { maxLength: 4 }).map((pcrs) => ({ capability: CAP.PCRS, pcrs })),
  fc.array(rec({ property: u32, value: u32 }), { maxLength: capability.MAX_CAP.tpmProperties }).map((properties) => ({ capability: CAP.TPM_PROPERTIES, properties })),
  fc
    .array(rec({ tag: u32, select: bytes(0, 32) }), { maxLength: capability.MAX_CAP.pcrProperties })
    .map((pcrProperties) => ({ capability: CAP.PCR_PROPERTIES, pcrProperties })),
  fc.array(u16, { maxLength: capability.MAX_CAP.curves }).map((curves) => ({ capability: CAP.ECC_CURVES, curves })),
  fc.constantFrom(CAP.AUTH_POLICIES, CAP.ACT).map((c) => ({ capability: c, empty: true as const })),
);

/** TPMT_PUBLIC: parameters and unique matching the type; reserved attribute bits clear. */
const publicArea = publicParms.chain((parameters) =>
  rec({
    type: fc.constant(parameters.type),
    nameAlg: fc.oneof(hashAlg, fc.constant(ALG.NULL)),
    objectAttributes: u32.map((a) => (a & ~pub.OBJECT_ATTR_RESERVED) >>> 0),
    authPolicy: bytes(0, 64),
    parameters: fc.constant(parameters),
    unique:
      parameters.type === ALG.RSA
        ? rec({ rsa: bytes(0, pub.MAX_RSA_KEY_BYTES) })
        : parameters.type === ALG.ECC
          ? rec({ ecc: rec({ x: bytes(0, pub.MAX_ECC_KEY_BYTES), y: bytes(0, pub.MAX_ECC_KEY_BYTES) }) })
          : rec({ digest: bytes(0, 64) }),
  }),
);

const SENSITIVE_MAX: Record<number, number> = {
  [ALG.RSA]: pub.MAX_RSA_KEY_BYTES / 2,
  [ALG.ECC]: pub.MAX_ECC_KEY_BYTES,
  [ALG.SYMCIPHER]: pub.MAX_SYM_KEY_BYTES,
  [ALG.KEYEDHASH]: 128,
};
const sensitiveArea = fc.constantFrom(ALG.RSA, ALG.ECC, ALG.SYMCIPHER, ALG.KEYEDHASH).chain((t) =>
  rec({ sensitiveType: fc.constant(t), authValue: bytes(0, 64), seedValue: bytes(0, 64), sensitive: bytes(0, SENSITIVE_MAX[t]!) }),
);

const nvAttributes = u32.map((a) => (a & ~nv.NV_ATTR_RESERVED) >>> 0);
const nvPublic = rec({
  nvIndex: fc.integer({ min: 0x01000000, max: 0x01ffffff }),
  nameAlg: hashAlg,
  attributes: nvAttributes,
  authPolicy: bytes(0, 64),
  dataSize: fc.integer({ min: 0, max: nv.MAX_NV_INDEX_SIZE }),
});
const creationDataArb = rec({
  pcrSelect: fc.array(pcrSelection, { maxLength: basic.HASH_COUNT }),
  pcrDigest: bytes(0, 64),
  locality: fc.integer({ min: 0, max: 255 }),
  parentNameAlg: u16,
  parentName: bytes(0, 66),
  parentQualifiedName: bytes(0, 66),
  outsideInfo: bytes(0, 66),
});
const clockInfo = rec({ clock: u64, resetCount: u32, restartCount: u32, safe: fc.boolean() });

/** TPMT_SIG_SCHEME+ and TPMT_SIGNATURE of the implemented schemes (RSASSA, RSAPSS, ECDSA, HMAC, NULL). */
const sigSchemeArb = fc.oneof(
  fc.constant({ scheme: ALG.NULL, hashAlg: ALG.NULL }),
  fc.tuple(fc.constantFrom(ALG.RSASSA, ALG.RSAPSS, ALG.ECDSA, ALG.HMAC), hashAlg).map(([scheme, h]) => ({ scheme, hashAlg: h })),
);
const signatureArb = fc.oneof(
  fc.constant({ sigAlg: ALG.NULL }),
  rec({ sigAlg: fc.constantFrom(ALG.RSASSA, ALG.RSAPSS), hash: hashAlg, sig: bytes(0, pub.MAX_RSA_KEY_BYTES) }),
  rec({ sigAlg: fc.constant(ALG.ECDSA), hash: hashAlg, r: bytes(0, pub.MAX_ECC_KEY_BYTES), s: bytes(0, pub.MAX_ECC_KEY_BYTES) }),
  taggedHash.map((t) => ({ sigAlg: ALG.HMAC, hash: t.hashAlg, digest: Buffer.from(t.digest) })),
);
/** TPMS_ATTEST: the common fields and one TPMU_ATTEST arm matching the type. */
const attestArb = fc
  .tuple(
    rec({ qualifiedSigner: bytes(0, 66), extraData: bytes(0, 66), clockInfo, firmwareVersion: u64 }),
    fc.oneof(
      rec({ type: fc.constant(0x8017), attested: rec({ name: bytes(0, 66), qualifiedName: bytes(0, 66) }) }),
      rec({ type: fc.constant(0x801a), attested: rec({ objectName: bytes(0, 66), creationHash: bytes(0, 64) }) }),
      rec({ type: fc.constant(0x8018), attested: rec({ pcrSelect: fc.array(pcrSelection, { maxLength: basic.HASH_COUNT }), pcrDigest: bytes(0, 64) }) }),
      rec({ type: fc.constant(0x8015), attested: rec({ auditCounter: u64, digestAlg: u16, auditDigest: bytes(0, 64), commandDigest: bytes(0, 64) }) }),
      rec({ type: fc.constant(0x8016), attested: rec({ exclusiveSession: fc.boolean(), sessionDigest: bytes(0, 64) }) }),
      rec({ type: fc.constant(0x8019), attested: rec({ time: rec({ time: u64, clockInfo }), firmwareVersion: u64 }) }),
      rec({ type: fc.constant(0x8014), attested: rec({ indexName: bytes(0, 66), offset: u16, nvContents: bytes(0, nv.MAX_NV_BUFFER_SIZE) }) }),
      rec({ type: fc.constant(0x801c), attested: rec({ indexName: bytes(0, 66), nvDigest: bytes(0, 64) }) }),
    ),
  )
  .map(([header, body]) => ({ ...header, ...body }));

/** A generator of valid values for every codec the types modules export, keyed by export name. */
const GENERATORS: Record<string, { codec: Codec<any>; arb: fc.Arbitrary<unknown> }> = {
  'basic.algHash': { codec: basic.algHash, arb: hashAlg },
  'basic.algHashOrNull': { codec: basic.algHashOrNull, arb: fc.oneof(hashAlg, fc.constant(ALG.NULL)) },
  'basic.digestBuf': { codec: basic.digestBuf, arb: bytes(0, 64) },
  'basic.authBuf': { codec: basic.authBuf, arb: bytes(0, 64) },
  'basic.nonceBuf': { codec: basic.nonceBuf, arb: bytes(0, 64) },
  'basic.dataBuf': { codec: basic.dataBuf, arb: bytes(0, 66) },
  'basic.maxBuffer': { codec: basic.maxBuffer, arb: bytes(0, basic.MAX_BUFFER) },
  'basic.eventBuf': { codec: basic.eventBuf, arb: bytes(0, basic.MAX_BUFFER) },
  'basic.sensitiveData': { codec: basic.sensitiveData, arb: bytes(0, basic.MAX_SYM_DATA) },
  'basic.taggedHash': { codec: basic.taggedHash, arb: taggedHash },
  'basic.digestValues': { codec: basic.digestValues, arb: fc.array(taggedHash, { maxLength: basic.HASH_COUNT }) },
  'basic.digestList': { codec: basic.digestList, arb: fc.array(bytes(0, 64), { maxLength: 8 }) },
  'basic.algList': { codec: basic.algList, arb: fc.array(u16, { maxLength: 64 }) },
  'basic.hierarchyOrNull': { codec: basic.hierarchyOrNull, arb: fc.constantFrom(RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.NULL) },
  'basic.hashCheckTicket': {
    codec: basic.hashCheckTicket,
    arb: rec({ tag: fc.constant(0x8024), hierarchy: fc.constantFrom(RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.NULL), digest: bytes(0, 64) }),
  },
  'capability.capabilityData': { codec: capability.capabilityData, arb: capabilityData },
  'handles.dhPcr': { codec: handles.dhPcr, arb: fc.integer({ min: 0, max: 0xffffff }) },
  'handles.dhPcrOrNull': { codec: handles.dhPcrOrNull, arb: fc.oneof(fc.integer({ min: 0, max: 0xffffff }), fc.constant(RH.NULL)) },
  'handles.dhObject': {
    codec: handles.dhObject,
    arb: fc.tuple(fc.constantFrom(0x80, 0x81), fc.integer({ min: 0, max: 0xffffff })).map(([t, x]) => ((t << 24) | x) >>> 0),
  },
  'handles.rhPlatform': { codec: handles.rhPlatform, arb: fc.constant(RH.PLATFORM) },
  'handles.rhProvision': { codec: handles.rhProvision, arb: fc.constantFrom(RH.OWNER, RH.PLATFORM) },
  'handles.rhHierarchy': { codec: handles.rhHierarchy, arb: fc.constantFrom(RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM) },
  'handles.rhHierarchyAuth': { codec: handles.rhHierarchyAuth, arb: fc.constantFrom(RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.LOCKOUT) },
  'handles.rhHierarchyPolicy': { codec: handles.rhHierarchyPolicy, arb: fc.constantFrom(RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.LOCKOUT) },
  'handles.rhEnables': { codec: handles.rhEnables, arb: fc.constantFrom(RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.PLATFORM_NV) },
  'handles.rhClear': { codec: handles.rhClear, arb: fc.constantFrom(RH.LOCKOUT, RH.PLATFORM) },
  'handles.rhLockout': { codec: handles.rhLockout, arb: fc.constant(RH.LOCKOUT) },
  'pcr.pcrSelection': { codec: pcr.pcrSelection, arb: pcrSelection },
  'pcr.pcrSelectionList': { codec: pcr.pcrSelectionList, arb: fc.array(pcrSelection, { maxLength: basic.HASH_COUNT }) },
  'public-parms.symDefObjectStrict': { codec: pp.symDefObjectStrict, arb: aesDef },
  'public-parms.symDefObjectOrNull': { codec: pp.symDefObjectOrNull, arb: symOrNull },
  'public-parms.symDefOrNull': {
    codec: pp.symDefOrNull,
    arb: fc.oneof(symOrNull, hashAlg.map((h) => ({ algorithm: ALG.XOR, keyBits: h, mode: ALG.NULL }))),
  },
  'public-parms.rsaScheme': { codec: pp.rsaScheme, arb: rsaScheme },
  'public-parms.eccScheme': { codec: pp.eccScheme, arb: eccScheme },
  'public-parms.kdfScheme': { codec: pp.kdfScheme, arb: kdfScheme },
  'public-parms.keyedHashScheme': { codec: pp.keyedHashScheme, arb: keyedHashScheme },
  'public-parms.rsaKeyBits': { codec: pp.rsaKeyBits, arb: fc.constantFrom(...pp.RSA_KEY_BITS) },
  'public-parms.eccCurve': { codec: pp.eccCurve, arb: fc.constantFrom(ECC_CURVE.NIST_P256, ECC_CURVE.NIST_P384) },
  'public-parms.publicParms': { codec: pp.publicParms, arb: publicParms },
  'time.clockInfo': { codec: time.clockInfo, arb: clockInfo },
  'time.timeInfo': { codec: time.timeInfo, arb: rec({ time: u64, clockInfo }) },
  'public.rsaKeyBuf': { codec: pub.rsaKeyBuf, arb: bytes(0, pub.MAX_RSA_KEY_BYTES) },
  'public.eccParameter': { codec: pub.eccParameter, arb: bytes(0, pub.MAX_ECC_KEY_BYTES) },
  'public.symKeyBuf': { codec: pub.symKeyBuf, arb: bytes(0, pub.MAX_SYM_KEY_BYTES) },
  'public.rsaPrivateBuf': { codec: pub.rsaPrivateBuf, arb: bytes(0, pub.MAX_RSA_KEY_BYTES / 2) },
  'public.eccPoint': { codec: pub.eccPoint, arb: rec({ x: bytes(0, pub.MAX_ECC_KEY_BYTES), y: bytes(0, pub.MAX_ECC_KEY_BYTES) }) },
  'public.publicArea': { codec: pub.publicArea, arb: publicArea },
  'public.public2b': { codec: pub.public2b, arb: publicArea },
  'public.template2b': { codec: pub.template2b, arb: bytes(0, 1024) },
  'public.sensitiveCreate': { codec: pub.sensitiveCreate, arb: rec({ userAuth: bytes(0, 64), data: bytes(0, basic.MAX_SYM_DATA) }) },
  'public.sensitiveArea': { codec: pub.sensitiveArea, arb: sensitiveArea },
  'public.sensitive2b': { codec: pub.sensitive2b, arb: fc.oneof(sensitiveArea, fc.constant(null)) },
  'nv.nvIndexHandle': { codec: nv.nvIndexHandle, arb: fc.integer({ min: 0x01000000, max: 0x01ffffff }) },
  'nv.nvPublic': { codec: nv.nvPublic, arb: nvPublic },
  'nv.nvPublic2b': { codec: nv.nvPublic2b, arb: nvPublic },
  'nv.nvAttributes': { codec: nv.nvAttributes, arb: nvAttributes },
  'nv.rhNvAuth': {
    codec: nv.rhNvAuth,
    arb: fc.oneof(fc.constantFrom(RH.OWNER, RH.PLATFORM), fc.integer({ min: 0x01000000, max: 0x01ffffff })),
  },
  'nv.maxNvBuffer': { codec: nv.maxNvBuffer, arb: bytes(0, nv.MAX_NV_BUFFER_SIZE) },
  'creation.nameBuf': { codec: creation.nameBuf, arb: bytes(0, 66) },
  'creation.privateBuf': { codec: creation.privateBuf, arb: bytes(0, 1024) },
  'creation.creationData': { codec: creation.creationData, arb: creationDataArb },
  'creation.creationData2b': { codec: creation.creationData2b, arb: creationDataArb },
  'creation.creationTicket': {
    codec: creation.creationTicket,
    arb: rec({ tag: fc.constant(0x8021), hierarchy: fc.constantFrom(RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.NULL), digest: bytes(0, 64) }),
  },
  'context.contextData': { codec: ctx.contextData, arb: bytes(0, 5120) },
  'context.context': {
    codec: ctx.context,
    arb: rec({ sequence: u64, savedHandle: u32, hierarchy: fc.constantFrom(RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.NULL), contextBlob: bytes(0, 512) }),
  },
  'policy.shPolicy': { codec: policy.shPolicy, arb: fc.integer({ min: 0x03000000, max: 0x03ffffff }) },
  'policy.dhEntity': {
    codec: policy.dhEntity,
    arb: fc.oneof(
      fc.constantFrom(RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.LOCKOUT),
      fc.tuple(fc.constantFrom(0x00, 0x01, 0x80, 0x81), fc.integer({ min: 0, max: 0xffffff })).map(([t, x]) => ((t << 24) | x) >>> 0),
    ),
  },
  'policy.i32': { codec: policy.i32, arb: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }) },
  'policy.timeoutBuf': { codec: policy.timeoutBuf, arb: bytes(0, 8) },
  'policy.localityAttr': { codec: policy.localityAttr, arb: fc.integer({ min: 0, max: 255 }) },
  'policy.eo': { codec: policy.eo, arb: fc.integer({ min: 0, max: 11 }) },
  'policy.orDigestList': { codec: policy.orDigestList, arb: fc.array(bytes(0, 64), { minLength: 2, maxLength: 8 }) },
  'policy.tkAuth': {
    codec: policy.tkAuth,
    arb: rec({ tag: fc.constantFrom(0x8023, 0x8025), hierarchy: fc.constantFrom(RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.NULL), digest: bytes(0, 64) }),
  },
  'policy.tkVerified': {
    codec: policy.tkVerified,
    arb: rec({ tag: fc.constant(0x8022), hierarchy: fc.constantFrom(RH.OWNER, RH.ENDORSEMENT, RH.PLATFORM, RH.NULL), digest: bytes(0, 64) }),
  },
  'secret.ivBuf': { codec: secret.ivBuf, arb: bytes(0, secret.MAX_SYM_BLOCK_SIZE) },
  'secret.idObject': { codec: secret.idObject, arb: bytes(0, secret.ID_OBJECT_SIZE) },
  'secret.encryptedSecret': { codec: secret.encryptedSecret, arb: bytes(0, secret.ENCRYPTED_SECRET_SIZE) },
  'secret.eccPoint2b': { codec: secret.eccPoint2b, arb: rec({ x: bytes(0, pub.MAX_ECC_KEY_BYTES), y: bytes(0, pub.MAX_ECC_KEY_BYTES) }) },
  'secret.cipherModeOrNull': { codec: secret.cipherModeOrNull, arb: fc.constantFrom(...pp.SYM_MODES, ALG.NULL) },
  'secret.rsaDecryptScheme': {
    codec: secret.rsaDecryptScheme,
    arb: scheme([
      [ALG.RSAES, 'none'],
      [ALG.OAEP, 'hash'],
      [ALG.NULL, 'none'],
    ]),
  },
  'secret.eccCurveDetail': {
    codec: secret.eccCurveDetail,
    arb: rec({
      curveID: u16,
      keySize: u16,
      kdf: kdfScheme,
      sign: eccScheme,
      p: bytes(0, pub.MAX_ECC_KEY_BYTES),
      a: bytes(0, pub.MAX_ECC_KEY_BYTES),
      b: bytes(0, pub.MAX_ECC_KEY_BYTES),
      gX: bytes(0, pub.MAX_ECC_KEY_BYTES),
      gY: bytes(0, pub.MAX_ECC_KEY_BYTES),
      n: bytes(0, pub.MAX_ECC_KEY_BYTES),
      h: bytes(0, pub.MAX_ECC_KEY_BYTES),
    }),
  },
  'signature.sigScheme': { codec: sig.sigScheme, arb: sigSchemeArb },
  'signature.signature': { codec: sig.signature, arb: signatureArb },
  'attest.attest': { codec: attestTypes.attest, arb: attestArb },
  'attest.attest2b': { codec: attestTypes.attest2b, arb: bytes(0, attestTypes.MAX_ATTEST_SIZE) },
  // Codec factories, instantiated.
  'basic.u32List(254)': { codec: basic.u32List(254), arb: fc.array(u32, { maxLength: 254 }) },
  'codec.sizedStruct(clockInfo)': { codec: sizedStruct(time.clockInfo), arb: clockInfo },
};

function isCodec(v: unknown): v is Codec<unknown> {
  return typeof v === 'object' && v !== null && typeof (v as Codec<unknown>).encode === 'function' && typeof (v as Codec<unknown>).decode === 'function';
}

/** Every codec exported by a module in src/tpm/tpm2/types, found at run time. */
async function exportedCodecs(): Promise<Map<string, Codec<unknown>>> {
  const out = new Map<string, Codec<unknown>>();
  for (const file of readdirSync(TYPES_DIR).filter((f) => f.endsWith('.ts')).sort()) {
    const mod = (await import(pathToFileURL(join(TYPES_DIR, file)).href)) as Record<string, unknown>;
    for (const [name, v] of Object.entries(mod)) if (isCodec(v)) out.set(`${file.replace(/\.ts$/, '')}.${name}`, v);
  }
  return out;
}

/** Decoding must return or throw TpmError; anything else fails the property. */
function decodesOrTpmError(c: Codec<unknown>, b: Uint8Array): boolean {
  try {
    decode(c, b);
    return true;
  } catch (e) {
    if (e instanceof TpmError) return true;
    throw e;
  }
}

/** Mutations of valid encodings: flip a bit, cut, extend, or overwrite a 16-bit field. */
const mutation = fc.oneof(
  rec({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  rec({ kind: fc.constant('cut' as const), at: fc.nat() }),
  rec({ kind: fc.constant('append' as const), extra: bytes(1, 8) }),
  rec({ kind: fc.constant('u16' as const), at: fc.nat(), value: u16 }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer M> ? M : never;

function mutate(b: Buffer, m: Mutation): Buffer {
  const out = Buffer.from(b);
  if (out.length === 0 && m.kind !== 'append') return Buffer.from([0xff]);
  switch (m.kind) {
    case 'flip':
      out[m.at % out.length]! ^= 1 << m.bit;
      return out;
    case 'cut':
      return out.subarray(0, m.at % out.length);
    case 'append':
      return Buffer.concat([out, m.extra]);
    case 'u16': {
      if (out.length < 2) return out;
      out.writeUInt16BE(m.value, m.at % (out.length - 1));
      return out;
    }
  }
}

describe('codec properties', () => {
  test('every codec exported from src/tpm/tpm2/types has a round-trip generator here', async () => {
    const found = [...(await exportedCodecs()).keys()];
    const missing = found.filter((k) => !(k in GENERATORS));
    assert.deepEqual(missing, [], 'add generators for these codecs');
  });

  for (const [name, { codec, arb }] of Object.entries(GENERATORS)) {
    test(`${name}: decode(encode(x)) equals x for generated valid x`, () => {
      fc.assert(
        fc.property(arb, (x) => {
          const bytesOut = encode(codec, x);
          assert.deepStrictEqual(decode(codec, bytesOut), x);
          // Decoding from a larger buffer consumes exactly the encoding.
          const r = new Reader(Buffer.concat([bytesOut, Buffer.from([0xa5, 0x5a])]));
          assert.deepStrictEqual(codec.decode(r), x);
          assert.equal(r.remaining, 2);
        }),
        { numRuns: 200 },
      );
    });

    test(`${name}: decoding mutated encodings returns or throws TpmError`, () => {
      fc.assert(
        fc.property(arb, mutation, (x, m) => decodesOrTpmError(codec, mutate(Buffer.from(encode(codec, x)), m))),
        { numRuns: 300 },
      );
    });
  }

  test('every exported codec decodes arbitrary bytes or throws TpmError, never another exception', async () => {
    const codecs = await exportedCodecs();
    assert.ok(codecs.size >= 30);
    for (const [name, c] of codecs) {
      fc.assert(
        fc.property(bytes(0, 96), (b) => decodesOrTpmError(c, b)),
        { numRuns: 400, examples: [[Buffer.alloc(0)], [Buffer.alloc(96, 0xff)]] },
      );
      assert.ok(name);
    }
  });

  test('parseAuthArea decodes arbitrary bytes or throws TpmError, never another exception', () => {
    fc.assert(
      fc.property(bytes(0, 200), (b) => {
        try {
          parseAuthArea(new Reader(b));
          return true;
        } catch (e) {
          if (e instanceof TpmError) return true;
          throw e;
        }
      }),
      { numRuns: 3000 },
    );
  });
});
