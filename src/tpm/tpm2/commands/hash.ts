
import { HASH_ALGS, hmac, startHash, type HashState } from '../../crypto/hash.ts';
import { ALG, CC, RH, ST, TPM_GENERATED_VALUE } from '../constants.ts';
import { command } from '../command.ts';
import { RC, TpmError } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import type { TransientObject } from '../state/objects.ts';
import {
  algHash,
  algHashOrNull,
  authBuf,
  digestBuf,
  digestValues,
  hashCheckTicket,
  hierarchyOrNull,
  maxBuffer,
  type HashCheckTicket,
} from '../types/basic.ts';
import { dhObject, dhPcrOrNull } from '../types/handles.ts';
import { checkExtendLocality, extendPcr } from './pcr.ts';
import type { TpmObject } from '../objects/model.ts';
import { keyedHashHmac } from '../objects/sign.ts';

/** A hash, event or HMAC sequence (HMAC_Start, in signing.ts) in an object slot. */
export interface SequenceObject extends TransientObject {
  readonly kind: 'hashSequence' | 'eventSequence' | 'hmacSequence';
  readonly hashAlg: number;
  readonly states: { alg: number; state: HashState }[];
  /** The first bytes hashed, kept until four are known: TPM-generated-looking data gets no ticket. */
  prefix: Buffer;
  /** An HMAC sequence of a chip-resident key: its data so far, HMACed by the chip at completion. */
  readonly chip?: { readonly key: TpmObject; readonly chunks: Buffer[]; bytes: number };
}

/**
 * What an HMAC sequence of a chip-resident key may collect: the data waits in the vTPM until the
 * chip computes the HMAC over all of it, so it is bounded (TPM_RC_MEMORY beyond).
 */
export const MAX_CHIP_SEQUENCE_BYTES = 1 << 20;

function startsGenerated(data: Uint8Array): boolean {
  return data.length >= 4 && Buffer.from(data.buffer, data.byteOffset, 4).readUInt32BE(0) === TPM_GENERATED_VALUE;
}

/** TPMT_TK_HASHCHECK: proves the TPM computed `digest` over data that was not TPM-generated-like. */
function ticketFor(tpm: Tpm2Engine, hierarchy: number, hashAlg: number, d: Buffer, data: Uint8Array): HashCheckTicket {
  if (hierarchy === RH.NULL || startsGenerated(data)) return { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: Buffer.alloc(0) };
  const tag = Buffer.from([ST.HASHCHECK >> 8, ST.HASHCHECK & 0xff]);
  return { tag: ST.HASHCHECK, hierarchy, digest: hmac(hashAlg, tpm.proofOf(hierarchy), tag, d) };
}

function sequenceAt(tpm: Tpm2Engine, handle: number, handleNumber: number, kind: SequenceObject['kind']): SequenceObject {
  const obj = tpm.objects.get(handle) as SequenceObject | undefined;
  if (!obj || obj.kind !== kind) throw TpmError.handle(RC.MODE, handleNumber);
  return obj;
}

function updateSequence(seq: SequenceObject, data: Buffer): void {
  if (seq.chip && seq.chip.bytes + data.length > MAX_CHIP_SEQUENCE_BYTES) throw new TpmError(RC.MEMORY);
  if (seq.prefix.length < 4) seq.prefix = Buffer.concat([seq.prefix, data.subarray(0, 4 - seq.prefix.length)]);
  for (const s of seq.states) s.state.update(data);
  if (seq.chip && data.length > 0) {
    seq.chip.chunks.push(Buffer.from(data));
    seq.chip.bytes += data.length;
  }
}

