import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, stat } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startSwtpmServer, type SwtpmFlags, type SwtpmServerOptions } from '../../src/transport/swtpm-server.ts';
import { CtrlCmd, PtmResult, SUPPORTED_CAPS } from '../../src/transport/swtpm-ctrl.ts';
import { DeviceStartError, EndpointError } from '../../src/transport/errors.ts';
import { SerialQueue } from '../../src/tpm/serial-queue.ts';
import { Client, command, expectedEcho, FakeDevice, gate, header, portOf, silentLogger, u32 } from './helpers.ts';

const GET_RANDOM = 0x17b;
const STARTUP_CLEAR = Buffer.from('80010000000c000001440000', 'hex');
const RC_FAILURE_RESPONSE = header(0x8001, 10, 0x101);
const RC_COMMAND_SIZE_RESPONSE = header(0x8001, 10, 0x142);

async function start(
  t: TestContext,
  device = new FakeDevice(),
  flags: SwtpmFlags = { notNeedInit: true },
  extra: Partial<SwtpmServerOptions> = {},
) {
  const server = await startSwtpmServer(device, {
    data: { type: 'tcp', port: 0 },
    ctrl: { type: 'tcp', port: 0 },
    flags,
    logger: silentLogger,
    ...extra,
  });
  t.after(() => server.close());
  return { device, server };
}

/** One control command on a fresh connection; returns exactly `replyLength` reply bytes. */
async function ctrl(url: string, code: number, body: Uint8Array = Buffer.alloc(0), replyLength = 4): Promise<Buffer> {
  const client = await Client.connect(url);
  try {
    await client.write(Buffer.concat([u32(code), body]));
    return await client.read(replyLength);
  } finally {
    client.close();
  }
}

test('a command split into single-byte writes is executed once and answered whole', async (t) => {
  const { device, server } = await start(t);
  const cmd = command(GET_RANDOM, Buffer.of(0, 8));
  const client = await Client.connect(server.data);
  for (const byte of cmd) await client.write(Buffer.of(byte));
  assert.deepEqual(await client.readResponse(), expectedEcho(cmd, 0));
  assert.equal(device.executed.length, 1);
  client.close();
});

test('several commands in one write are executed in order and answered in order', async (t) => {
  const { device, server } = await start(t);
  const cmds = [1, 2, 3].map((n) => command(0x100 + n, Buffer.of(n, n, n)));
  const client = await Client.connect(server.data);
  await client.write(Buffer.concat(cmds));
  for (const cmd of cmds) assert.deepEqual(await client.readResponse(), expectedEcho(cmd, 0));
  assert.deepEqual(
    device.executed.map((e) => e.command),
    cmds,
  );
  client.close();
});

test('a client may open a new connection for every command, as tcti-swtpm does', async (t) => {
  const { device, server } = await start(t);
  // tcti-swtpm's initialisation connects and hangs up without sending anything.
  (await Client.connect(server.data)).close();
  for (let n = 0; n < 3; n++) {
    const client = await Client.connect(server.data);
    const cmd = command(GET_RANDOM, Buffer.of(0, n));
    assert.deepEqual(await client.transact(cmd), expectedEcho(cmd, 0));
    client.close();
  }
  assert.equal(device.executed.length, 3);
});

test('the locality set on the control channel applies to later data commands on every connection', async (t) => {
  const { device, server } = await start(t);
  const cmd = command(GET_RANDOM, Buffer.of(0, 1));
  const before = await Client.connect(server.data);
  assert.deepEqual(await before.transact(cmd), expectedEcho(cmd, 0));

  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.SET_LOCALITY, Buffer.of(3)), u32(PtmResult.SUCCESS));
  assert.deepEqual(await before.transact(cmd), expectedEcho(cmd, 3));
  const after = await Client.connect(server.data);
  assert.deepEqual(await after.transact(cmd), expectedEcho(cmd, 3));
  assert.deepEqual(device.executed.map((e) => e.locality), [0, 3, 3]);
  before.close();
  after.close();
});

test('CMD_SET_LOCALITY above 4 is refused with TPM_BAD_LOCALITY and the locality stays', async (t) => {
  const { device, server } = await start(t);
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.SET_LOCALITY, Buffer.of(2)), u32(PtmResult.SUCCESS));
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.SET_LOCALITY, Buffer.of(5)), u32(PtmResult.BAD_LOCALITY));
  const client = await Client.connect(server.data);
  await client.transact(command(GET_RANDOM));
  assert.equal(device.executed[0]!.locality, 2);
  client.close();
});

