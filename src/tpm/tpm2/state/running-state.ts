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
 * any TPM Reset. Which session contexts may come back is part of it, and where Time and Clock
 * stand (since version 2).
 */
import { Reader, Writer } from '../../wire/buffer.ts';
import type { AuthPolicy, HierarchyEnables } from './nv-state.ts';

const MAGIC = 0x56525331; // "VRS1"
export const RUNNING_VERSION = 2;
/** Records made before saved sessions and Time were kept: read as holding no saved session, and Time restarts. */
const VERSION_1 = 1;

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
  /** The number the last session handle was made from. */
  sessionNumber: number;
  /** Saved sessions: handle → the sequence of the blob that may bring it back. */
  savedSessions: ReadonlyMap<number, bigint>;
  /**
   * Where Time and Clock stand, so that they run on through a restart of the host process:
   * the wall-clock millisecond at which Time was zero, Clock minus Time (both constant while the
   * TPM runs, but for ClockSet), and which run of Time this is. Undefined in version 1 records.
   */
  time?: { origin: number; clockMinusTime: bigint; epoch: number };
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
  const w = new Writer(HEADER_ROOM + 20 + 12 * s.savedSessions.size + s.platformAuth.length + s.platformPolicy.digest.length + s.nullSeed.length + s.nullProof.length);
  w.u32(MAGIC).u8(RUNNING_VERSION);
  const e = s.enables;
  w.u8((s.started ? FLAG.started : 0) | (s.orderlyStart ? FLAG.orderlyStart : 0) | (e.ph ? FLAG.ph : 0) | (e.sh ? FLAG.sh : 0) | (e.eh ? FLAG.eh : 0) | (e.phNV ? FLAG.phNV : 0));
  w.u32(s.pcrUpdateCounter);
  w.sized(s.platformAuth);
  w.u16(s.platformPolicy.alg);
  w.sized(s.platformPolicy.digest);
  w.sized(s.nullSeed);
  w.sized(s.nullProof);
  w.sized(Buffer.from(s.auditDigest.digest, 'hex'));
  w.u32(s.auditDigest.resetCount);
  w.u64(s.contextSequence);
  w.u32(s.sessionNumber).u16(s.savedSessions.size);
  for (const [handle, sequence] of s.savedSessions) w.u32(handle).u64(sequence);
  const t = s.time ?? { origin: 0, clockMinusTime: 0n, epoch: 0 };
  w.u64(BigInt(Math.max(0, Math.floor(t.origin)))).u64(t.clockMinusTime).u32(t.epoch);
  w.u32(nvLength);
  return w.finish();
}

/** The fixed fields and length prefixes, and room for an audit digest of any hash. */
const HEADER_ROOM = 160;


/**
 * Decodes a record. The PCR banks to restore depend on the NV's allocation, so the caller gets the
 * NV first and then reads the PCR values with `readPcrs`, which checks that nothing follows them.
 */
export function decodeRunningState(record: Buffer): { state: RunningState; nv: Buffer; readPcrs: (read: (r: Reader) => void) => void } {
  return guarded(() => {
    const r = new Reader(record);
    if (r.u32() !== MAGIC) throw new RunningStateError('not a vTPM running-state record');
    const version = r.u8();
    if (version !== RUNNING_VERSION && version !== VERSION_1) throw new RunningStateError(`version ${version}; this vtpmd reads versions ${VERSION_1} and ${RUNNING_VERSION}`);
    const f = r.u8();
    const pcrUpdateCounter = r.u32();
    const platformAuth = r.sizedCopy();
    const alg = r.u16();
    const digest = r.sizedCopy();
    const nullSeed = r.sizedCopy();
    const nullProof = r.sizedCopy();
    const audit = r.bytes(r.u16()).toString('hex');
    const resetCount = r.u32();
    const contextSequence = r.u64();
    let sessionNumber = 0;
    const savedSessions = new Map<number, bigint>();
    let time: RunningState['time'];
    if (version !== VERSION_1) {
      sessionNumber = r.u32();
      for (let n = r.u16(); n > 0; n--) savedSessions.set(r.u32(), r.u64());
      time = { origin: Number(r.u64()), clockMinusTime: r.u64(), epoch: r.u32() };
    }
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
        sessionNumber,
        savedSessions,
        ...(time ? { time } : {}),
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
