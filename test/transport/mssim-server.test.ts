import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { startMssimServer, MssimCmd } from '../../src/transport/mssim-server.ts';
import { Client, command, expectedEcho, FakeDevice, header, portOf, silentLogger, u32 } from './helpers.ts';

const GET_RANDOM = 0x17b;

async function start(t: TestContext, device = new FakeDevice()) {
  const server = await startMssimServer(device, { port: 0, logger: silentLogger });
  t.after(() => server.close());
  return { device, server };
}

/** TPM_SEND_COMMAND: u32 8, u8 locality, u32 size, command. */
function sendCommand(cmd: Uint8Array, locality = 0): Buffer {
  return Buffer.concat([u32(MssimCmd.SEND_COMMAND), Buffer.of(locality), u32(cmd.length), cmd]);
}

/** Reads {u32 size, response, u32 0} and returns the response after checking the trailing 0. */
async function readEnvelope(client: Client): Promise<Buffer> {
  const size = (await client.read(4)).readUInt32BE(0);
  const response = await client.read(size);
  assert.deepEqual(await client.read(4), u32(0), 'a response is followed by a u32 0');
  return response;
}

async function signal(client: Client, code: number): Promise<Buffer> {
  await client.write(u32(code));
  return client.read(4);
}

test('port 0 puts the platform port at command port + 1, where tcti-mssim looks for it', async (t) => {
  const { server } = await start(t);
  assert.equal(portOf(server.command), server.port);
  assert.equal(portOf(server.platform), server.port + 1);
});

test('SIGNAL_POWER_ON powers the device on and is acknowledged with 0', async (t) => {
  const { device, server } = await start(t);
  const platform = await Client.connect(server.platform);
  assert.deepEqual(await signal(platform, MssimCmd.SIGNAL_POWER_ON), u32(0));
  assert.deepEqual(device.events, ['powerOn']);
  platform.close();
});

test('SIGNAL_POWER_ON on a powered device changes nothing, as in the reference simulator', async (t) => {
  const { device, server } = await start(t, new FakeDevice({ powered: true }));
  const platform = await Client.connect(server.platform);
  assert.deepEqual(await signal(platform, MssimCmd.SIGNAL_POWER_ON), u32(0));
  assert.deepEqual(device.events, []);
  platform.close();
});

test('TPM_SEND_COMMAND passes the locality byte to the device and answers size, response, 0', async (t) => {
  const { device, server } = await start(t, new FakeDevice({ powered: true }));
  const tpm = await Client.connect(server.command);
  const cmd = command(GET_RANDOM, Buffer.of(0, 8));
  await tpm.write(sendCommand(cmd, 3));
  assert.deepEqual(await readEnvelope(tpm), expectedEcho(cmd, 3));
  assert.deepEqual(device.executed.map((e) => e.locality), [3]);
  tpm.close();
});

test('SIGNAL_POWER_OFF powers the device off; commands then get an empty response without reaching it', async (t) => {
  const { device, server } = await start(t, new FakeDevice({ powered: true }));
  const platform = await Client.connect(server.platform);
  assert.deepEqual(await signal(platform, MssimCmd.SIGNAL_POWER_OFF), u32(0));
  assert.equal(device.powered, false);
  const tpm = await Client.connect(server.command);
  await tpm.write(sendCommand(command(GET_RANDOM)));
  assert.deepEqual(await readEnvelope(tpm), Buffer.alloc(0));
  assert.equal(device.executed.length, 0);
  tpm.close();
  platform.close();
});

test('SIGNAL_RESET power-cycles a powered device and is ignored on an unpowered one', async (t) => {
  const { device, server } = await start(t);
  const platform = await Client.connect(server.platform);
  assert.deepEqual(await signal(platform, MssimCmd.SIGNAL_RESET), u32(0));
  assert.deepEqual(device.events, []);
  await signal(platform, MssimCmd.SIGNAL_POWER_ON);
  assert.deepEqual(await signal(platform, MssimCmd.SIGNAL_RESET), u32(0));
  assert.deepEqual(device.events, ['powerOn', 'powerOff', 'powerOn']);
  platform.close();
});