export const hashCommands = [
  command({
    cc: CC.Hash,
    name: 'Hash',
    handles: [],
    params: { data: maxBuffer, hashAlg: algHash, hierarchy: hierarchyOrNull },
    response: { outHash: digestBuf, validation: hashCheckTicket },
    handler: ({ tpm }, { data, hashAlg, hierarchy }) => {
      const outHash = startHash(hashAlg);
      outHash.update(data);
      const d = outHash.digest();
      return { outHash: d, validation: ticketFor(tpm, hierarchy, hashAlg, d, data) };
    },
  }),
  command({
    cc: CC.HashSequenceStart,
    name: 'HashSequenceStart',
    handles: [],
    params: { auth: authBuf, hashAlg: algHashOrNull },
    responseHandle: true,
    response: {},
    handler: ({ tpm }, { auth, hashAlg }) => {
      const event = hashAlg === ALG.NULL;
      const algs = event ? HASH_ALGS.map((h) => h.alg) : [hashAlg];
      const seq: SequenceObject = {
        kind: event ? 'eventSequence' : 'hashSequence',
        auth,
        // A sequence's nameAlg is TPM_ALG_NULL, so its Name (in cpHash) is empty.
        name: Buffer.alloc(0),
        noDA: true,
        hashAlg,
        states: algs.map((alg) => ({ alg, state: startHash(alg) })),
        prefix: Buffer.alloc(0),
      };
      return { handle: tpm.objects.add(seq) };
    },
  }),
  command({
    cc: CC.SequenceUpdate,
    name: 'SequenceUpdate',
    handles: [{ name: 'sequenceHandle', type: dhObject, auth: 'user' }],
    params: { buffer: maxBuffer },
    response: {},
    handler: ({ tpm, handles }, { buffer }) => {
      const obj = tpm.objects.get(handles[0]!) as SequenceObject | undefined;
      if (!obj || (obj.kind !== 'hashSequence' && obj.kind !== 'eventSequence' && obj.kind !== 'hmacSequence')) throw TpmError.handle(RC.MODE, 1);
      updateSequence(obj, buffer);
      return {};
    },
  }),
  command({
    cc: CC.SequenceComplete,
    name: 'SequenceComplete',
    handles: [{ name: 'sequenceHandle', type: dhObject, auth: 'user' }],
    params: { buffer: maxBuffer, hierarchy: hierarchyOrNull },
    response: { result: digestBuf, validation: hashCheckTicket },
    flushed: true,
    handler: ({ tpm, handles }, { buffer, hierarchy }) => {
      const obj = tpm.objects.get(handles[0]!) as SequenceObject | undefined;
      const seq = obj?.kind === 'hmacSequence' ? obj : sequenceAt(tpm, handles[0]!, 1, 'hashSequence');
      if (seq.chip) {
        // Before anything changes: the chip's answer may first have to be fetched, and the
        // command then runs again.
        const result = keyedHashHmac(seq.chip.key, seq.hashAlg, Buffer.concat([...seq.chip.chunks, buffer]));
        tpm.objects.remove(handles[0]!);
        return { result, validation: ticketFor(tpm, RH.NULL, seq.hashAlg, result, seq.prefix) };
      }
      updateSequence(seq, buffer);
      tpm.objects.remove(handles[0]!);
      const result = seq.states[0]!.state.digest();
      // An HMAC sequence gets the NULL ticket.
      return { result, validation: ticketFor(tpm, seq.kind === 'hmacSequence' ? RH.NULL : hierarchy, seq.hashAlg, result, seq.prefix) };
    },
  }),
  command({
    cc: CC.EventSequenceComplete,
    name: 'EventSequenceComplete',
    nv: true,
    handles: [
      { name: 'pcrHandle', type: dhPcrOrNull, auth: 'user' },
      { name: 'sequenceHandle', type: dhObject, auth: 'user' },
    ],
    params: { buffer: maxBuffer },
    response: { results: digestValues },
    flushed: true,
    handler: ({ tpm, handles, locality }, { buffer }) => {
      const seq = sequenceAt(tpm, handles[1]!, 2, 'eventSequence');
      checkExtendLocality(handles[0]!, locality);
      updateSequence(seq, buffer);
      const results = seq.states.map((s) => ({ hashAlg: s.alg, digest: s.state.digest() }));
      tpm.objects.remove(handles[1]!);
      extendPcr(tpm, handles[0]!, locality, results);
      return { results };
    },
  }),
];

