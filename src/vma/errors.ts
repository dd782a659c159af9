/**
 * A request the attestation side cannot honour. The message says what is wrong and what to do; it
 * never carries key material or secrets.
 */
export type VmaErrorCode =
  | 'bad-evidence'
  | 'unapproved-configuration'
  | 'bad-credential'
  | 'unknown-challenge'
  | 'activation-failed'
  | 'revoked'
  | 'bad-state'
  | 'not-supported';

export class VmaError extends Error {
  constructor(
    readonly code: VmaErrorCode,
    message: string,
    readonly path?: string,
  ) {
    super(message);
    this.name = 'VmaError';
  }
}
