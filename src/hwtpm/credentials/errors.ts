/**
 * A credential could not be built, stored or loaded. The message names the file or field and what
 * to do; it never carries key material.
 */
export class CredentialError extends Error {
  constructor(
    message: string,
    readonly path?: string,
  ) {
    super(message);
    this.name = 'CredentialError';
  }
}
