import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { AttachedTpm, AttachedTpmError, behindResourceManager, parseAttachedTpm } from '../../src/hwtpm/attached-tpm.ts';
import { Tpm2Client, Tpm2CommandError } from '../../src/hwtpm/tpm2-client.ts';
import { CC } from '../../src/tpm/tpm2/constants.ts';

describe('parseAttachedTpm', () => {
  test('reads the swtpm TCTI configuration forms', () => {
    assert.deepEqual(parseAttachedTpm('swtpm'), { host: '127.0.0.1', port: 2321 });
    assert.deepEqual(parseAttachedTpm('swtpm:host=tpm.lab,port=2400'), { host: 'tpm.lab', port: 2400 });
    assert.deepEqual(parseAttachedTpm('swtpm:port=2400'), { host: '127.0.0.1', port: 2400 });
    assert.deepEqual(parseAttachedTpm('swtpm:path=/run/tpm.sock'), { path: '/run/tpm.sock' });
    assert.deepEqual(parseAttachedTpm('device'), { device: '/dev/tpmrm0' });
    assert.deepEqual(parseAttachedTpm('device:/dev/tpm0'), { device: '/dev/tpm0' });
  });

  test('names what is wrong', () => {
    const bad: [string, RegExp][] = [
      ['mssim:host=127.0.0.1', /the mssim interface is not supported/],
      ['swtpm:port=0', /port must be 1–65535/],
      ['swtpm:port=12ab', /port must be 1–65535/],
      ['swtpm:host=a,host=b', /host given twice/],
      ['swtpm:speed=9', /unknown or empty field "speed=9"/],
      ['swtpm:path=/x,port=1', /path= excludes host= and port=/],
      ['swtpm:path=', /path= is empty/],
      ['SWTPM host', /expected device:\/dev\/tpmrm0, swtpm:host=HOST,port=PORT/],
    ];
    for (const [spec, why] of bad) assert.throws(() => parseAttachedTpm(spec), (e) => e instanceof AttachedTpmError && why.test(e.message), spec);
  });
});

const CC_GET_CAPABILITY = 0x17a;
const CC_FLUSH_CONTEXT = 0x165;

/** A GetCapability(TPM_CAP_HANDLES) response listing `handles`. */
function handlesResponse(handles: readonly number[]): Buffer {
  const body = Buffer.alloc(9 + 4 * handles.length);
  body.writeUInt32BE(1, 1);
  body.writeUInt32BE(handles.length, 5);
  handles.forEach((h, i) => body.writeUInt32BE(h, 9 + 4 * i));
  return response(0, body);
}

/**
 * A TPM stand-in on a socket that answers each command as `answer` says (or hangs up). It lists
 * no loaded objects or sessions unless `loaded` gives some, and records what is flushed.
 */
function fakeTpm(answer: (command: Buffer, socket: Socket) => void, loaded: (first: number) => number[] = () => []): Promise<{ server: Server; port: number; flushed: number[] }> {
  const flushed: number[] = [];
  const server = createServer((socket) => {
    let buffered = Buffer.alloc(0);
    socket.on('data', (d) => {
      buffered = Buffer.concat([buffered, d]);
      while (buffered.length >= 10 && buffered.length >= buffered.readUInt32BE(2)) {
        const size = buffered.readUInt32BE(2);
        const command = buffered.subarray(0, size);
        const cc = command.readUInt32BE(6);
        if (cc === CC_GET_CAPABILITY) socket.write(handlesResponse(loaded(command.readUInt32BE(14))));
        else if (cc === CC_FLUSH_CONTEXT) {
          flushed.push(command.readUInt32BE(10));
          socket.write(response(0));
        } else answer(command, socket);
        buffered = buffered.subarray(size);
      }
    });
    socket.on('error', () => undefined);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ server, port: (server.address() as { port: number }).port, flushed })));
}

/** A TPM2 response: tag, size, rc, then `body`. */
function response(rc: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(10 + body.length);
  b.writeUInt16BE(0x8001, 0);
  b.writeUInt32BE(b.length, 2);
  b.writeUInt32BE(rc, 6);
  body.copy(b, 10);
  return b;
}

const GET_RANDOM = Buffer.from('80010000000c0000017b0008', 'hex');

