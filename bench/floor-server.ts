/**
 * A calibration server, not a TPM: it frames commands exactly as a swtpm data channel does and
 * answers each with a canned response chosen by its command code, doing no TPM work at all.
 * Measured with the same client as vtpmd and swtpm (`npm run bench -- --paths vtpmd,swtpm,node-floor`),
 * it shows what a Node process pays per round trip for the socket alone on this machine: the
 * floor under any Node transport.
 *
 *   node --import tsx bench/floor-server.ts CC_HEX=RESPONSE_HEX [CC_HEX=RESPONSE_HEX …]
 *
 * Unknown command codes get TPM_RC_COMMAND_CODE.
 *
 * Prints {"event":"listening","data":"tcp://127.0.0.1:PORT"} on stdout once listening.
 */
import { createServer } from 'node:net';

const responses = new Map<number, Buffer>();
for (const arg of process.argv.slice(2)) {
  const m = /^([0-9a-f]{1,8})=((?:[0-9a-f]{2})+)$/i.exec(arg);
  if (!m) {
    process.stderr.write(`usage: floor-server.ts CC_HEX=RESPONSE_HEX …; bad argument '${arg}'\n`);
    process.exit(2);
  }
  responses.set(parseInt(m[1]!, 16), Buffer.from(m[2]!, 'hex'));
}
/** TPM_RC_COMMAND_CODE, tag TPM_ST_NO_SESSIONS. */
const unknownCommand = Buffer.from('80010000000a00000143', 'hex');

const server = createServer((socket) => {
  socket.setNoDelay(true);
  let pending: Buffer | null = null;
  socket.on('data', (chunk: Buffer) => {
    let data = pending ? Buffer.concat([pending, chunk]) : chunk;
    pending = null;
    while (data.length >= 10) {
      const size = data.readUInt32BE(2);
      if (size < 10) {
        socket.destroy();
        return;
      }
      if (data.length < size) break;
      socket.write(responses.get(data.readUInt32BE(6)) ?? unknownCommand);
      data = data.subarray(size);
    }
    if (data.length > 0) pending = data;
  });
  socket.on('error', () => undefined);
});

server.listen({ port: 0, host: '127.0.0.1' }, () => {
  const { port } = server.address() as { port: number };
  process.stdout.write(`${JSON.stringify({ event: 'listening', data: `tcp://127.0.0.1:${port}` })}\n`);
});

const stop = (): void => {
  server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
