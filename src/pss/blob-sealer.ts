/**
 * Seals a PSS's blobs, on a thread of their own once saves come in crowds.
 *
 * Sealing (AES-GCM under a per-blob XAES subkey, then SHA-256 for the blob id) and encoding the
 * save's record with its keyed digest are nearly half the main thread's work per durable save,
 * and the main thread is what bounds a crowd of vTPMs saving at once. So when the PSS sees a
 * crowd (`crowded`), the sealer starts a worker holding copies of the storage and record keys
 * and, for as long as the crowd lasts, hands it every save, a few dozen to a message: the main
 * thread runs the next vTPMs' commands while the worker encrypts and encodes. A lone saver is
 * better served here (a round trip to the worker costs more than its blob), and so are all saves
 * until the worker is ready, and for good if it fails (the ones it held are then sealed again
 * here): the thread changes where the work runs, never what is written.
 *
 * A blob sealed elsewhere exists at once as a buffer of its final length whose bytes arrive
 * later, with its encoded record; `done` says when. A blob sealed here leaves its record for the
 * commit to encode. One VM's seals complete in the order they were made, and a seal of a VM
 * waits for the one before it (a delta names its predecessor's id, known only then).
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import { blobId, BLOB_ID_BYTES, encodeHeader, sealedLength, type BlobKey, type HeaderFields } from './blob.ts';
import { DIGEST_BYTES } from './integrity.ts';

/** Where blobs are sealed: on a worker once the PSS sees a crowd (auto), from the start, or never. */
export type SealThreadMode = 'auto' | 'always' | 'never';

/** A save's record as the commit writes it (records.ts), and its keyed digest (integrity.ts). */
export interface EncodedRecord {
  bytes?: Buffer;
  digest?: Buffer;
}

export interface SealedBlob {
  /** The blob, of its final length; its bytes are final once `done` resolves (at once when undefined). */
  readonly blob: Buffer;
  /** SHA-256 of the blob, final with it. */
  readonly id: Buffer;
  /** Filled when sealed on the worker. */
  readonly record: EncodedRecord;
  readonly done: Promise<void> | undefined;
}

/** Blobs per message to the worker, at most. */
const MESSAGE_JOBS = 32;

interface Job {
  readonly header: HeaderFields;
  readonly body: Buffer;
  /** The record's chain base: with the header's fields and the blob id, the whole record. */
  readonly base: number;
  readonly record: EncodedRecord;
  readonly blob: Buffer;
  readonly id: Buffer;
  readonly resolve: () => void;
  readonly reject: (e: unknown) => void;
}

export class BlobSealer {
  private worker: Worker | undefined;
  private ready = false;
  /** The PSS's last commit window was a crowd. */
  private crowd = false;
  /** Jobs for the worker's next message. */
  private queued: Job[] = [];
  private flushScheduled = false;
  /** Messages the worker holds, oldest first: it answers in order. */
  private readonly sent: Job[][] = [];
  /** Each VM's last seal not yet complete. */
  private readonly inFlight = new Map<string, Promise<void>>();
  private closed = false;

  constructor(
    private readonly key: BlobKey,
    private readonly storageKey: Buffer,
    private readonly recordKey: Buffer,
    private readonly mode: SealThreadMode,
    private readonly log: Logger,
  ) {
    if (mode === 'always') this.start();
  }

  /** Whether the PSS's latest commit window carried a crowd of saves ('auto' mode seals on the worker while it does). */
  crowded(crowd: boolean): void {
    this.crowd = crowd;
    if (crowd && this.mode === 'auto' && !this.worker && !this.closed) this.start();
  }

  /** Whether the worker is up (it stays up once started, until close or failure). */
  get threadRunning(): boolean {
    return this.ready;
  }

  /** Whether blobs go to the worker: while crowded once it is ready; in 'always' mode from its start. */
  private get offThread(): boolean {
    return this.mode === 'always' ? this.worker !== undefined : this.ready && this.crowd;
  }

  /** `vmId`'s last seal, while it is not complete. */
  pending(vmId: string): Promise<void> | undefined {
    return this.inFlight.get(vmId);
  }

