import { checked, u32 } from '../../wire/codec.ts';
import { digest, hmac } from '../../crypto/hash.ts';
import { SeededStream } from '../../crypto/drbg.ts';
import { kdfa } from '../../crypto/kdf.ts';
import { ALG, CC, HT, RH, ST } from '../constants.ts';
import { command } from '../command.ts';
import { RC, TpmError, atParameter } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { authBuf, dataBuf, digestBuf, hierarchyOrNull, sensitiveData } from '../types/basic.ts';
import { creationData2b, creationTicket, nameBuf, privateBuf, type CreationData, type Ticket } from '../types/creation.ts';
import { dhObject, rhProvision } from '../types/handles.ts';
import { pcrSelectionList, type PcrSelection } from '../types/pcr.ts';
import { OBJECT_ATTR as A, public2b, publicArea, sensitive2b, sensitiveCreate, template2b, type Public } from '../types/public.ts';
import { encode, decode } from '../../wire/codec.ts';
import { makeKeyMaterial } from '../objects/key-material.ts';
import { hasPrivate, hierarchyQn, isStorageParent, keysOf, makeHardwareObject, makeObject, type TpmObject } from '../objects/model.ts';
import { unwrapSensitive, wrapSensitive } from '../objects/protection.ts';
import { serializeObject } from '../objects/persistent.ts';
import { validateTemplate } from '../objects/template.ts';
import { MAX_PERSISTENT } from '../limits.ts';
import { backendOf } from '../hardware-keys.ts';

/** TPMI_RH_HIERARCHY+ as a handle (CreatePrimary's primaryHandle). */
const primaryHierarchy = checked(u32, (h) => h === RH.OWNER || h === RH.ENDORSEMENT || h === RH.PLATFORM || h === RH.NULL, RC.VALUE);
/** TPMI_DH_PERSISTENT. */
const persistentHandle = checked(u32, (h) => h >>> 24 === HT.PERSISTENT, RC.VALUE);
/** TPMI_DH_PARENT+: a hierarchy or a storage key (CreateLoaded). */
const parentOrHierarchy = checked(u32, (h) => h === RH.OWNER || h === RH.ENDORSEMENT || h === RH.PLATFORM || h === RH.NULL || h >>> 24 === HT.TRANSIENT || h >>> 24 === HT.PERSISTENT, RC.VALUE);

/** Primaries derived recently, by seed and template: the same derivation is never done twice in a row. */
const PRIMARY_CACHE_SIZE = 16;
type DerivedPrimary = { pub: Public } & ({ sensitiveKey: Buffer; seedValue: Buffer } | { outer: Buffer });
const primaryCache = new WeakMap<Tpm2Engine, Map<string, DerivedPrimary>>();

function withParam<T>(n: number, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof TpmError) throw new TpmError(atParameter(e.rc, n), e.message);
    throw e;
  }
}

/** The loaded object at a handle, which must be an object (not a sequence). */
export function objectAt(tpm: Tpm2Engine, h: number, handleNumber: number): TpmObject {
  const o = tpm.objectAt(h);
  if (!o || o.kind !== 'object') throw TpmError.handle(RC.HANDLE, handleNumber);
  return o as TpmObject;
}

function storageParent(tpm: Tpm2Engine, h: number): TpmObject {
  const parent = objectAt(tpm, h, 1);
  if (!isStorageParent(parent)) throw TpmError.handle(RC.TYPE, 1);
  return parent;
}

/** TPMS_CREATION_DATA, its digest and the ticket that lets CertifyCreation vouch for it later. */
function creation(tpm: Tpm2Engine, o: TpmObject, parentName: Buffer, parentQn: Buffer, parentNameAlg: number, outsideInfo: Buffer, pcrSel: PcrSelection[], locality: number) {
  const data: CreationData = {
    pcrSelect: pcrSel,
    pcrDigest: tpm.pcrs.digestOf(o.public.nameAlg, pcrSel).digest,
    locality: 1 << locality,
    parentNameAlg,
    parentName,
    parentQualifiedName: parentQn,
    outsideInfo,
  };
  const creationHash = digest(o.public.nameAlg, encode(creationData2b, data).subarray(2));
  const tag = Buffer.from([ST.CREATION >> 8, ST.CREATION & 0xff]);
  const ticket: Ticket =
    o.hierarchy === RH.NULL
      ? { tag: ST.CREATION, hierarchy: RH.NULL, digest: Buffer.alloc(0) }
      : { tag: ST.CREATION, hierarchy: o.hierarchy, digest: hmac(o.public.nameAlg, tpm.proofOf(o.hierarchy), tag, o.name, creationHash) };
  return { creationData: data, creationHash, creationTicket: ticket };
}

