/**
 * A TPM 2.0 outside this process serving as the host's TPM, named the way a TCTI configuration
 * names it:
 *
 *   device                              /dev/tpmrm0, the kernel's resource-managed TPM device
 *   device:/dev/tpm0                    another TPM character device
 *   swtpm                               the swtpm socket interface's data channel at 127.0.0.1:2321
 *   swtpm:host=HOST,port=PORT
 *   swtpm:path=/run/vtpmd/host-tpm.sock a Unix socket
 *
 * A device takes one whole command per write() and gives the whole response to the read() after
 * it; the swtpm data channel carries the same bytes as a stream (what swtpm, libtpms's front end,
 * serves, and what tpm2-tools' swtpm TCTI speaks).
 *
 * The TPM must be powered and past TPM_Init when vtpmd attaches (swtpm: `--flags
 * not-need-init`): vtpmd never power-cycles it, because resetting the host's TPM is a reboot's
 * business, not a daemon's. One command is in flight at a time. A failed exchange fails the
 * command in flight, and the next command opens the channel again.
 *
 * vtpmd keeps nothing loaded in the TPM between its turns: keys and sessions are loaded for one
 * operation and flushed or saved after it. A turn cut off by a lost connection, or a vtpmd that
 * crashed mid-turn, leaves them loaded, though, and a TPM without a resource manager in front
 * (swtpm, /dev/tpm0) keeps them until it is reset: a few such and it has no slot left for
 * anyone. So a channel to such a TPM, once opened, first flushes the transient objects and
 * loaded sessions it finds. Behind the kernel's resource manager (/dev/tpmrm*) a connection
 * sees only its own, and the kernel flushes those when the connection closes.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { SerialQueue } from '../tpm/serial-queue.ts';
import { HEADER_SIZE_OFFSET, TPM_HEADER_SIZE } from '../transport/tpm-frames.ts';
import { SocketReader } from '../transport/socket-io.ts';
import type { HostTpm } from './host-tpm.ts';
import { Tpm2Client, type Exec, type HierarchyAuth } from './tpm2-client.ts';
import { CAP } from '../tpm/tpm2/constants.ts';

export type AttachedTpmAddress = { readonly host: string; readonly port: number } | { readonly path: string } | { readonly device: string };

/** Largest response accepted: a TPM's own limit (TPM_PT_MAX_RESPONSE_SIZE) is a few KiB. */
const MAX_RESPONSE = 64 * 1024;
const DEFAULT_ADDRESS = { host: '127.0.0.1', port: 2321 } as const;
const DEFAULT_DEVICE = '/dev/tpmrm0';

export class AttachedTpmError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AttachedTpmError';
  }
}

/** Parses `device[:PATH]` or `swtpm[:key=value,…]` (keys host, port, path); throws AttachedTpmError naming what is wrong. */
export function parseAttachedTpm(spec: string): AttachedTpmAddress {
  const m = /^([a-z0-9-]+)(?::(.*))?$/.exec(spec);
  if (!m) throw new AttachedTpmError(`host TPM ${JSON.stringify(spec)}: expected device:/dev/tpmrm0, swtpm:host=HOST,port=PORT or swtpm:path=SOCKET`);
  if (m[1] === 'device') return { device: m[2] || DEFAULT_DEVICE };
  if (m[1] !== 'swtpm') throw new AttachedTpmError(`host TPM ${JSON.stringify(spec)}: the ${m[1]} interface is not supported; vtpmd attaches to a device or over swtpm`);
  const fields = new Map<string, string>();
  for (const part of (m[2] ?? '').split(',').filter((p) => p !== '')) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    if (!['host', 'port', 'path'].includes(key) || eq < 0) throw new AttachedTpmError(`host TPM ${JSON.stringify(spec)}: unknown or empty field ${JSON.stringify(part)} (host=, port=, path=)`);
    if (fields.has(key)) throw new AttachedTpmError(`host TPM ${JSON.stringify(spec)}: ${key} given twice`);
    fields.set(key, part.slice(eq + 1));
  }
  const path = fields.get('path');
  if (path !== undefined) {
    if (fields.has('host') || fields.has('port')) throw new AttachedTpmError(`host TPM ${JSON.stringify(spec)}: path= excludes host= and port=`);
    if (path === '') throw new AttachedTpmError(`host TPM ${JSON.stringify(spec)}: path= is empty`);
    return { path };
  }
  const host = fields.get('host') || DEFAULT_ADDRESS.host;
  const portText = fields.get('port');
  const port = portText === undefined ? DEFAULT_ADDRESS.port : Number(portText);
  if (!/^\d+$/.test(portText ?? '1') || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new AttachedTpmError(`host TPM ${JSON.stringify(spec)}: port must be 1–65535, not ${JSON.stringify(portText)}`);
  }
  return { host, port };
}

