export { Tpm12Client, keyTemplate, type KeyTemplate, type QuoteResult, type Quote2Result } from './client.ts';
export { ClientSession } from './session.ts';
export { Tpm12ResponseError, transmit, type AuthUse, type CommandResult, type CommandSpec, type Exec } from './transport.ts';
export * from './helpers.ts';