function checkHierarchyAllowed(tpm: Tpm2Engine, hierarchy: number): void {
  if (!tpm.hierarchyEnabled(hierarchy)) throw new TpmError(RC.HIERARCHY);
}

/**
 * The hierarchy's primary for `template`: derived from the hierarchy's seed, so the same template
 * gives the same key until the seed changes. A hardware-backed vTPM has the chip derive it
 * instead, from a secret the seed and template give (HardwareKeyBackend.createPrimary).
 */
function createPrimaryObject(tpm: Tpm2Engine, hierarchy: number, inSensitive: { userAuth: Buffer; data: Buffer }, template: Public): TpmObject {
  withParam(2, () => validateTemplate(template, { dataSize: inSensitive.data.length }));
  const templateBytes = encode(publicArea, template);
  const seed = tpm.seedOf(hierarchy);
  const key = digest(ALG.SHA256, seed, templateBytes, inSensitive.data).toString('hex');
  let cache = primaryCache.get(tpm);
  if (!cache) primaryCache.set(tpm, (cache = new Map()));
  let entry = cache.get(key);
  if (!entry) {
    const chip = tpm.hardwareKeys?.backsPrimary(template) ? tpm.hardwareKeys : undefined;
    if (chip) {
      const made = chip.createPrimary(template, kdfa(ALG.SHA256, seed, 'VTPMD CHIP PRIMARY', digest(ALG.SHA256, templateBytes, inSensitive.data), Buffer.alloc(0), 256));
      entry = { pub: made.public, outer: made.outer };
    } else {
      const stream = new SeededStream(seed, 'Primary Object Creation', digest(template.nameAlg, templateBytes));
      const made = makeKeyMaterial(template, Buffer.alloc(0), inSensitive.data, { derive: stream, rsa: (bits, e) => tpm.derivedRsaKey(stream, bits, e) });
      entry = { pub: made.pub, sensitiveKey: made.sensitive.sensitive, seedValue: made.sensitive.seedValue };
    }
    cache.set(key, entry);
    if (cache.size > PRIMARY_CACHE_SIZE) cache.delete(cache.keys().next().value!);
  }
  if ('outer' in entry) return tpm.attachBackend(makeHardwareObject(entry.pub, { outer: entry.outer, authValue: inSensitive.userAuth }, hierarchy, hierarchyQn(hierarchy)));
  const sensitive = { sensitiveType: template.type, authValue: inSensitive.userAuth, seedValue: entry.seedValue, sensitive: entry.sensitiveKey };
  return makeObject(entry.pub, sensitive, hierarchy, hierarchyQn(hierarchy));
}

function createOrdinary(tpm: Tpm2Engine, parent: TpmObject, inSensitive: { userAuth: Buffer; data: Buffer }, template: Public): TpmObject {
  withParam(2, () => validateTemplate(template, { parent, dataSize: inSensitive.data.length }));
  const made = makeKeyMaterial(template, inSensitive.userAuth, inSensitive.data, { random: (n) => tpm.random.bytes(n), rsa: (bits, e) => tpm.freshRsaKey(bits, e) });
  return makeObject(made.pub, made.sensitive, parent.hierarchy, parent.qualifiedName);
}

