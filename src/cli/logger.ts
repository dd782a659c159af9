import pino from 'pino';

/**
 * The process logger: JSON lines on stderr, so stdout stays free for the machine-readable lines
 * commands print (listening addresses, JSON results).
 */
export function createLogger(level = process.env.VTPMD_LOG_LEVEL ?? 'info'): pino.Logger {
  return pino({ name: 'vtpmd', level }, pino.destination(2));
}
