/** The socket transports: what the CLI and the daemon use to put a TpmDevice on the wire. */
export { startSwtpmServer, type SwtpmFlags, type SwtpmServer, type SwtpmServerOptions } from './swtpm-server.ts';
export { startMssimServer, type MssimServer, type MssimServerOptions } from './mssim-server.ts';
export type { SwtpmInfo } from './swtpm-ctrl.ts';
export type { Endpoint, TcpEndpoint, UnixEndpoint } from './endpoint.ts';
export { SerialQueue } from '../tpm/serial-queue.ts';
export { DeviceStartError, EndpointError, OptionError, TransportError } from './errors.ts';
export {
  DEFAULT_DATA_PORT,
  parseCtrlOption,
  parseFlagsOption,
  parsePort,
  parseServerOption,
  parseTpmstateOption,
  type ServerSpec,
} from './swtpm-options.ts';