  /** Seals `body` as the blob of the save whose record has chain base `base`. */
  seal(vmId: string, header: HeaderFields, body: Buffer, base: number): SealedBlob {
    const prior = this.inFlight.get(vmId);
    if (!prior && !this.offThread) {
      const blob = this.key.seal(header, body);
      return { blob, id: blobId(blob), record: {}, done: undefined };
    }
    const blob = Buffer.allocUnsafe(sealedLength(header, body.length));
    // Its own memory: it outlives the blob, as the record's blob id, while the vTPM is loaded.
    const id = Buffer.allocUnsafeSlow(BLOB_ID_BYTES);
    const record: EncodedRecord = {};
    const done = new Promise<void>((resolve, reject) => {
      const job: Job = { header, body, base, record, blob, id, resolve, reject };
      // Its header may name the prior seal's id, whose bytes are final only once it is done.
      if (prior) void prior.then(() => this.enqueue(job), () => this.enqueue(job));
      else this.enqueue(job);
    });
    this.inFlight.set(vmId, done);
    const forget = () => {
      if (this.inFlight.get(vmId) === done) this.inFlight.delete(vmId);
    };
    done.then(forget, forget);
    return { blob, id, record, done };
  }

  /** Stops the worker; seals made later run on this thread. */
  async close(): Promise<void> {
    this.closed = true;
    const worker = this.worker;
    this.stop();
    await worker?.terminate();
  }

  private enqueue(job: Job): void {
    if (!this.offThread) {
      this.sealHere(job);
      return;
    }
    // A turn's seals in messages of a few dozen: one per blob would cost more than sealing a small
    // blob, one per turn would leave the worker idle until the turn's last save.
    if (this.queued.push(job) >= MESSAGE_JOBS) this.flush();
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => {
        this.flushScheduled = false;
        this.flush();
      });
    }
  }

  private flush(): void {
    // Held until the worker is ready ('always' mode); it flushes then.
    if (!this.ready || !this.worker) return;
    if (!this.offThread) {
      for (const job of this.queued.splice(0)) this.sealHere(job);
      return;
    }
    const jobs = this.queued;
    this.queued = [];
    if (jobs.length === 0) return;
    const headers = jobs.map((j) => encodeHeader(j.header));
    let size = 4;
    for (let i = 0; i < jobs.length; i++) size += 16 + headers[i]!.length + jobs[i]!.body.length;
    // Its own ArrayBuffer (not the shared pool's), so it can be transferred rather than copied.
    const message = Buffer.allocUnsafeSlow(size);
    let at = message.writeUInt32LE(jobs.length, 0);
    for (let i = 0; i < jobs.length; i++) {
      at = message.writeUInt32LE(headers[i]!.length, at);
      at = message.writeUInt32LE(jobs[i]!.body.length, at);
      at = message.writeDoubleLE(jobs[i]!.base, at);
      at += headers[i]!.copy(message, at);
      at += jobs[i]!.body.copy(message, at);
    }
    this.sent.push(jobs);
    this.worker.ref();
    this.worker.postMessage(message.buffer, [message.buffer]);
  }

  private answered(reply: ArrayBuffer): void {
    const jobs = this.sent.shift();
    if (!jobs) return;
    if (this.sent.length === 0) this.worker?.unref();
    const out = Buffer.from(reply);
    let at = 0;
    for (const job of jobs) {
      at += out.copy(job.blob, 0, at, at + job.blob.length);
      at += out.copy(job.id, 0, at, at + BLOB_ID_BYTES);
      const length = out.readUInt32LE(at);
      // Views of the answer: they live until their commit is written.
      job.record.bytes = out.subarray(at + 4, (at += 4 + length));
      job.record.digest = out.subarray(at, (at += DIGEST_BYTES));
      job.resolve();
    }
  }

  private sealHere(job: Job): void {
    try {
      const blob = this.key.seal(job.header, job.body);
      blob.copy(job.blob);
      blobId(blob).copy(job.id);
      job.resolve();
    } catch (e) {
      job.reject(e);
    }
  }

  private start(): void {
    // A copy: the PSS zeroes its key on close, and the worker owns what it is given.
    const worker = new Worker(new URL('./seal-thread-boot.mjs', import.meta.url), {
      workerData: { storageKey: new Uint8Array(this.storageKey), recordKey: new Uint8Array(this.recordKey) },
    });
    this.worker = worker;
    worker.unref();
    worker.on('message', (m: unknown) => {
      if (m === 'ready') {
        if (this.worker !== worker) return;
        this.ready = true;
        this.flush();
      } else if (m instanceof ArrayBuffer) this.answered(m);
    });
    const failed = (why: string) => {
      if (this.worker !== worker) return;
      if (!this.closed) this.log.warn({ why }, 'the sealing thread stopped; sealing on the main thread');
      this.stop();
    };
    worker.on('error', (e) => failed(e.message));
    worker.on('exit', (code) => failed(`exit code ${code}`));
  }

  /** Back to sealing here: whatever the worker held or was about to get is sealed here now. */
  private stop(): void {
    this.ready = false;
    this.worker = undefined;
    for (const jobs of this.sent.splice(0)) for (const job of jobs) this.sealHere(job);
    const queued = this.queued;
    this.queued = [];
    for (const job of queued) this.sealHere(job);
  }
}