export function describeAddress(a: AttachedTpmAddress): string {
  return 'device' in a ? `device:${a.device}` : 'path' in a ? `swtpm:path=${a.path}` : `swtpm:host=${a.host},port=${a.port}`;
}

/** How commands reach the TPM: one exchange at a time, each a whole command and a whole response. */
interface Channel {
  /** False once the peer is known gone: a socket it closed. */
  readonly usable: boolean;
  exchange(command: Uint8Array): Promise<Buffer>;
  close(): Promise<void>;
}

/** The response size a header declares, checked against what a TPM can answer. */
function declaredSize(header: Buffer, name: string): number {
  const size = header.readUInt32BE(HEADER_SIZE_OFFSET);
  if (size < TPM_HEADER_SIZE || size > MAX_RESPONSE) throw new AttachedTpmError(`the host TPM at ${name} framed a response of ${size} bytes`);
  return size;
}

class SocketChannel implements Channel {
  private constructor(
    private readonly socket: Socket,
    private readonly reader: SocketReader,
    private readonly name: string,
  ) {}

  static async open(address: { host: string; port: number } | { path: string }, name: string): Promise<SocketChannel> {
    const socket = 'path' in address ? connect({ path: address.path }) : connect({ host: address.host, port: address.port });
    socket.setNoDelay(true);
    await new Promise<void>((ok, fail) => {
      socket.once('connect', ok);
      socket.once('error', (e) => fail(new AttachedTpmError(`cannot reach the host TPM at ${name}: ${e.message}`, { cause: e })));
    });
    return new SocketChannel(socket, new SocketReader(socket), name);
  }

  get usable(): boolean {
    return !this.socket.destroyed;
  }

  async exchange(command: Uint8Array): Promise<Buffer> {
    this.socket.write(command);
    const header = await this.reader.read(TPM_HEADER_SIZE);
    if (header === null) throw new AttachedTpmError(`the host TPM at ${this.name} closed the connection before answering`);
    const body = await this.reader.readRest(declaredSize(header, this.name) - TPM_HEADER_SIZE, TPM_HEADER_SIZE);
    return Buffer.concat([header, body]);
  }

  async close(): Promise<void> {
    this.socket.destroy();
  }
}

class DeviceChannel implements Channel {
  readonly usable = true;
  private readonly buffer = Buffer.alloc(MAX_RESPONSE);

  private constructor(
    private readonly file: FileHandle,
    private readonly name: string,
  ) {}

  static async open(device: string, name: string): Promise<DeviceChannel> {
    try {
      return new DeviceChannel(await open(device, 'r+'), name);
    } catch (e) {
      throw new AttachedTpmError(`cannot reach the host TPM at ${name}: ${(e as Error).message}`, { cause: e });
    }
  }

  async exchange(command: Uint8Array): Promise<Buffer> {
    const { bytesWritten } = await this.file.write(command);
    if (bytesWritten !== command.length) throw new AttachedTpmError(`the host TPM at ${this.name} took ${bytesWritten} of a ${command.length}-byte command`);
    // The first read asks for all a response can be, as a TPM device answers one read with the
    // whole response; further reads serve devices that deliver it in pieces.
    let filled = 0;
    let size = MAX_RESPONSE;
    while (filled < size) {
      const { bytesRead } = await this.file.read(this.buffer, filled, this.buffer.length - filled, null);
      if (bytesRead === 0) throw new AttachedTpmError(`the host TPM at ${this.name} ended its response after ${filled} bytes`);
      filled += bytesRead;
      if (filled >= TPM_HEADER_SIZE) size = declaredSize(this.buffer, this.name);
    }
    if (filled > size) throw new AttachedTpmError(`the host TPM at ${this.name} answered ${filled} bytes for a ${size}-byte response`);
    return Buffer.from(this.buffer.subarray(0, size));
  }

  close(): Promise<void> {
    return this.file.close();
  }
}

