/**
 * Real clients against our servers: tpm2-tools through tcti-swtpm and tcti-mssim, and swtpm's own
 * control tool; and swtpm itself as the reference for what the control channel answers. The device is a fake that answers just what tpm2_getrandom asks (GetCapability
 * for the TPM properties, then GetRandom), so these tests pin the transports, not the engine.
 *
 * When a tool or TCTI library is missing the tests skip loudly; with VTPMD_REQUIRE_INTEROP=1
 * they fail instead.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';
import { startSwtpmServer } from '../../src/transport/swtpm-server.ts';
import { startMssimServer } from '../../src/transport/mssim-server.ts';
import { Client, FakeDevice, header, portOf, silentLogger, u32, type Responder } from './helpers.ts';

const run = promisify(execFile);

const RANDOM = Buffer.from('deadbeef01234567', 'hex');
const TPM2_CC_GET_CAPABILITY = 0x17a;
const TPM2_CC_GET_RANDOM = 0x17b;
const TPM2_CAP_TPM_PROPERTIES = 6;
const TPM2_RC_COMMAND_CODE = 0x143;

/** Fixed TPM properties a TPM 2.0 would report; tpm2_getrandom checks its request against TPM2_PT_MAX_DIGEST. */
const PROPERTIES = new Map<number, number>([
  [0x100, 0x322e3000], // TPM2_PT_FAMILY_INDICATOR "2.0\0"
  [0x10d, 1024], // TPM2_PT_INPUT_BUFFER
  [0x11e, 4096], // TPM2_PT_MAX_COMMAND_SIZE
  [0x11f, 4096], // TPM2_PT_MAX_RESPONSE_SIZE
  [0x120, 32], // TPM2_PT_MAX_DIGEST
]);

const randomResponder: Responder = (command) => {
  const code = command.readUInt32BE(6);
  if (code === TPM2_CC_GET_CAPABILITY && command.readUInt32BE(10) === TPM2_CAP_TPM_PROPERTIES) {
    const first = command.readUInt32BE(14);
    const count = command.readUInt32BE(18);
    const entries = [...PROPERTIES].filter(([property]) => property >= first && property < first + count);
    const body = Buffer.alloc(1 + 4 + 4 + 8 * entries.length);
    body.writeUInt8(0, 0); // moreData: NO
    body.writeUInt32BE(TPM2_CAP_TPM_PROPERTIES, 1);
    body.writeUInt32BE(entries.length, 5);
    entries.forEach(([property, value], i) => {
      body.writeUInt32BE(property, 9 + 8 * i);
      body.writeUInt32BE(value, 13 + 8 * i);
    });
    return Buffer.concat([header(0x8001, 10 + body.length, 0), body]);
  }
  if (code === TPM2_CC_GET_RANDOM) {
    const wanted = command.readUInt16BE(10);
    const bytes = Buffer.alloc(wanted);
    for (let i = 0; i < wanted; i++) bytes[i] = RANDOM[i % RANDOM.length]!;
    const size = Buffer.alloc(2);
    size.writeUInt16BE(wanted, 0);
    return Buffer.concat([header(0x8001, 12 + wanted, 0), size, bytes]);
  }
  return header(0x8001, 10, TPM2_RC_COMMAND_CODE);
};

function findTool(name: string): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    const candidate = join(dir, name);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not in this directory
    }
  }
  return undefined;
}

function hasLibrary(soname: string): boolean {
  try {
    if (execFileSync('ldconfig', ['-p'], { encoding: 'utf8' }).includes(soname)) return true;
  } catch {
    // no ldconfig: look in the usual places
  }
  const dirs = ['/usr/lib', '/usr/lib64', '/usr/local/lib', `/usr/lib/${process.arch === 'x64' ? 'x86_64' : process.arch}-linux-gnu`];
  return dirs.some((dir) => existsSync(join(dir, soname)));
}

