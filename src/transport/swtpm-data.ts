/**
 * The swtpm data channel (server side): raw TPM commands in, raw responses out, framed by the size
 * field of the 10-byte command header. A client may keep one connection for many commands or
 * connect once per command (tcti-swtpm does the latter, and also opens and closes one connection
 * without sending anything when it initialises).
 *
 * The channel is driven by 'data' events rather than awaited reads: when the device can answer
 * synchronously and nothing else is queued, a command is answered within the event that
 * completed it, with no promise in between — the round trip is what a TPM benchmark measures.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { SwtpmTpm } from './swtpm-tpm.ts';
import { commandSizeResponse, HEADER_SIZE_OFFSET, TPM_HEADER_SIZE } from './tpm-frames.ts';

export interface DataContext {
  tpm: SwtpmTpm;
  logger: Logger;
  /** swtpm's `--server …,disconnect`: close the connection after each response. */
  disconnect: boolean;
}

export function serveDataConnection(socket: Socket, ctx: DataContext): Promise<void> {
  const { tpm, logger } = ctx;
  let pending: Buffer = Buffer.alloc(0);
  let busy = false;
  let done = false;

  return new Promise<void>((resolve) => {
    const finish = () => {
      if (done) return;
      done = true;
      if (pending.length > 0) logger.warn({ buffered: pending.length }, 'data client left mid-command; nothing was executed');
      if (!socket.destroyed) socket.destroy();
      resolve();
    };

    const reply = (response: Uint8Array): boolean => {
      if (done) return false;
      const flushed = socket.write(response);
      if (ctx.disconnect) {
        socket.end();
        return false;
      }
      if (!flushed) {
        // The client is not reading its responses: stop reading its commands until it does.
        socket.pause();
        socket.once('drain', () => socket.resume());
      }
      return true;
    };

    /** Executes every complete frame buffered, as long as each can be answered at once. */
    const pump = (): void => {
      while (!busy && !done && pending.length >= TPM_HEADER_SIZE) {
        const size = pending.readUInt32BE(HEADER_SIZE_OFFSET);
        if (size < TPM_HEADER_SIZE || size > tpm.device.maxCommandSize) {
          // The size field is all we frame by, so after a bad one the stream cannot be
          // resynchronised: answer as the TPM would, then hang up on this client only.
          logger.warn({ size, max: tpm.device.maxCommandSize }, 'command size out of range; answered TPM_RC_COMMAND_SIZE and closed');
          socket.end(commandSizeResponse(tpm.device.family));
          pending = Buffer.alloc(0);
          done = true;
          resolve();
          return;
        }
        if (pending.length < size) break;
        const command = pending.length === size ? pending : Buffer.from(pending.subarray(0, size));
        pending = pending.length === size ? Buffer.alloc(0) : pending.subarray(size);
        const now = tpm.executeNow(command);
        if (now !== undefined) {
          if (!reply(now)) return;
          continue;
        }
        busy = true;
        socket.pause();
        tpm.execute(command).then(
          (response) => {
            busy = false;
            if (!reply(response)) return;
            socket.resume();
            pump();
          },
          (err: unknown) => {
            logger.debug({ err }, 'data command failed');
            finish();
          },
        );
        return;
      }
    };

    socket.on('data', (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      pump();
    });
    socket.on('end', () => {
      if (!busy) finish();
      else socket.once('close', finish);
    });
    socket.on('close', () => {
      if (!busy) finish();
    });
    socket.on('error', (err) => {
      logger.debug({ err }, 'data connection failed');
      finish();
    });
  });
}
