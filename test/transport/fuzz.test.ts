/**
 * Property-based fuzzing of the three stream decoders (swtpm data channel, swtpm control channel,
 * mssim command and platform ports): whatever bytes a client sends, in whatever chunking, the
 * server neither crashes nor hands the device anything but complete, size-consistent commands,
 * and the next well-behaved client is served.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import fc from 'fast-check';
import { startSwtpmServer } from '../../src/transport/swtpm-server.ts';
import { startMssimServer } from '../../src/transport/mssim-server.ts';
import { serveControlConnection } from '../../src/transport/swtpm-ctrl.ts';
import { SwtpmTpm } from '../../src/transport/swtpm-tpm.ts';
import { SerialQueue } from '../../src/tpm/serial-queue.ts';
import { Client, command, expectedEcho, FakeDevice, header, silentLogger, u32 } from './helpers.ts';

const MAX = 256;
const RUNS = 60;

/** Garbage with structure: random bytes, valid commands, headers with arbitrary size fields. */
const tpmPiece = fc.oneof(
  fc.uint8Array({ maxLength: 40 }),
  fc.uint8Array({ maxLength: 30 }).map((params) => command(0x17b, params)),
  fc.integer({ min: 0, max: 0xffffffff }).map((size) => header(0x8001, size, 0x17b)),
);

/** Control and mssim messages: a known or random code followed by random bytes. */
const codedPiece = (codes: number[]) =>
  fc.oneof(
    fc.uint8Array({ maxLength: 24 }),
    fc.tuple(fc.constantFrom(...codes), fc.uint8Array({ maxLength: 16 })).map(([code, rest]) => Buffer.concat([u32(code), rest])),
  );

/** Concatenates the pieces and re-splits the stream at arbitrary points. */
const stream = (piece: fc.Arbitrary<Uint8Array>) =>
  fc
    .tuple(fc.array(piece, { maxLength: 8 }), fc.array(fc.nat(), { maxLength: 6 }))
    .map(([pieces, cuts]) => {
      const bytes = Buffer.concat(pieces);
      const points = [...new Set(cuts.map((c) => (bytes.length ? c % bytes.length : 0)))].sort((a, b) => a - b);
      const chunks: Buffer[] = [];
      let from = 0;
      for (const at of [...points, bytes.length]) {
        if (at > from) chunks.push(bytes.subarray(from, at));
        from = at;
      }
      return chunks;
    });

/** Sends the chunks, half-closes, and waits until the server has closed its side too. */
async function sendGarbage(url: string, chunks: Buffer[]): Promise<void> {
  const client = await Client.connect(url);
  try {
    for (const chunk of chunks) await client.write(chunk);
  } catch {
    // The server may hang up mid-stream (e.g. after an oversized frame); that is allowed.
  }
  client.socket.end();
  client.socket.resume();
  await client.closed();
}

function assertWellFramed(device: FakeDevice): void {
  for (const { command: cmd, locality } of device.executed) {
    assert.ok(cmd.length >= 10 && cmd.length <= MAX, `executed a ${cmd.length}-byte command`);
    assert.equal(cmd.readUInt32BE(2), cmd.length, 'executed a command whose size field disagrees with its length');
    assert.ok(locality >= 0 && locality <= 4);
  }
}

test('whatever a data-channel client sends, only well-framed commands reach the device and the next client is served', async () => {
  const device = new FakeDevice({ maxCommandSize: MAX });
  const server = await startSwtpmServer(device, {
    data: { type: 'tcp', port: 0 },
    ctrl: { type: 'tcp', port: 0 },
    flags: { notNeedInit: true },
    logger: silentLogger,
  });
  try {
    await fc.assert(
      fc.asyncProperty(stream(tpmPiece), async (chunks) => {
        await sendGarbage(server.data, chunks);
        assertWellFramed(device);
        const good = await Client.connect(server.data);
        const cmd = command(0x17b, Buffer.of(0, 1));
        assert.deepEqual(await good.transact(cmd), expectedEcho(cmd, 0));
        good.close();
      }),
      { numRuns: RUNS },
    );
  } finally {
    await server.close();
  }
});

test('whatever a control-channel client sends, the locality stays valid and the next request is answered', async () => {
  const device = new FakeDevice({ powered: true, maxCommandSize: MAX });
  const tpm = new SwtpmTpm(device, new SerialQueue(), silentLogger);
  await tpm.start(undefined);
  const handlers: Promise<void>[] = [];
  // CMD_SHUTDOWN would end a real server; here it is only counted, so every run can go on.
  const net = createServer((socket) =>
    handlers.push(serveControlConnection(socket, { tpm, info: {}, logger: silentLogger, shutdown: () => undefined })),
  );
  await new Promise<void>((resolve) => net.listen(0, '127.0.0.1', resolve));
  const url = `tcp://127.0.0.1:${(net.address() as AddressInfo).port}`;
  try {
    await fc.assert(
      fc.asyncProperty(stream(codedPiece([...Array(0x14).keys()])), async (chunks) => {
        await sendGarbage(url, chunks);
        await Promise.all(handlers);
        assert.ok(tpm.locality >= 0 && tpm.locality <= 4);
        const good = await Client.connect(url);
        await good.write(Buffer.concat([u32(5), Buffer.of(0)]));
        assert.deepEqual(await good.read(4), u32(0));
        good.close();
      }),
      { numRuns: RUNS },
    );
  } finally {
    await new Promise((resolve) => net.close(resolve));
  }
});

test('whatever an mssim client sends on either port, only well-framed commands at localities 0-4 reach the device', async () => {
  const codes = [1, 2, 3, 5, 6, 7, 8, 9, 11, 15, 16, 17, 20, 21, 99];
  const sendCommand = fc
    .tuple(fc.nat(255), tpmPiece)
    .map(([locality, cmd]) => Buffer.concat([u32(8), Buffer.of(locality), u32(cmd.length), cmd]));
  await fc.assert(
    fc.asyncProperty(stream(fc.oneof(codedPiece(codes), sendCommand)), fc.boolean(), async (chunks, platform) => {
      const device = new FakeDevice({ powered: true, maxCommandSize: MAX });
      const server = await startMssimServer(device, { port: 0, logger: silentLogger });
      try {
        await sendGarbage(platform ? server.platform : server.command, chunks);
      } finally {
        await server.close();
      }
      assertWellFramed(device);
    }),
    { numRuns: RUNS },
  );
});
