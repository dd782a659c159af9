/** Devices and guest helpers for the hypervisor tests. */
import type { TpmDevice } from '../../src/tpm/device.ts';
import { CRB_REG, CTRL_REQ, CTRL_START, LOC_CTRL, type CrbDevice } from '../../src/hypervisor/crb.ts';

/**
 * A TPM whose commands finish only when the test says so: it answers each command with a
 * response echoing the command's 4th–7th parameter bytes, so tests can tell answers apart.
 */
export class GatedDevice implements TpmDevice {
  readonly family = 'tpm2' as const;
  readonly powered = true;
  established = false;
  readonly maxCommandSize = 4096;
  readonly started: { command: Uint8Array; locality: number; release: () => void; fail: (e: Error) => void }[] = [];
  poweredOn = 0;
  poweredOff = 0;
  flushed = 0;

  constructor(readonly label = 'gated') {}

  execute(command: Uint8Array, locality: number): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      this.started.push({ command, locality, release: () => resolve(echoResponse(command)), fail: reject });
    });
  }

  /** Releases the oldest unreleased command. */
  releaseNext(): void {
    const c = this.started.find((s) => !(s as { done?: boolean }).done) as ((typeof this.started)[number] & { done?: boolean }) | undefined;
    if (!c) throw new Error(`${this.label}: no command is waiting`);
    c.done = true;
    c.release();
  }

  async powerOn(): Promise<void> {
    this.poweredOn++;
  }
  async powerOff(): Promise<void> {
    this.poweredOff++;
  }
  resetEstablished(locality: number): boolean {
    if (locality < 3) return false;
    this.established = false;
    return true;
  }
  async flush(): Promise<void> {
    this.flushed++;
  }
}

/** A 14-byte TPM2-shaped command carrying `tag` as its 32-bit parameter. */
export function taggedCommand(tag: number): Uint8Array {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(0x8001, 0);
  b.writeUInt32BE(14, 2);
  b.writeUInt32BE(0x17b, 6); // GetRandom's code; the gated device does not interpret it
  b.writeUInt32BE(tag >>> 0, 10);
  return b;
}

export function echoResponse(command: Uint8Array): Uint8Array {
  const b = Buffer.alloc(14);
  b.writeUInt16BE(0x8001, 0);
  b.writeUInt32BE(14, 2);
  b.writeUInt32BE(0, 6);
  b.set(command.subarray(10, 14), 10);
  return b;
}

export function tagOf(response: Uint8Array): number {
  return Buffer.from(response).readUInt32BE(10);
}

/** Lets queued microtasks and one event-loop turn run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Raw MMIO steps a guest takes to put a command in the buffer of locality `loc`. */
export function writeCommand(crb: Pick<CrbDevice, 'write'>, loc: number, bytes: Uint8Array): void {
  const w = loc * 0x1000 + CRB_REG.DATA_BUFFER;
  const padded = Buffer.alloc((bytes.length + 3) & ~3);
  padded.set(bytes);
  for (let i = 0; i < padded.length; i += 4) crb.write(w + i, padded.readUInt32LE(i));
}

export function readBuffer(crb: Pick<CrbDevice, 'read'>, loc: number, length: number): Buffer {
  const out = Buffer.alloc((length + 3) & ~3);
  for (let i = 0; i < out.length; i += 4) out.writeUInt32LE(crb.read(loc * 0x1000 + CRB_REG.DATA_BUFFER + i) >>> 0, i);
  return out.subarray(0, length);
}

/** requestAccess + cmdReady at `loc`. */
export function ready(crb: Pick<CrbDevice, 'write'>, loc: number): void {
  crb.write(loc * 0x1000 + CRB_REG.LOC_CTRL, LOC_CTRL.requestAccess);
  crb.write(loc * 0x1000 + CRB_REG.CTRL_REQ, CTRL_REQ.cmdReady);
}

export function start(crb: Pick<CrbDevice, 'write'>, loc: number): void {
  crb.write(loc * 0x1000 + CRB_REG.CTRL_START, CTRL_START.start);
}