test('CMD_INIT power-cycles the device and answers success', async (t) => {
  const { device, server } = await start(t);
  assert.deepEqual(device.events, ['powerOn']);
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.INIT, u32(0)), u32(PtmResult.SUCCESS));
  assert.deepEqual(device.events, ['powerOn', 'powerOff', 'powerOn']);
  assert.equal(device.powered, true);
});

test('without not-need-init, data commands before CMD_INIT get TPM_RC_FAILURE and never reach the device', async (t) => {
  const { device, server } = await start(t, new FakeDevice(), {});
  assert.equal(device.powered, false);
  const client = await Client.connect(server.data);
  assert.deepEqual(await client.transact(command(GET_RANDOM)), RC_FAILURE_RESPONSE);
  assert.equal(device.executed.length, 0);

  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.INIT, u32(0)), u32(PtmResult.SUCCESS));
  const cmd = command(GET_RANDOM, Buffer.of(0, 4));
  assert.deepEqual(await client.transact(cmd), expectedEcho(cmd, 0));
  client.close();
});

test('startup-clear powers the device on and sends TPM2_Startup(CLEAR) before any client command', async (t) => {
  const { device } = await start(t, new FakeDevice(), { startup: 'clear' });
  assert.deepEqual(device.events, ['powerOn', 'execute@0']);
  assert.deepEqual(device.executed[0]!.command, STARTUP_CLEAR);
});

test('not-need-init powers the device on and sends no command', async (t) => {
  const { device } = await start(t, new FakeDevice(), { notNeedInit: true });
  assert.deepEqual(device.events, ['powerOn']);
});

test('not-need-init leaves an already powered device as it is', async (t) => {
  const { device } = await start(t, new FakeDevice({ powered: true }), { notNeedInit: true });
  assert.deepEqual(device.events, []);
});

test('a frame whose size field is below 10 gets TPM_RC_COMMAND_SIZE and only its connection is closed', async (t) => {
  const { device, server } = await start(t);
  const good = await Client.connect(server.data);
  const bad = await Client.connect(server.data);
  await bad.write(header(0x8001, 9, GET_RANDOM));
  assert.deepEqual(await bad.read(10), RC_COMMAND_SIZE_RESPONSE);
  assert.equal(await bad.closesWithoutData(), true);
  const cmd = command(GET_RANDOM, Buffer.of(0, 2));
  assert.deepEqual(await good.transact(cmd), expectedEcho(cmd, 0));
  assert.equal(device.executed.length, 1);
  good.close();
});

test('a frame larger than the device accepts gets TPM_RC_COMMAND_SIZE and only its connection is closed', async (t) => {
  const { device, server } = await start(t, new FakeDevice({ maxCommandSize: 64 }));
  const bad = await Client.connect(server.data);
  await bad.write(header(0x8001, 65, GET_RANDOM));
  assert.deepEqual(await bad.read(10), RC_COMMAND_SIZE_RESPONSE);
  assert.equal(await bad.closesWithoutData(), true);
  const good = await Client.connect(server.data);
  const cmd = command(GET_RANDOM, Buffer.alloc(54)); // exactly 64 bytes
  assert.deepEqual(await good.transact(cmd), expectedEcho(cmd, 0));
  assert.equal(device.executed.length, 1);
  good.close();
});

test('a size field of 0xffffffff is answered, not awaited', async (t) => {
  const { device, server } = await start(t);
  const bad = await Client.connect(server.data);
  await bad.write(header(0x8001, 0xffffffff, GET_RANDOM));
  assert.deepEqual(await bad.read(10), RC_COMMAND_SIZE_RESPONSE);
  assert.equal(device.executed.length, 0);
  bad.close();
});

test('a truncated frame followed by a hang-up executes nothing and other clients keep working', async (t) => {
  const { device, server } = await start(t);
  const bad = await Client.connect(server.data);
  await bad.write(command(GET_RANDOM, Buffer.alloc(20)).subarray(0, 15));
  bad.socket.end();
  await bad.closed();
  const good = await Client.connect(server.data);
  const cmd = command(GET_RANDOM, Buffer.of(0, 3));
  assert.deepEqual(await good.transact(cmd), expectedEcho(cmd, 0));
  assert.equal(device.executed.length, 1);
  good.close();
});

