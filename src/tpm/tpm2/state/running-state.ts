/**
 * What a TPM holds only while it has power — PCR values, the null hierarchy's seed and proof, the
 * platform authorization, hierarchy enables, the audit digest — in a compact versioned binary
 * record followed by the NV blob. A vTPM whose host process restarts while its guest keeps
 * running must come back with exactly this, or the guest would see a TPM Reset it never caused.
 * It is written after every state-changing command, so it is binary: a PCR_Extend must not pay
 * for printing four banks of PCRs as text.
 *
 * Loaded objects, sessions and sequences are not part of it: a guest (or its resource manager)
 * that needs them across a host restart holds their contexts (ContextSave), as it must across
 * any TPM Reset.
 */
import { Reader, Writer } from '../../wire/buffer.ts';
import type { AuthPolicy, HierarchyEnables } from './nv-state.ts';

const MAGIC = 0x56525331; // "VRS1"
export const RUNNING_VERSION = 1;

export interface RunningState {
  started: boolean;
  orderlyStart: boolean;
  pcrUpdateCounter: number;
  enables: HierarchyEnables;
  platformAuth: Buffer;
  platformPolicy: AuthPolicy;
  nullSeed: Buffer;
  nullProof: Buffer;
  auditDigest: { digest: string; resetCount: number };
  contextSequence: bigint;
}

export class RunningStateError extends Error {
  constructor(problem: string) {
    super(`the vTPM's running state is unusable: ${problem}`);
    this.name = 'RunningStateError';
  }
}

const FLAG = { started: 1, orderlyStart: 2, ph: 4, sh: 8, eh: 16, phNV: 32 } as const;

/**
 * The record: `head` (encodeRunningHead), the NV blob, then the PCR values (`pcrBytes` of them,
 * written by `writePcrs`). Sized up front and returned without a copy: it is made after state
 * changes.
 */
export function encodeRunningState(head: Buffer, nv: Buffer, writePcrs: (w: Writer) => void, pcrBytes: number): Buffer {
  const w = new Writer(head.length + nv.length + pcrBytes);
  w.bytes(head).bytes(nv);
  writePcrs(w);
  return w.finish();
}

/**
 * Everything before the NV blob: the header, the running state and the NV blob's length. Its own
 * buffer, so that a change since the last hand-over compares it alone (Tpm2Engine.handOver).
 */
export function encodeRunningHead(s: RunningState, nvLength: number): Buffer {
  const w = new Writer(HEADER_ROOM + s.platformAuth.length + s.platformPolicy.digest.length + s.nullSeed.length + s.nullProof.length);
  w.u32(MAGIC).u8(RUNNING_VERSION);
  const e = s.enables;
  w.u8((s.started ? FLAG.started : 0) | (s.orderlyStart ? FLAG.orderlyStart : 0) | (e.ph ? FLAG.ph : 0) | (e.sh ? FLAG.sh : 0) | (e.eh ? FLAG.eh : 0) | (e.phNV ? FLAG.phNV : 0));
  w.u32(s.pcrUpdateCounter);
  sized(w, s.platformAuth);
  w.u16(s.platformPolicy.alg);
  sized(w, s.platformPolicy.digest);
  sized(w, s.nullSeed);
  sized(w, s.nullProof);
  sized(w, Buffer.from(s.auditDigest.digest, 'hex'));
  w.u32(s.auditDigest.resetCount);
  w.u64(s.contextSequence);
  w.u32(nvLength);
  return w.finish();
}

/** The fixed fields and length prefixes, and room for an audit digest of any hash. */
const HEADER_ROOM = 160;

function sized(w: Writer, b: Buffer): void {
  w.u16(b.length).bytes(b);
}

/**
 * Decodes a record. The PCR banks to restore depend on the NV's allocation, so the caller gets the
 * NV first and then reads the PCR values with `readPcrs`, which checks that nothing follows them.
 */
export function decodeRunningState(record: Buffer): { state: RunningState; nv: Buffer; readPcrs: (read: (r: Reader) => void) => void } {
  return guarded(() => {
    const r = new Reader(record);
    if (r.u32() !== MAGIC) throw new RunningStateError('not a vTPM running-state record');
    const version = r.u8();
    if (version !== RUNNING_VERSION) throw new RunningStateError(`version ${version}; this vtpmd reads version ${RUNNING_VERSION}`);
    const f = r.u8();
    const pcrUpdateCounter = r.u32();
    const platformAuth = Buffer.from(r.bytes(r.u16()));
    const alg = r.u16();
    const digest = Buffer.from(r.bytes(r.u16()));
    const nullSeed = Buffer.from(r.bytes(r.u16()));
    const nullProof = Buffer.from(r.bytes(r.u16()));
    const audit = Buffer.from(r.bytes(r.u16())).toString('hex');
    const resetCount = r.u32();
    const contextSequence = r.u64();
    const nv = Buffer.from(r.bytes(r.u32()));
    const readPcrs = (read: (r: Reader) => void) =>
      guarded(() => {
        read(r);
        if (r.remaining !== 0) throw new RunningStateError('trailing bytes after the PCR values');
      });
    return {
      state: {
        started: (f & FLAG.started) !== 0,
        orderlyStart: (f & FLAG.orderlyStart) !== 0,
        pcrUpdateCounter,
        enables: { ph: (f & FLAG.ph) !== 0, sh: (f & FLAG.sh) !== 0, eh: (f & FLAG.eh) !== 0, phNV: (f & FLAG.phNV) !== 0 },
        platformAuth,
        platformPolicy: { alg, digest },
        nullSeed,
        nullProof,
        auditDigest: { digest: audit, resetCount },
        contextSequence,
      },
      nv,
      readPcrs,
    };
  });
}

function guarded<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof RunningStateError) throw e;
    throw new RunningStateError(e instanceof RangeError ? e.message : 'truncated or malformed');
  }
}
