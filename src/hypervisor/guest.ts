/**
 * A simulated guest's TPM driver: it touches the partition's CRB only through 32-bit MMIO
 * accesses, in the order Linux's tpm_crb driver does for one command — request the locality,
 * cmdReady, write the buffer, START, wait for START to clear, check the status, read the response,
 * goIdle, relinquish. Tests and benchmarks drive the hypervisor through it as a real guest would.
 */
import { CRB_INT, CRB_LOCALITIES, CRB_LOCALITY_WINDOW, CRB_REG, CTRL_REQ, CTRL_START, CTRL_STS, LOC_CTRL, LOC_STS, type CrbDevice } from './crb.ts';
import { GuestError } from './errors.ts';

export type WaitMode = 'interrupt' | 'poll';

export interface GuestDriverOptions {
  /** Park on the CRB interrupt (default) or poll START, yielding to the event loop between reads. */
  wait?: WaitMode;
  /** Reads of LOC_STS before giving up on a locality another holder keeps. Default 10 000. */
  localityPolls?: number;
}

/** One CRB as the guest driver sees it. */
export class GuestCrbDriver {
  readonly #crb: CrbDevice;
  readonly #checkRunning: () => void;
  readonly #wait: WaitMode;
  readonly #localityPolls: number;

  constructor(crb: CrbDevice, checkRunning: () => void, opts: GuestDriverOptions = {}) {
    this.#crb = crb;
    this.#checkRunning = checkRunning;
    this.#wait = opts.wait ?? 'interrupt';
    this.#localityPolls = opts.localityPolls ?? 10_000;
  }

  mmioRead(offset: number): number {
    this.#checkRunning();
    return this.#crb.read(offset);
  }

  mmioWrite(offset: number, value: number): void {
    this.#checkRunning();
    this.#crb.write(offset, value);
  }

