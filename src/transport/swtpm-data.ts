/**
 * The swtpm data channel (server side): raw TPM commands in, raw responses out, framed by the size
 * field of the 10-byte command header. A client may keep one connection for many commands or
 * connect once per command (tcti-swtpm does the latter, and also opens and closes one connection
 * without sending anything when it initialises).
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import { TruncatedFrameError } from './errors.ts';
import { SocketReader, writeFully } from './socket-io.ts';
import type { SwtpmTpm } from './swtpm-tpm.ts';
import { commandSizeResponse, HEADER_SIZE_OFFSET, TPM_HEADER_SIZE } from './tpm-frames.ts';

export interface DataContext {
  tpm: SwtpmTpm;
  logger: Logger;
  /** swtpm's `--server …,disconnect`: close the connection after each response. */
  disconnect: boolean;
}

export async function serveDataConnection(socket: Socket, ctx: DataContext): Promise<void> {
  const { tpm, logger } = ctx;
  const reader = new SocketReader(socket);
  try {
    for (;;) {
      const header = await reader.read(TPM_HEADER_SIZE);
      if (header === null) return;
      const size = header.readUInt32BE(HEADER_SIZE_OFFSET);
      if (size < TPM_HEADER_SIZE || size > tpm.device.maxCommandSize) {
        // The size field is all we frame by, so after a bad one the stream cannot be
        // resynchronised: answer as the TPM would, then hang up on this client only.
        logger.warn({ size, max: tpm.device.maxCommandSize }, 'command size out of range; answered TPM_RC_COMMAND_SIZE and closed');
        await writeFully(socket, commandSizeResponse(tpm.device.family));
        socket.end();
        return;
      }
      const rest = await reader.readRest(size - TPM_HEADER_SIZE, TPM_HEADER_SIZE);
      const response = await tpm.execute(Buffer.concat([header, rest], size));
      await writeFully(socket, response);
      if (ctx.disconnect) {
        socket.end();
        return;
      }
    }
  } catch (err) {
    if (err instanceof TruncatedFrameError) logger.warn({ err }, 'data client left mid-command; nothing was executed');
    else logger.debug({ err }, 'data connection failed');
  } finally {
    if (!socket.writableEnded) socket.destroy();
  }
}