/** An object a hardware-backed vTPM makes in its chip: the guest gets the double-wrapped blob. */
function createInChip(tpm: Tpm2Engine, parent: TpmObject, inSensitive: { userAuth: Buffer; data: Buffer }, template: Public, creationPCR: readonly PcrSelection[]) {
  withParam(2, () => validateTemplate(template, { parent, dataSize: inSensitive.data.length }));
  const made = tpm.hardwareKeys!.create(template, inSensitive.userAuth, creationPCR, inSensitive.data);
  const o = makeHardwareObject(made.public, { outer: made.outPrivate, authValue: inSensitive.userAuth }, parent.hierarchy, parent.qualifiedName);
  return { o, outPrivate: made.outPrivate };
}

const createParams = { inSensitive: sensitiveCreate, inPublic: public2b, outsideInfo: dataBuf, creationPCR: pcrSelectionList };

export const objectCommands = [
  command({
    cc: CC.CreatePrimary,
    name: 'CreatePrimary',
    handles: [{ name: 'primaryHandle', type: primaryHierarchy, auth: 'user' }],
    params: createParams,
    responseHandle: true,
    response: { outPublic: public2b, creationData: creationData2b, creationHash: digestBuf, creationTicket, name: nameBuf },
    handler: ({ tpm, handles, locality }, { inSensitive, inPublic, outsideInfo, creationPCR }) => {
      const hierarchy = handles[0]!;
      const o = createPrimaryObject(tpm, hierarchy, inSensitive, inPublic);
      const handle = tpm.objects.add(o);
      const qn = hierarchyQn(hierarchy);
      return { handle, outPublic: o.public, ...creation(tpm, o, qn, qn, ALG.NULL, outsideInfo, creationPCR, locality), name: o.name };
    },
  }),
  command({
    cc: CC.Create,
    name: 'Create',
    handles: [{ name: 'parentHandle', type: dhObject, auth: 'user' }],
    params: createParams,
    response: { outPrivate: privateBuf, outPublic: public2b, creationData: creationData2b, creationHash: digestBuf, creationTicket },
    handler: ({ tpm, handles, locality }, { inSensitive, inPublic, outsideInfo, creationPCR }) => {
      const parent = storageParent(tpm, handles[0]!);
      if (tpm.hardwareKeys?.backs(inPublic, parent.public)) {
        const { o, outPrivate } = createInChip(tpm, parent, inSensitive, inPublic, creationPCR);
        return { outPrivate, outPublic: o.public, ...creation(tpm, o, parent.name, parent.qualifiedName, parent.public.nameAlg, outsideInfo, creationPCR, locality) };
      }
      const o = createOrdinary(tpm, parent, inSensitive, inPublic);
      const outPrivate = wrapSensitive(parent, o.name, o.sensitive!);
      return { outPrivate, outPublic: o.public, ...creation(tpm, o, parent.name, parent.qualifiedName, parent.public.nameAlg, outsideInfo, creationPCR, locality) };
    },
  }),
  command({
    cc: CC.CreateLoaded,
    name: 'CreateLoaded',
    handles: [{ name: 'parentHandle', type: parentOrHierarchy, auth: 'user' }],
    params: { inSensitive: sensitiveCreate, inPublic: template2b },
    responseHandle: true,
    response: { outPrivate: privateBuf, outPublic: public2b, name: nameBuf },
    handler: ({ tpm, handles }, { inSensitive, inPublic }) => {
      const template = withParam(2, () => decode(publicArea, inPublic));
      const h = handles[0]!;
      if (h >>> 24 === HT.PERMANENT) {
        const o = createPrimaryObject(tpm, h, inSensitive, template);
        return { handle: tpm.objects.add(o), outPrivate: Buffer.alloc(0), outPublic: o.public, name: o.name };
      }
      const parent = storageParent(tpm, h);
      if (tpm.hardwareKeys?.backs(template, parent.public)) {
        const { o, outPrivate } = createInChip(tpm, parent, inSensitive, template, []);
        return { handle: tpm.objects.add(tpm.attachBackend(o)), outPrivate, outPublic: o.public, name: o.name };
      }
      const o = createOrdinary(tpm, parent, inSensitive, template);
      const outPrivate = wrapSensitive(parent, o.name, o.sensitive!);
      return { handle: tpm.objects.add(o), outPrivate, outPublic: o.public, name: o.name };
    },
  }),
  command({
    cc: CC.Load,
    name: 'Load',
    handles: [{ name: 'parentHandle', type: dhObject, auth: 'user' }],
    params: { inPrivate: privateBuf, inPublic: public2b },
    responseHandle: true,
    response: { name: nameBuf },
    handler: ({ tpm, handles }, { inPrivate, inPublic }) => {
      const parent = storageParent(tpm, handles[0]!);
      withParam(2, () => validateTemplate(inPublic, { parent }));
      const hw = tpm.hardwareKeys && withParam(1, () => tpm.hardwareKeys!.open(inPrivate, inPublic));
      if (hw) {
        const o = tpm.attachBackend(makeHardwareObject(inPublic, { outer: inPrivate, authValue: hw.authValue }, parent.hierarchy, parent.qualifiedName));
        return { handle: tpm.objects.add(o), name: o.name };
      }
      const probe = makeObject(inPublic, undefined, parent.hierarchy, parent.qualifiedName);
      const sensitive = withParam(1, () => unwrapSensitive(parent, probe.name, inPrivate));
      if (sensitive.sensitiveType !== inPublic.type) throw TpmError.parameter(RC.TYPE, 1);
      const o = makeObject(inPublic, sensitive, parent.hierarchy, parent.qualifiedName);
      checkBinding(o);
      return { handle: tpm.objects.add(o), name: o.name };
    },
  }),
  command({
    cc: CC.LoadExternal,
    name: 'LoadExternal',
    handles: [],
    params: { inPrivate: sensitive2b, inPublic: public2b, hierarchy: hierarchyOrNull },
    responseHandle: true,
    response: { name: nameBuf },
    handler: ({ tpm }, { inPrivate, inPublic, hierarchy }) => {
      // An external key with its private part could be used to forge TPM-made data: NULL hierarchy only.
      if (inPrivate && hierarchy !== RH.NULL) throw TpmError.parameter(RC.HIERARCHY, 3);
      if (inPrivate && inPrivate.sensitiveType !== inPublic.type) throw TpmError.parameter(RC.TYPE, 1);
      const a = inPublic.objectAttributes;
      if (inPrivate && (a & (A.fixedTPM | A.fixedParent))) throw TpmError.parameter(RC.ATTRIBUTES, 2);
      checkHierarchyAllowed(tpm, hierarchy);
      const o = makeObject(inPublic, inPrivate ?? undefined, hierarchy, hierarchyQn(hierarchy), true);
      if (inPrivate) checkBinding(o);
      return { handle: tpm.objects.add(o), name: o.name };
    },
  }),
  command({
    cc: CC.ReadPublic,
    name: 'ReadPublic',
    handles: [{ name: 'objectHandle', type: dhObject, auth: 'none' }],
    params: {},
    response: { outPublic: public2b, name: nameBuf, qualifiedName: nameBuf },
    handler: ({ tpm, handles }) => {
      const o = tpm.objectAt(handles[0]!);
      if (!o || o.kind !== 'object') throw TpmError.handle(RC.SEQUENCE, 1);
      const obj = o as TpmObject;
      return { outPublic: obj.public, name: obj.name, qualifiedName: obj.qualifiedName };
    },
  }),
  command({
    cc: CC.Unseal,
    name: 'Unseal',
    handles: [{ name: 'itemHandle', type: dhObject, auth: 'user' }],
    params: {},
    response: { outData: sensitiveData },
    handler: ({ tpm, handles }) => {
      const o = objectAt(tpm, handles[0]!, 1);
      if (o.public.type !== ALG.KEYEDHASH) throw TpmError.handle(RC.TYPE, 1);
      if (o.public.objectAttributes & (A.sign | A.decrypt | A.restricted)) throw TpmError.handle(RC.ATTRIBUTES, 1);
      if (o.hardware) return { outData: backendOf(o.hardware).unseal(o.hardware.outer, o.public) };
      if (!o.sensitive) throw TpmError.handle(RC.TYPE, 1);
      return { outData: o.sensitive.sensitive };
    },
  }),
  command({
    cc: CC.ObjectChangeAuth,
    name: 'ObjectChangeAuth',
    handles: [
      { name: 'objectHandle', type: dhObject, auth: 'admin' },
      { name: 'parentHandle', type: dhObject, auth: 'none' },
    ],
    params: { newAuth: authBuf },
    response: { outPrivate: privateBuf },
    handler: ({ tpm, handles }, { newAuth }) => {
      const o = objectAt(tpm, handles[0]!, 1);
      const parent = storageParent(tpm, handles[1]!);
      if ((!o.sensitive && !o.hardware) || o.external) throw TpmError.handle(RC.TYPE, 1);
      if (!o.parentQn.equals(parent.qualifiedName)) throw TpmError.handle(RC.TYPE, 2);
      if (newAuth.length > digestSizeOf(o)) throw TpmError.parameter(RC.SIZE, 1);
      // A chip-resident object keeps its chip part: only the outer blob, which holds the vTPM-level auth, changes.
      if (o.hardware) return { outPrivate: backendOf(o.hardware).changeAuth(o.hardware.outer, o.public, newAuth) };
      return { outPrivate: wrapSensitive(parent, o.name, { ...o.sensitive!, authValue: newAuth }) };
    },
  }),
  command({
    cc: CC.EvictControl,
    name: 'EvictControl',
    handles: [
      { name: 'auth', type: rhProvision, auth: 'user' },
      { name: 'objectHandle', type: dhObject, auth: 'none' },
    ],
    params: { persistentHandle },
    response: {},
    nv: true,
    handler: ({ tpm, handles }, { persistentHandle: target }) => {
      const [auth, objectHandle] = handles as [number, number];
      const platformRange = target >= 0x81800000;
      if (auth === RH.OWNER && platformRange) throw TpmError.parameter(RC.RANGE, 1);
      if (auth === RH.PLATFORM && !platformRange) throw TpmError.parameter(RC.RANGE, 1);
      const o = objectAt(tpm, objectHandle, 2);
      if (objectHandle >>> 24 === HT.PERSISTENT) {
        if (objectHandle !== target) throw TpmError.parameter(RC.HANDLE, 1);
        if (auth === RH.OWNER && o.hierarchy === RH.PLATFORM) throw TpmError.handle(RC.HIERARCHY, 2);
        tpm.nv.persistent.delete(target);
        tpm.evictPersistentCache(target);
      } else {
        if (o.external || !hasPrivate(o)) throw TpmError.handle(RC.ATTRIBUTES, 2);
        if (o.public.objectAttributes & A.stClear) throw TpmError.handle(RC.ATTRIBUTES, 2);
        if (o.hierarchy === RH.NULL) throw TpmError.handle(RC.HIERARCHY, 2);
        if (auth === RH.OWNER && o.hierarchy === RH.PLATFORM) throw TpmError.handle(RC.HIERARCHY, 2);
        if (tpm.nv.persistent.has(target)) throw new TpmError(RC.NV_DEFINED);
        if (tpm.nv.persistent.size >= MAX_PERSISTENT) throw new TpmError(RC.NV_SPACE);
        tpm.nv.persistent.set(target, serializeObject(o));
      }
      tpm.markNvDirty();
      return {};
    },
  }),
];


function digestSizeOf(o: TpmObject): number {
  return digest(o.public.nameAlg, Buffer.alloc(0)).length;
}

/** The public and private parts must belong together (TPM_RC_BINDING otherwise). */
function checkBinding(o: TpmObject): void {
  const p = o.public;
  const s = o.sensitive!;
  try {
    if (p.type === ALG.KEYEDHASH || p.type === ALG.SYMCIPHER) {
      if ('digest' in p.unique && !digest(p.nameAlg, s.seedValue, s.sensitive).equals(p.unique.digest)) throw new Error('unique');
      return;
    }
    const k = keysOf(o);
    if (p.type === ALG.ECC && 'ecc' in p.unique) {
      const jwk = k.publicKey.export({ format: 'jwk' });
      if (!Buffer.from(jwk.x!, 'base64url').equals(p.unique.ecc.x) || !Buffer.from(jwk.y!, 'base64url').equals(p.unique.ecc.y)) throw new Error('point');
    }
  } catch {
    throw TpmError.parameter(RC.BINDING, 1);
  }
}