  /** Sends one command at `locality` and returns the response, as the guest kernel would. */
  async transmit(command: Uint8Array, locality = 0): Promise<Uint8Array> {
    if (!Number.isInteger(locality) || locality < 0 || locality >= CRB_LOCALITIES) throw new RangeError(`locality must be 0–4, not ${locality}`);
    const w = locality * CRB_LOCALITY_WINDOW;
    // Register accesses go straight to the device model; liveness is checked once per wait
    // instead of once per access, since a dead CRB only floats (all ones, writes dropped).
    this.#checkRunning();
    const crb = this.#crb;
    crb.write(w + CRB_REG.LOC_CTRL, LOC_CTRL.requestAccess);
    for (let i = 0; !(crb.read(w + CRB_REG.LOC_STS) & LOC_STS.granted); i++) {
      if (i >= this.#localityPolls) {
        crb.write(w + CRB_REG.LOC_CTRL, LOC_CTRL.relinquish);
        throw new GuestError('locality-not-granted', `locality ${locality} was not granted: another locality holds the TPM`);
      }
      await yieldTurn();
      this.#checkRunning();
    }
    try {
      if (this.#wait === 'interrupt') crb.write(w + CRB_REG.INT_ENABLE, CRB_INT.globalEnable | CRB_INT.start | CRB_INT.cmdReady);
      crb.write(w + CRB_REG.CTRL_REQ, CTRL_REQ.cmdReady);
      await this.#until(w, () => (crb.read(w + CRB_REG.CTRL_REQ) & CTRL_REQ.cmdReady) === 0);
      const max = crb.read(w + CRB_REG.CMD_SIZE);
      if (command.length > max) throw new GuestError('command-too-large', `a ${command.length}-byte command does not fit the ${max}-byte CRB buffer`);
      crb.write(w + CRB_REG.CTRL_CANCEL, 0);
      writeBuffer(crb, w, command);
      if (this.#wait === 'interrupt') crb.write(w + CRB_REG.INT_STS, 0xf);
      crb.write(w + CRB_REG.CTRL_START, CTRL_START.start);
      await this.#until(w, () => (crb.read(w + CRB_REG.CTRL_START) & CTRL_START.start) === 0);
      if (crb.read(w + CRB_REG.CTRL_STS) & CTRL_STS.tpmSts) throw new GuestError('device-error', 'the TPM reports a fatal error (CTRL_STS.tpmSts)');
      return readResponse(crb, w);
    } finally {
      // A terminated partition has no device left to tidy, and its error is the one to report.
      if (this.#running()) {
        this.#crb.write(w + CRB_REG.CTRL_REQ, CTRL_REQ.goIdle);
        this.#crb.write(w + CRB_REG.LOC_CTRL, LOC_CTRL.relinquish);
      }
    }
  }

  #running(): boolean {
    try {
      this.#checkRunning();
      return true;
    } catch {
      return false;
    }
  }

  async #until(w: number, done: () => boolean): Promise<void> {
    while (!done()) {
      if (this.#wait === 'poll') await yieldTurn();
      else await this.#crb.waitForInterrupt();
      this.#checkRunning();
      if (this.#wait === 'interrupt') this.#crb.write(w + CRB_REG.INT_STS, 0xf);
    }
  }
}

function writeBuffer(d: CrbDevice, w: number, bytes: Uint8Array): void {
  const base = w + CRB_REG.DATA_BUFFER;
  const whole = bytes.length & ~3;
  let i = 0;
  for (; i < whole; i += 4) d.write(base + i, (bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24)) >>> 0);
  if (i < bytes.length) {
    let v = 0;
    for (let k = 0; i + k < bytes.length; k++) v |= bytes[i + k]! << (8 * k);
    d.write(base + i, v >>> 0);
  }
}

function readResponse(d: CrbDevice, w: number): Uint8Array {
  const base = w + CRB_REG.DATA_BUFFER;
  const w0 = d.read(base);
  const w1 = d.read(base + 4);
  // responseSize: header bytes 2–5, big-endian, across the two little-endian words.
  const size = (((w0 >>> 16) & 0xff) << 24) | ((w0 >>> 24) << 16) | ((w1 & 0xff) << 8) | ((w1 >>> 8) & 0xff);
  const room = d.read(w + CRB_REG.RSP_SIZE);
  if (size < 10 || size > room) throw new GuestError('bad-response', `the response header gives ${size >>> 0} bytes; the buffer holds ${room}`);
  // From Node's buffer pool, as the CRB's command copies are.
  const out = Buffer.allocUnsafe((size + 3) & ~3);
  putLe(out, 0, w0);
  putLe(out, 4, w1);
  for (let i = 8; i < size; i += 4) putLe(out, i, d.read(base + i));
  return out.subarray(0, size);
}

function putLe(b: Uint8Array, at: number, v: number): void {
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
  b[at + 2] = (v >>> 16) & 0xff;
  b[at + 3] = v >>> 24;
}

function yieldTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * The guest's TPM driver over all its CRB channels: `transmit` takes a free channel (waiting in
 * FIFO order when all are busy), so the guest's clients never interleave on one CRB.
 */
export class GuestDriver {
  readonly channels: readonly GuestCrbDriver[];
  #free: GuestCrbDriver[];
  #waiting: ((c: GuestCrbDriver) => void)[] = [];

  constructor(crbs: readonly CrbDevice[], checkRunning: () => void, opts: GuestDriverOptions = {}) {
    this.channels = crbs.map((crb) => new GuestCrbDriver(crb, checkRunning, opts));
    this.#free = [...this.channels].reverse();
  }

  channel(i: number): GuestCrbDriver {
    const c = this.channels[i];
    if (!c) throw new RangeError(`the partition has ${this.channels.length} CRB channel(s); there is no channel ${i}`);
    return c;
  }

  mmioRead(offset: number): number {
    return this.channels[0]!.mmioRead(offset);
  }

  mmioWrite(offset: number, value: number): void {
    this.channels[0]!.mmioWrite(offset, value);
  }

  async transmit(command: Uint8Array, locality = 0): Promise<Uint8Array> {
    const ch = this.#free.pop() ?? (await new Promise<GuestCrbDriver>((resolve) => this.#waiting.push(resolve)));
    try {
      return await ch.transmit(command, locality);
    } finally {
      const next = this.#waiting.shift();
      if (next) next(ch);
      else this.#free.push(ch);
    }
  }
}