test('a client idle in the middle of a frame does not hold up other clients', async (t) => {
  const { device, server } = await start(t);
  const idle = await Client.connect(server.data);
  await idle.write(command(GET_RANDOM, Buffer.alloc(20)).subarray(0, 12));
  const other = await Client.connect(server.data);
  for (let n = 0; n < 3; n++) {
    const cmd = command(GET_RANDOM, Buffer.of(0, n));
    assert.deepEqual(await other.transact(cmd), expectedEcho(cmd, 0));
  }
  assert.equal(device.executed.length, 3);
  idle.close();
  other.close();
});

test('commands from different connections reach the device one at a time', async (t) => {
  const held = gate();
  const entered = gate();
  const device = new FakeDevice({
    respond: async (cmd, locality) => {
      if (cmd[11] === 1) {
        entered.open();
        await held.promise;
      }
      return expectedEcho(cmd, locality);
    },
  });
  // Observe the queue so the second command is known to be waiting before the first is released.
  const queue = new SerialQueue();
  const queued: number[] = [];
  const secondQueued = gate();
  const run = queue.run.bind(queue);
  queue.run = (job) => {
    queued.push(queued.length);
    if (queued.length === 2) secondQueued.open();
    return run(job);
  };
  const { server } = await start(t, device, { notNeedInit: true }, { queue });
  queued.length = 0; // forget the start-up power-on

  const first = await Client.connect(server.data);
  const second = await Client.connect(server.data);
  const cmd1 = command(GET_RANDOM, Buffer.of(0, 1));
  const cmd2 = command(GET_RANDOM, Buffer.of(0, 2));
  const reply1 = first.transact(cmd1);
  await entered.promise;
  const reply2 = second.transact(cmd2);
  await secondQueued.promise;
  assert.equal(device.executed.length, 1, 'the second command must wait for the first');
  held.open();
  assert.deepEqual(await reply1, expectedEcho(cmd1, 0));
  assert.deepEqual(await reply2, expectedEcho(cmd2, 0));
  assert.equal(device.maxConcurrent, 1);
  first.close();
  second.close();
});

test('a host-level device failure is answered with TPM_RC_FAILURE and the connection stays usable', async (t) => {
  let fail = true;
  const device = new FakeDevice({
    respond: (cmd, locality) => {
      if (fail) {
        fail = false;
        throw new Error('disk full');
      }
      return expectedEcho(cmd, locality);
    },
  });
  const { server } = await start(t, device);
  const client = await Client.connect(server.data);
  assert.deepEqual(await client.transact(command(GET_RANDOM)), RC_FAILURE_RESPONSE);
  const cmd = command(GET_RANDOM, Buffer.of(0, 5));
  assert.deepEqual(await client.transact(cmd), expectedEcho(cmd, 0));
  client.close();
});

test('the disconnect option closes the data connection after each response', async (t) => {
  const { server } = await start(t, new FakeDevice(), { notNeedInit: true }, { disconnect: true });
  const client = await Client.connect(server.data);
  const cmd = command(GET_RANDOM);
  await client.write(Buffer.concat([cmd, cmd]));
  assert.deepEqual(await client.readResponse(), expectedEcho(cmd, 0));
  assert.equal(await client.closesWithoutData(), true);
});

test('with both ports 0 the control channel listens on data port + 1, where tcti-swtpm looks for it', async (t) => {
  const { server } = await start(t);
  assert.equal(portOf(server.ctrl), portOf(server.data) + 1);
});

test('CMD_GET_CAPABILITY answers a u64 of exactly the implemented commands', async (t) => {
  const { server } = await start(t);
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.GET_CAPABILITY, Buffer.alloc(0), 8), Buffer.concat([u32(0), u32(SUPPORTED_CAPS)]));
  assert.equal(SUPPORTED_CAPS, 0x6cef);
});

test('CMD_GET_TPMESTABLISHED answers result, bit and padding, and BAD_ORDINAL before CMD_INIT', async (t) => {
  const { device, server } = await start(t, new FakeDevice(), {});
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.GET_TPMESTABLISHED), u32(PtmResult.BAD_ORDINAL));
  await ctrl(server.ctrl, CtrlCmd.INIT, u32(0));
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.GET_TPMESTABLISHED, Buffer.alloc(0), 8), Buffer.from('0000000001000000', 'hex'));
  device.established = false;
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.GET_TPMESTABLISHED, Buffer.alloc(0), 8), Buffer.alloc(8));
});

test('CMD_RESET_TPMESTABLISHED succeeds from locality 3 and is refused with BAD_LOCALITY from locality 0', async (t) => {
  const { device, server } = await start(t);
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.RESET_TPMESTABLISHED, Buffer.of(0)), u32(PtmResult.BAD_LOCALITY));
  assert.equal(device.established, true);
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.RESET_TPMESTABLISHED, Buffer.of(3)), u32(PtmResult.SUCCESS));
  assert.equal(device.established, false);
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.RESET_TPMESTABLISHED, Buffer.of(7)), u32(PtmResult.BAD_LOCALITY));
});

