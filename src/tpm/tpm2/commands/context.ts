import { checked, u32 } from '../../wire/codec.ts';
import { Reader } from '../../wire/buffer.ts';
import { CC, HT, RH } from '../constants.ts';
import { command } from '../command.ts';
import { RC, TpmError } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { context } from '../types/context.ts';
import { OBJECT_ATTR } from '../types/public.ts';
import { openContext, sealContext } from '../objects/context-blob.ts';
import { deserializeObject, serializeObject } from '../objects/persistent.ts';
import type { TpmObject } from '../objects/model.ts';
import { loadSessionContext, saveSessionContext } from '../auth/session-context.ts';

/** TPMI_DH_CONTEXT: a transient object or a loaded session. */
const contextHandle = checked(u32, (h) => {
  const ht = h >>> 24;
  return ht === HT.TRANSIENT || ht === HT.HMAC_SESSION || ht === HT.POLICY_SESSION;
}, RC.VALUE);

/** TPMI_DH_SAVED: what a saved context says it holds. */
const SAVED = { object: 0x80000000, sequence: 0x80000001, stClear: 0x80000002 } as const;

const KIND_OBJECT = 1;
const KIND_SEQUENCE = 2;

/** stClear objects may not come back after TPM Restart or Reset; others only need the same proof. */
function epochFor(tpm: Tpm2Engine, savedHandle: number): number {
  return savedHandle === SAVED.stClear ? (tpm.nv.resetCount * 65536 + tpm.nv.restartCount) >>> 0 : 0;
}

function saveObject(tpm: Tpm2Engine, h: number) {
  const o = tpm.objects.get(h)!;
  const sequence = tpm.nextContextSequence();
  if (o.kind !== 'object') {
    // A hash state cannot leave node:crypto, so the blob names a parked sequence instead.
    const id = tpm.random.bytes(16);
    tpm.parkedSequences.set(id.toString('hex'), o);
    const plain = Buffer.concat([Buffer.from([KIND_SEQUENCE]), id]);
    return { sequence, savedHandle: SAVED.sequence, hierarchy: RH.NULL, contextBlob: sealContext(tpm.proofOf(RH.NULL), sequence, SAVED.sequence, RH.NULL, 0, plain) };
  }
  const obj = o as TpmObject;
  const savedHandle = obj.public.objectAttributes & OBJECT_ATTR.stClear ? SAVED.stClear : SAVED.object;
  const plain = Buffer.concat([Buffer.from([KIND_OBJECT, obj.external ? 1 : 0]), serializeObject(obj)]);
  return {
    sequence,
    savedHandle,
    hierarchy: obj.hierarchy,
    contextBlob: sealContext(tpm.proofOf(obj.hierarchy), sequence, savedHandle, obj.hierarchy, epochFor(tpm, savedHandle), plain),
  };
}

function loadObject(tpm: Tpm2Engine, c: { sequence: bigint; savedHandle: number; hierarchy: number; contextBlob: Buffer }): number {
  if (c.hierarchy !== RH.NULL && !tpm.hierarchyEnabled(c.hierarchy)) throw TpmError.parameter(RC.HIERARCHY, 1);
  let plain: Buffer;
  try {
    plain = openContext(tpm.proofOf(c.hierarchy), c.sequence, c.savedHandle, c.hierarchy, epochFor(tpm, c.savedHandle), c.contextBlob);
  } catch {
    throw TpmError.parameter(RC.INTEGRITY, 1);
  }
  const r = new Reader(plain);
  const kind = r.u8();
  if (kind === KIND_SEQUENCE && c.savedHandle === SAVED.sequence) {
    const id = r.bytes(16).toString('hex');
    const seq = tpm.parkedSequences.get(id);
    if (!seq) throw TpmError.parameter(RC.HANDLE, 1);
    const handle = tpm.objects.add(seq);
    tpm.parkedSequences.delete(id);
    return handle;
  }
  if (kind !== KIND_OBJECT) throw TpmError.parameter(RC.INTEGRITY, 1);
  const external = r.u8() === 1;
  const o = tpm.attachBackend(deserializeObject(plain.subarray(2)));
  return tpm.objects.add(external ? { ...o, external: true } : o);
}

export const contextCommands = [
  command({
    cc: CC.ContextSave,
    name: 'ContextSave',
    handles: [{ name: 'saveHandle', type: contextHandle, auth: 'none' }],
    params: {},
    response: { context },
    noSessions: true,
    handler: ({ tpm, handles }) => {
      const h = handles[0]!;
      return { context: h >>> 24 === HT.TRANSIENT ? saveObject(tpm, h) : saveSessionContext(tpm, h) };
    },
  }),
  command({
    cc: CC.ContextLoad,
    name: 'ContextLoad',
    handles: [],
    params: { context },
    responseHandle: true,
    response: {},
    noSessions: true,
    handler: ({ tpm }, { context: c }) => {
      const ht = c.savedHandle >>> 24;
      if (ht === HT.TRANSIENT) {
        if (c.savedHandle > SAVED.stClear) throw TpmError.parameter(RC.HANDLE, 1);
        return { handle: loadObject(tpm, c) };
      }
      if (ht === HT.HMAC_SESSION || ht === HT.POLICY_SESSION) return { handle: loadSessionContext(tpm, c) };
      throw TpmError.parameter(RC.HANDLE, 1);
    },
  }),
  command({
    cc: CC.FlushContext,
    name: 'FlushContext',
    handles: [],
    params: { flushHandle: contextHandle },
    response: {},
    noSessions: true,
    handler: ({ tpm }, { flushHandle }) => {
      if (flushHandle >>> 24 === HT.TRANSIENT) {
        if (!tpm.objects.get(flushHandle)) throw TpmError.parameter(RC.HANDLE, 1);
        tpm.objects.remove(flushHandle);
      } else if (!tpm.sessions.remove(flushHandle) && !tpm.savedSessions.delete(flushHandle)) {
        throw TpmError.parameter(RC.HANDLE, 1);
      }
      return {};
    },
  }),
];