test('the signals tcti-mssim and test suites send (NV, cancel, physical presence) are acknowledged with 0', async (t) => {
  const { server } = await start(t);
  const platform = await Client.connect(server.platform);
  for (const code of [
    MssimCmd.SIGNAL_NV_ON,
    MssimCmd.SIGNAL_NV_OFF,
    MssimCmd.SIGNAL_CANCEL_ON,
    MssimCmd.SIGNAL_CANCEL_OFF,
    MssimCmd.SIGNAL_PHYS_PRES_ON,
    MssimCmd.SIGNAL_PHYS_PRES_OFF,
    MssimCmd.SIGNAL_RESTART,
  ]) {
    assert.deepEqual(await signal(platform, code), u32(0), `signal ${code}`);
  }
  platform.close();
});

test('an unknown platform signal is answered 1 and its connection closed; the server keeps serving', async (t) => {
  const { server } = await start(t);
  const platform = await Client.connect(server.platform);
  assert.deepEqual(await signal(platform, 30), u32(1));
  assert.equal(await platform.closesWithoutData(), true);
  const again = await Client.connect(server.platform);
  assert.deepEqual(await signal(again, MssimCmd.SIGNAL_POWER_ON), u32(0));
  again.close();
});

test('TPM_SESSION_END closes the connection without a reply on both ports', async (t) => {
  const { server } = await start(t);
  for (const url of [server.command, server.platform]) {
    const client = await Client.connect(url);
    await client.write(u32(MssimCmd.SESSION_END));
    assert.equal(await client.closesWithoutData(), true);
  }
});

test('REMOTE_HANDSHAKE answers server version 1, the endpoint info and 0', async (t) => {
  const { server } = await start(t);
  const tpm = await Client.connect(server.command);
  await tpm.write(u32(MssimCmd.REMOTE_HANDSHAKE, 1));
  assert.deepEqual(await tpm.read(12), u32(1, 0x05, 0));
  tpm.close();
});

test('commands split into single bytes or pipelined in one write are answered in order', async (t) => {
  const { server } = await start(t, new FakeDevice({ powered: true }));
  const tpm = await Client.connect(server.command);
  const cmds = [1, 2, 3].map((n) => command(GET_RANDOM, Buffer.of(0, n)));
  for (const byte of sendCommand(cmds[0]!, 1)) await tpm.write(Buffer.of(byte));
  assert.deepEqual(await readEnvelope(tpm), expectedEcho(cmds[0]!, 1));
  await tpm.write(Buffer.concat([sendCommand(cmds[1]!, 0), sendCommand(cmds[2]!, 2)]));
  assert.deepEqual(await readEnvelope(tpm), expectedEcho(cmds[1]!, 0));
  assert.deepEqual(await readEnvelope(tpm), expectedEcho(cmds[2]!, 2));
  tpm.close();
});

test('a locality above 4 is answered TPM_RC_LOCALITY without reaching the device', async (t) => {
  const { device, server } = await start(t, new FakeDevice({ powered: true }));
  const tpm = await Client.connect(server.command);
  await tpm.write(sendCommand(command(GET_RANDOM), 5));
  assert.deepEqual(await readEnvelope(tpm), header(0x8001, 10, 0x907));
  assert.equal(device.executed.length, 0);
  tpm.close();
});

test('a command shorter than a header is answered TPM_RC_COMMAND_SIZE and the connection stays usable', async (t) => {
  const { device, server } = await start(t, new FakeDevice({ powered: true }));
  const tpm = await Client.connect(server.command);
  await tpm.write(sendCommand(Buffer.of(0x80, 0x01, 0)));
  assert.deepEqual(await readEnvelope(tpm), header(0x8001, 10, 0x142));
  const cmd = command(GET_RANDOM);
  await tpm.write(sendCommand(cmd));
  assert.deepEqual(await readEnvelope(tpm), expectedEcho(cmd, 0));
  assert.equal(device.executed.length, 1);
  tpm.close();
});

test('a command whose header size disagrees with the envelope is answered TPM_RC_COMMAND_SIZE without reaching the device', async (t) => {
  const { device, server } = await start(t, new FakeDevice({ powered: true }));
  const tpm = await Client.connect(server.command);
  await tpm.write(sendCommand(Buffer.concat([header(0x8001, 14, GET_RANDOM), Buffer.of(0, 8)])));
  assert.deepEqual(await readEnvelope(tpm), header(0x8001, 10, 0x142));
  assert.equal(device.executed.length, 0);
  tpm.close();
});