test('CMD_STOP flushes and powers off the device; data commands then fail until CMD_INIT', async (t) => {
  const { device, server } = await start(t);
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.STOP), u32(PtmResult.SUCCESS));
  assert.deepEqual(device.events, ['powerOn', 'flush', 'powerOff']);
  const client = await Client.connect(server.data);
  assert.deepEqual(await client.transact(command(GET_RANDOM)), RC_FAILURE_RESPONSE);
  await ctrl(server.ctrl, CtrlCmd.INIT, u32(0));
  const cmd = command(GET_RANDOM, Buffer.of(0, 9));
  assert.deepEqual(await client.transact(cmd), expectedEcho(cmd, 0));
  client.close();
});

test('CMD_SHUTDOWN answers success, flushes the device and closes the whole server', async (t) => {
  const { device, server } = await start(t);
  const idle = await Client.connect(server.data);
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.SHUTDOWN), u32(PtmResult.SUCCESS));
  await server.closed;
  assert.ok(device.events.includes('flush'));
  await idle.closed();
  await assert.rejects(Client.connect(server.data), /ECONNREFUSED/);
});

test('CMD_STORE_VOLATILE flushes the device, CMD_CANCEL_TPM_CMD is acknowledged, CMD_GET_CONFIG reports no keys', async (t) => {
  const { device, server } = await start(t);
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.STORE_VOLATILE), u32(PtmResult.SUCCESS));
  assert.equal(device.events.at(-1), 'flush');
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.CANCEL_TPM_CMD), u32(PtmResult.SUCCESS));
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.GET_CONFIG, Buffer.alloc(0), 8), Buffer.alloc(8));
});

test('CMD_SET_BUFFERSIZE reports the device buffer size and refuses to set it while the TPM runs', async (t) => {
  const { server } = await start(t, new FakeDevice({ maxCommandSize: 4096 }));
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.SET_BUFFERSIZE, u32(0), 16), u32(0, 4096, 4096, 4096));
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.SET_BUFFERSIZE, u32(2048)), u32(PtmResult.BAD_ORDINAL));
});

test('CMD_GET_INFO returns libtpms-shaped JSON with total and chunk lengths', async (t) => {
  const { server } = await start(t, new FakeDevice(), { notNeedInit: true }, { info: { specLevel: 0, specRevision: 164 } });
  const json = '{"TPMSpecification":{"family":"2.0","level":0,"revision":164},"TPMAttributes":{"model":"vtpmd"}}';
  const length = json.length + 1;
  const client = await Client.connect(server.ctrl);
  await client.write(Buffer.concat([u32(CtrlCmd.GET_INFO), u32(0, 3, 0, 0)]));
  assert.deepEqual(await client.read(12), u32(0, length, length));
  assert.equal((await client.read(length)).toString('utf8'), `${json}\0`);
  // Past the end of the text: BAD_PARAMETER, as swtpm answers.
  await client.write(Buffer.concat([u32(CtrlCmd.GET_INFO), u32(0, 1, 500, 0)]));
  assert.deepEqual(await client.read(4), u32(PtmResult.BAD_PARAMETER));
  client.close();
});

test('control requests split across writes and pipelined on one connection are all answered', async (t) => {
  const { server } = await start(t);
  const client = await Client.connect(server.ctrl);
  const requests = Buffer.concat([u32(CtrlCmd.SET_LOCALITY), Buffer.of(1), u32(CtrlCmd.GET_CONFIG), u32(CtrlCmd.SET_LOCALITY), Buffer.of(9)]);
  for (const byte of requests) await client.write(Buffer.of(byte));
  assert.deepEqual(await client.read(4 + 8 + 4), Buffer.concat([u32(0), Buffer.alloc(8), u32(PtmResult.BAD_LOCALITY)]));
  client.close();
});

test('unsupported hashing and state-blob commands are answered BAD_ORDINAL; variable-length ones also close', async (t) => {
  const { server } = await start(t);
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.HASH_START), u32(PtmResult.BAD_ORDINAL));
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.GET_STATEBLOB, u32(0, 1, 0), 16), u32(PtmResult.BAD_ORDINAL, 0, 0, 0));
  const client = await Client.connect(server.ctrl);
  await client.write(Buffer.concat([u32(CtrlCmd.SET_STATEBLOB), u32(0, 1, 3), Buffer.of(1, 2, 3)]));
  assert.deepEqual(await client.read(4), u32(PtmResult.BAD_ORDINAL));
  assert.equal(await client.closesWithoutData(), true);
});