/** Returns the tool's path, or skips (or fails, with VTPMD_REQUIRE_INTEROP=1) naming what is missing. */
function requirePeers(t: TestContext, tool: string, libraries: string[]): string | undefined {
  const path = findTool(tool);
  const missing = [...(path ? [] : [tool]), ...libraries.filter((lib) => !hasLibrary(lib))];
  if (missing.length === 0) return path;
  const message = `INTEROP TEST NOT RUN: ${missing.join(', ')} not installed (Debian: tpm2-tools, libtss2-tcti-swtpm0, libtss2-tcti-mssim0, swtpm-tools)`;
  if (process.env['VTPMD_REQUIRE_INTEROP'] === '1') assert.fail(message);
  console.warn(`\n!!!!! ${message} !!!!!\n`);
  t.skip(message);
  return undefined;
}

test('tpm2_getrandom over tcti-swtpm prints the bytes the device returned', async (t) => {
  const tool = requirePeers(t, 'tpm2_getrandom', ['libtss2-tcti-swtpm.so.0']);
  if (!tool) return;
  const device = new FakeDevice({ respond: randomResponder });
  const server = await startSwtpmServer(device, {
    data: { type: 'tcp', port: 0 },
    ctrl: { type: 'tcp', port: 0 },
    flags: { notNeedInit: true },
    logger: silentLogger,
  });
  t.after(() => server.close());
  const { stdout } = await run(tool, ['-T', `swtpm:host=127.0.0.1,port=${portOf(server.data)}`, '--hex', '8']);
  assert.equal(stdout.trim(), RANDOM.toString('hex'));
  assert.ok(device.executed.some((e) => e.command.readUInt32BE(6) === TPM2_CC_GET_RANDOM));
});

test('tpm2_getrandom over tcti-mssim prints the bytes the device returned after powering it on', async (t) => {
  const tool = requirePeers(t, 'tpm2_getrandom', ['libtss2-tcti-mssim.so.0']);
  if (!tool) return;
  const device = new FakeDevice({ respond: randomResponder });
  const server = await startMssimServer(device, { port: 0, logger: silentLogger });
  t.after(() => server.close());
  const { stdout } = await run(tool, ['-T', `mssim:host=127.0.0.1,port=${server.port}`, '--hex', '8']);
  assert.equal(stdout.trim(), RANDOM.toString('hex'));
  assert.equal(device.events[0], 'powerOn', 'tcti-mssim powers the simulator on at initialisation');
});

test('swtpm_ioctl drives the control channel: capabilities, init, locality, established bit, store, stop, shutdown', async (t) => {
  const tool = requirePeers(t, 'swtpm_ioctl', []);
  if (!tool) return;
  const device = new FakeDevice({ respond: randomResponder });
  const server = await startSwtpmServer(device, {
    data: { type: 'tcp', port: 0 },
    ctrl: { type: 'tcp', port: 0 },
    logger: silentLogger,
  });
  t.after(() => server.close());
  const ioctl = async (...args: string[]): Promise<string> =>
    (await run(tool, ['--tcp', `127.0.0.1:${portOf(server.ctrl)}`, ...args])).stdout.trim();

  assert.match(await ioctl('-c'), /ptm capability is 0x0*6cef/i);
  await ioctl('-i');
  assert.deepEqual(device.events, ['powerOn']);
  await ioctl('-l', '3');
  assert.match(await ioctl('-e'), /tpmEstablished is 1/);
  await ioctl('-r', '3');
  assert.match(await ioctl('-e'), /tpmEstablished is 0/);
  await ioctl('-v');
  await ioctl('--stop');
  assert.deepEqual(device.events, ['powerOn', 'resetEstablished@3', 'flush', 'flush', 'powerOff']);
  await ioctl('-s');
  await server.closed;
});