test('an oversized command is answered TPM_RC_COMMAND_SIZE and only its connection is closed', async (t) => {
  const { device, server } = await start(t, new FakeDevice({ powered: true, maxCommandSize: 64 }));
  const good = await Client.connect(server.command);
  const bad = await Client.connect(server.command);
  await bad.write(Buffer.concat([u32(MssimCmd.SEND_COMMAND), Buffer.of(0), u32(0xffffffff)]));
  assert.deepEqual(await readEnvelope(bad), header(0x8001, 10, 0x142));
  assert.equal(await bad.closesWithoutData(), true);
  const cmd = command(GET_RANDOM);
  await good.write(sendCommand(cmd));
  assert.deepEqual(await readEnvelope(good), expectedEcho(cmd, 0));
  assert.equal(device.executed.length, 1);
  good.close();
});

test('a command cut short by a hang-up executes nothing and other clients keep working', async (t) => {
  const { device, server } = await start(t, new FakeDevice({ powered: true }));
  const bad = await Client.connect(server.command);
  await bad.write(sendCommand(command(GET_RANDOM, Buffer.alloc(30))).subarray(0, 20));
  bad.socket.end();
  await bad.closed();
  const good = await Client.connect(server.command);
  const cmd = command(GET_RANDOM);
  await good.write(sendCommand(cmd));
  assert.deepEqual(await readEnvelope(good), expectedEcho(cmd, 0));
  assert.equal(device.executed.length, 1);
  good.close();
});

test('a client idle in the middle of a command does not hold up other clients', async (t) => {
  const { server } = await start(t, new FakeDevice({ powered: true }));
  const idle = await Client.connect(server.command);
  await idle.write(sendCommand(command(GET_RANDOM, Buffer.alloc(30))).subarray(0, 12));
  const other = await Client.connect(server.command);
  const cmd = command(GET_RANDOM);
  await other.write(sendCommand(cmd));
  assert.deepEqual(await readEnvelope(other), expectedEcho(cmd, 0));
  idle.close();
  other.close();
});

test('unknown command-port messages close the connection without a reply', async (t) => {
  const { server } = await start(t);
  const tpm = await Client.connect(server.command);
  await tpm.write(u32(99));
  assert.equal(await tpm.closesWithoutData(), true);
});

test('D-RTM hash signals on the command port are refused with 1 and the connection stays usable', async (t) => {
  const { server } = await start(t, new FakeDevice({ powered: true }));
  const tpm = await Client.connect(server.command);
  assert.deepEqual(await signal(tpm, MssimCmd.SIGNAL_HASH_START), u32(1));
  await tpm.write(Buffer.concat([u32(MssimCmd.SIGNAL_HASH_DATA, 3), Buffer.of(1, 2, 3)]));
  assert.deepEqual(await tpm.read(4), u32(1));
  assert.deepEqual(await signal(tpm, MssimCmd.SIGNAL_HASH_END), u32(1));
  const cmd = command(GET_RANDOM);
  await tpm.write(sendCommand(cmd));
  assert.deepEqual(await readEnvelope(tpm), expectedEcho(cmd, 0));
  tpm.close();
});

test('TPM_STOP flushes the device and closes the server', async (t) => {
  const { device, server } = await start(t);
  const platform = await Client.connect(server.platform);
  await platform.write(u32(MssimCmd.STOP));
  await server.closed;
  assert.deepEqual(device.events, ['flush']);
  assert.equal(await platform.closesWithoutData(), true);
  await assert.rejects(Client.connect(server.command), /ECONNREFUSED/);
});

test('a host-level device failure during a power signal is answered 1', async (t) => {
  const device = new FakeDevice();
  device.powerOn = async () => {
    throw new Error('NV file unreadable');
  };
  const { server } = await start(t, device);
  const platform = await Client.connect(server.platform);
  assert.deepEqual(await signal(platform, MssimCmd.SIGNAL_POWER_ON), u32(1));
  platform.close();
});