test('an unknown control command is answered BAD_ORDINAL and its connection closed; the server keeps serving', async (t) => {
  const { server } = await start(t);
  const client = await Client.connect(server.ctrl);
  await client.write(u32(0x99, 0x12345678));
  assert.deepEqual(await client.read(4), u32(PtmResult.BAD_ORDINAL));
  assert.equal(await client.closesWithoutData(), true);
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.SET_LOCALITY, Buffer.of(0)), u32(PtmResult.SUCCESS));
});

test('both channels work over Unix sockets, created with mode 0770 and removed on close', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vtpmd-swtpm-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const device = new FakeDevice();
  const server = await startSwtpmServer(device, {
    data: { type: 'unixio', path: join(dir, 'data.sock') },
    ctrl: { type: 'unixio', path: join(dir, 'ctrl.sock') },
    flags: { notNeedInit: true },
    logger: silentLogger,
  });
  assert.equal(server.data, `unix://${join(dir, 'data.sock')}`);
  assert.equal((await stat(join(dir, 'data.sock'))).mode & 0o777, 0o770);
  assert.deepEqual(await ctrl(server.ctrl, CtrlCmd.SET_LOCALITY, Buffer.of(1)), u32(0));
  const client = await Client.connect(server.data);
  const cmd = command(GET_RANDOM, Buffer.of(0, 4));
  assert.deepEqual(await client.transact(cmd), expectedEcho(cmd, 1));
  client.close();
  await server.close();
  await assert.rejects(stat(join(dir, 'data.sock')), /ENOENT/);
});

test('a stale Unix socket file is replaced, but a live one or a regular file is refused with a clear error', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'vtpmd-swtpm-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const stale = join(dir, 'stale.sock');
  // A crashed owner: a process that listened and died without cleaning up.
  spawnSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
  assert.ok((await stat(stale)).isSocket());
  const options = (data: string, ctrlPath: string) => ({
    data: { type: 'unixio' as const, path: data },
    ctrl: { type: 'unixio' as const, path: ctrlPath },
    logger: silentLogger,
  });
  const server = await startSwtpmServer(new FakeDevice(), options(stale, join(dir, 'c1.sock')));
  t.after(() => server.close());

  await assert.rejects(startSwtpmServer(new FakeDevice(), options(stale, join(dir, 'c2.sock'))), (err: unknown) => {
    assert.ok(err instanceof EndpointError);
    assert.match(err.message, /another process is serving that socket/);
    return true;
  });
  const file = join(dir, 'plain');
  await writeFile(file, 'not a socket');
  await assert.rejects(startSwtpmServer(new FakeDevice(), options(file, join(dir, 'c3.sock'))), /is not a socket; remove it or choose another path/);
});

test('a busy TCP port is reported as an EndpointError that says what to do', async (t) => {
  const { server } = await start(t);
  await assert.rejects(
    startSwtpmServer(new FakeDevice(), {
      data: { type: 'tcp', port: portOf(server.data) },
      ctrl: { type: 'tcp', port: 0 },
      logger: silentLogger,
    }),
    (err: unknown) => {
      assert.ok(err instanceof EndpointError);
      assert.equal(err.code, 'ADDRESS_IN_USE');
      assert.match(err.message, /already in use; stop whatever holds it or choose another port/);
      return true;
    },
  );
});

test('a TPM 1.2 device gets TPM 1.2 error responses', async (t) => {
  const { server } = await start(t, new FakeDevice({ family: 'tpm12' }), {});
  const client = await Client.connect(server.data);
  await client.write(Buffer.concat([header(0x00c1, 10, 0x99)]));
  assert.deepEqual(await client.readResponse(), header(0x00c4, 10, 0x09));
  client.close();
});

test('a device that fails to power on at start makes the start fail with a DeviceStartError', async () => {
  const device = new FakeDevice();
  device.powerOn = async () => {
    throw new Error('NV file is corrupt');
  };
  await assert.rejects(
    startSwtpmServer(device, { data: { type: 'tcp', port: 0 }, ctrl: { type: 'tcp', port: 0 }, flags: { notNeedInit: true }, logger: silentLogger }),
    (err: unknown) => {
      assert.ok(err instanceof DeviceStartError);
      assert.match(err.message, /the TPM device failed to start: NV file is corrupt; check its state directory/);
      return true;
    },
  );
});