describe('AttachedTpm', () => {
  let commands = 0;
  let tpm: { server: Server; port: number };
  before(async () => {
    tpm = await fakeTpm((command, socket) => {
      commands++;
      const nth = Number(command.readUInt16BE(10));
      if (nth === 0xdead) return void socket.end(response(0).subarray(0, 6));
      if (nth === 0xbeef) return void socket.write(Buffer.from('8001ffffffff00000000', 'hex'));
      if (nth === 0x0922 && commands % 3 !== 0) return void socket.write(response(0x922));
      // NV rate-limited for the first three sends.
      if ((nth === 0x0920 || nth === 0x0923) && commands <= 3) return void socket.write(response(nth));
      if (nth === 0x0921 || nth === 0x09a2 || nth === 0x0977) return void socket.write(response(nth));
      // Split across writes, as TCP may deliver it.
      const r = response(0, Buffer.from('0008a1a2a3a4a5a6a7a8', 'hex'));
      socket.write(r.subarray(0, 3));
      setTimeout(() => socket.write(r.subarray(3)), 5);
    });
  });
  after(() => tpm.server.close());

  const command = (param: number) => {
    const c = Buffer.from(GET_RANDOM);
    c.writeUInt16BE(param, 10);
    return c;
  };

  test('frames a response delivered in pieces', async () => {
    const t = await AttachedTpm.open({ host: '127.0.0.1', port: tpm.port });
    try {
      const r = Buffer.from(await t.execute(command(8), 0));
      assert.equal(r.length, 20);
      assert.equal(r.readUInt32BE(6), 0);
      assert.equal(r.subarray(12).toString('hex'), 'a1a2a3a4a5a6a7a8');
    } finally {
      await t.close();
    }
  });

  test('a response cut short or framed impossibly fails that command, and the next one connects again', async () => {
    const t = await AttachedTpm.open({ host: '127.0.0.1', port: tpm.port });
    try {
      await assert.rejects(t.execute(command(0xdead), 0), /the host TPM at swtpm:host=127\.0\.0\.1,port=\d+ failed during a command/);
      assert.equal(Buffer.from(await t.execute(command(8), 0)).length, 20);
      await assert.rejects(t.execute(command(0xbeef), 0), /framed a response of 4294967295 bytes/);
      assert.equal(Buffer.from(await t.execute(command(8), 0)).length, 20);
    } finally {
      await t.close();
    }
    await assert.rejects(t.execute(command(8), 0), /was detached/);
  });

  test('the client sends a command again while the TPM answers TPM_RC_RETRY', async () => {
    const t = await AttachedTpm.open({ host: '127.0.0.1', port: tpm.port });
    try {
      commands = 1;
      const r = await t.exclusive((exec) => new Tpm2Client(exec).call(CC.GetRandom, [], [], { bytesRequested: 0x0922 }));
      assert.equal((r.params.randomBytes as Buffer).toString('hex'), 'a1a2a3a4a5a6a7a8');
      assert.equal(commands, 3, 'sent until the TPM ran it');
    } finally {
      await t.close();
    }
  });

  for (const [rc, name] of [[0x920, 'TPM_RC_NV_RATE'], [0x923, 'TPM_RC_NV_UNAVAILABLE']] as const) {
    test(`the client waits for NV that answers ${name}, longer each time, and sends the command again`, async () => {
      const t = await AttachedTpm.open({ host: '127.0.0.1', port: tpm.port });
      try {
        commands = 0;
        const started = performance.now();
        const r = await t.exclusive((exec) => new Tpm2Client(exec).call(CC.GetRandom, [], [], { bytesRequested: rc }));
        assert.equal((r.params.randomBytes as Buffer).toString('hex'), 'a1a2a3a4a5a6a7a8');
        assert.equal(commands, 4, 'sent until the TPM ran it');
        assert.ok(performance.now() - started >= 10 + 20 + 40 - 3, 'waits of 10, 20 and 40 ms between the sends');
      } finally {
        await t.close();
      }
    });
  }

  test('a channel opened to a TPM without a resource manager first flushes the objects and sessions left loaded in it', async () => {
    const left = new Map([
      [0x80000000, [0x80000001, 0x80000002]],
      [0x02000000, [0x02000000, 0x03000001]],
    ]);
    const other = await fakeTpm((_command, socket) => socket.write(response(0)), (first) => left.get(first) ?? []);
    try {
      const t = await AttachedTpm.open({ host: '127.0.0.1', port: other.port });
      assert.deepEqual(other.flushed, [0x80000001, 0x80000002, 0x02000000, 0x03000001]);
      assert.equal(t.leftoversFlushed, 4);
      await t.close();
    } finally {
      other.server.close();
    }
    assert.equal(behindResourceManager({ device: '/dev/tpmrm0' }), true, "the kernel's resource manager flushes a closed connection's own");
    assert.equal(behindResourceManager({ device: '/dev/tpm0' }), false);
    assert.equal(behindResourceManager({ path: '/run/swtpm.sock' }), false);
  });

  test("a refusal names the TPM's response code", async () => {
    const t = await AttachedTpm.open({ host: '127.0.0.1', port: tpm.port });
    try {
      const getRandom = (n: number) => t.exclusive((exec) => new Tpm2Client(exec).call(CC.GetRandom, [], [], { bytesRequested: n }));
      await assert.rejects(getRandom(0x0921), (e) => e instanceof Tpm2CommandError && e.message === 'TPM2_GetRandom failed with response code 0x921 (TPM_RC_LOCKOUT)');
      await assert.rejects(getRandom(0x09a2), /response code 0x9a2 \(TPM_RC_BAD_AUTH\)$/);
      await assert.rejects(getRandom(0x0977), /response code 0x977$/);
    } finally {
      await t.close();
    }
  });

  test('an unreachable TPM and a locality other than 0 are refused with the reason', async () => {
    await assert.rejects(AttachedTpm.open({ path: '/nonexistent/tpm.sock' }), /cannot reach the host TPM at swtpm:path=\/nonexistent\/tpm\.sock/);
    await assert.rejects(AttachedTpm.open({ device: '/nonexistent/tpmrm0' }), /cannot reach the host TPM at device:\/nonexistent\/tpmrm0: ENOENT/);
    const t = await AttachedTpm.open({ host: '127.0.0.1', port: tpm.port });
    await assert.rejects(t.execute(command(8), 3), /locality 0 only, not 3/);
    await t.close();
  });
});