test('vtpmd answers control requests and not-running data commands byte-for-byte as swtpm does', async (t) => {
  const swtpm = requirePeers(t, 'swtpm', []);
  if (!swtpm) return;
  const dir = await mkdtemp(join(tmpdir(), 'vtpmd-vs-swtpm-'));
  t.after(async () => {
    const pid = await readFile(join(dir, 'pid'), 'utf8').catch(() => '');
    if (pid.trim() !== '') {
      try {
        process.kill(Number(pid), 'SIGKILL');
      } catch {
        // already gone after CMD_SHUTDOWN
      }
    }
    await rm(dir, { recursive: true, force: true });
  });
  await mkdir(join(dir, 'state'));
  // -d returns once swtpm's sockets exist, so no waiting is needed.
  await run(swtpm, [
    'socket',
    '--tpm2',
    '-d',
    '--server',
    `type=unixio,path=${join(dir, 'swtpm-data')}`,
    '--ctrl',
    `type=unixio,path=${join(dir, 'swtpm-ctrl')}`,
    '--tpmstate',
    `dir=${join(dir, 'state')}`,
    '--pid',
    `file=${join(dir, 'pid')}`,
  ]);
  const theirs = { data: `unix://${join(dir, 'swtpm-data')}`, ctrl: `unix://${join(dir, 'swtpm-ctrl')}` };
  const ours = await startSwtpmServer(new FakeDevice({ established: false }), {
    data: { type: 'unixio', path: join(dir, 'vtpmd-data') },
    ctrl: { type: 'unixio', path: join(dir, 'vtpmd-ctrl') },
    logger: silentLogger,
  });
  t.after(() => ours.close());

  const getRandom = Buffer.from('80010000000c0000017b0008', 'hex');
  const probes: [string, 'ctrl' | 'data', Buffer, number][] = [
    ['GET_TPMESTABLISHED before INIT', 'ctrl', u32(0x04), 4],
    ['data command before INIT', 'data', getRandom, 10],
    ['SET_LOCALITY 7', 'ctrl', Buffer.concat([u32(0x05), Buffer.of(7)]), 4],
    ['SET_LOCALITY 4', 'ctrl', Buffer.concat([u32(0x05), Buffer.of(4)]), 4],
    ['HASH_START before INIT', 'ctrl', u32(0x06), 4],
    ['unknown command 0x13', 'ctrl', u32(0x13), 4],
    ['INIT', 'ctrl', u32(0x02, 0), 4],
    ['GET_TPMESTABLISHED', 'ctrl', u32(0x04), 8],
    ['RESET_TPMESTABLISHED from locality 0', 'ctrl', Buffer.concat([u32(0x0b), Buffer.of(0)]), 4],
    ['RESET_TPMESTABLISHED from locality 3', 'ctrl', Buffer.concat([u32(0x0b), Buffer.of(3)]), 4],
    ['RESET_TPMESTABLISHED from locality 5', 'ctrl', Buffer.concat([u32(0x0b), Buffer.of(5)]), 4],
    ['GET_CONFIG', 'ctrl', u32(0x0f), 8],
    ['CANCEL_TPM_CMD', 'ctrl', u32(0x09), 4],
    ['STORE_VOLATILE', 'ctrl', u32(0x0a), 4],
    ['SET_BUFFERSIZE while running', 'ctrl', u32(0x11, 4096), 4],
    ['GET_INFO with no flags', 'ctrl', u32(0x12, 0, 0, 0, 0), 15],
    ['GET_INFO past the end', 'ctrl', u32(0x12, 0, 1, 500, 0), 4],
    ['STOP', 'ctrl', u32(0x0e), 4],
    ['data command after STOP', 'data', getRandom, 10],
    ['GET_TPMESTABLISHED after STOP', 'ctrl', u32(0x04), 4],
    ['SHUTDOWN', 'ctrl', u32(0x03), 4],
  ];
  for (const [name, channel, request, replyLength] of probes) {
    const expected = await exchange(theirs[channel], request, replyLength);
    assert.deepEqual(await exchange(channel === 'ctrl' ? ours.ctrl : ours.data, request, replyLength), expected, name);
  }
});

async function exchange(url: string, request: Buffer, replyLength: number): Promise<Buffer> {
  const client = await Client.connect(url);
  try {
    await client.write(request);
    return await client.read(replyLength);
  } finally {
    client.close();
  }
}