export class AttachedTpm implements HostTpm {
  readonly family = 'tpm2' as const;
  readonly powered = true;
  private readonly queue = new SerialQueue();
  private channel: Channel | undefined;
  private closed = false;
  /** Transient objects and loaded sessions found and flushed when channels opened (see the module comment). */
  leftoversFlushed = 0;

  /** `hierarchyAuth`: the owner and endorsement authValues, when the host's owner set them. */
  constructor(
    readonly address: AttachedTpmAddress,
    readonly hierarchyAuth: HierarchyAuth = {},
  ) {}

  /** Opens the channel now, so that a wrong address fails at start rather than at the first command. */
  static async open(address: AttachedTpmAddress, hierarchyAuth: HierarchyAuth = {}): Promise<AttachedTpm> {
    const tpm = new AttachedTpm(address, hierarchyAuth);
    await tpm.queue.run(() => tpm.opened());
    return tpm;
  }

  get name(): string {
    return describeAddress(this.address);
  }

  async powerOn(): Promise<void> {
    // Attached powered: see the module comment.
  }

  execute(command: Uint8Array, locality: number): Promise<Uint8Array> {
    return this.exclusive((exec) => exec(command), locality);
  }

  exclusive<T>(job: (exec: Exec) => Promise<T>, locality = 0): Promise<T> {
    // Neither channel carries a locality (swtpm's ctrl channel could set one, but the host's own
    // users share this TPM and a locality is theirs to choose).
    if (locality !== 0) return Promise.reject(new RangeError(`the attached host TPM is used at locality 0 only, not ${locality}`));
    return this.queue.run(() => job((command) => this.roundTrip(command)));
  }

  async flush(): Promise<void> {
    // The TPM makes its own NV durable before it answers; nothing is held here.
  }

  /** Closes the channel once the commands queued so far have been answered. */
  close(): Promise<void> {
    return this.queue.run(async () => {
      this.closed = true;
      await this.drop();
    });
  }

  private async roundTrip(command: Uint8Array): Promise<Uint8Array> {
    const channel = await this.opened();
    try {
      return await channel.exchange(command);
    } catch (e) {
      // After a failure mid-exchange the framing is lost: the next command starts afresh.
      await this.drop();
      if (e instanceof AttachedTpmError) throw e;
      throw new AttachedTpmError(`the host TPM at ${this.name} failed during a command: ${(e as Error).message}`, { cause: e });
    }
  }

  private async opened(): Promise<Channel> {
    if (this.closed) throw new AttachedTpmError(`the host TPM at ${this.name} was detached`);
    if (this.channel && !this.channel.usable) await this.drop();
    if (this.channel) return this.channel;
    const channel = 'device' in this.address ? await DeviceChannel.open(this.address.device, this.name) : await SocketChannel.open(this.address, this.name);
    try {
      if (!behindResourceManager(this.address)) this.leftoversFlushed += await flushLeftovers(new Tpm2Client((c) => channel.exchange(c)));
    } catch (e) {
      await channel.close().catch(() => undefined);
      throw new AttachedTpmError(`the host TPM at ${this.name} failed while its leftover objects and sessions were flushed: ${(e as Error).message}`, { cause: e });
    }
    this.channel = channel;
    return channel;
  }


  private async drop(): Promise<void> {
    const channel = this.channel;
    this.channel = undefined;
    await channel?.close().catch(() => undefined);
  }
}

/** Whether the kernel's resource manager stands between vtpmd and the TPM (see the module comment). */
export function behindResourceManager(address: AttachedTpmAddress): boolean {
  return 'device' in address && /\/tpmrm\d*$/.test(address.device);
}

/**
 * Where GetCapability lists what is loaded, and the handle types it lists there: transient
 * objects (TPM_HT_TRANSIENT), and loaded sessions (TPM_HT_LOADED_SESSION), HMAC and policy.
 */
const LOADED = [
  { first: 0x80000000, types: [0x80] },
  { first: 0x02000000, types: [0x02, 0x03] },
] as const;

/** Flushes every transient object and loaded session the TPM lists; resolves with how many. */
async function flushLeftovers(tpm: Tpm2Client): Promise<number> {
  let flushed = 0;
  for (const { first, types } of LOADED) {
    const { capabilityData } = await tpm.getCapability(CAP.HANDLES, first, 64);
    const handles = 'items' in capabilityData ? capabilityData.items.filter((h) => (types as readonly number[]).includes(h >>> 24)) : [];
    for (const handle of handles) {
      await tpm.flushContext(handle);
      flushed++;
    }
  }
  return flushed;
}
