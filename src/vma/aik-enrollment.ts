/**
 * Getting an AIK certified by a privacy CA, the same way for the hwTPM and for a vTPM: make the
 * AIK under the storage root, send its public area with the EK's and the EK certificate, activate
 * the credential the CA made against the EK, and hand back what was recovered.
 */
import type { Tpm2Client } from '../hwtpm/tpm2-client.ts';
import { activateCredential, createAttestationKey, withLoaded, type KeyBlob } from './tpm-operations.ts';
import { encodePublicArea } from './tpm-structures.ts';
import type { AikChallenge, AikRequest } from './privacy-ca.ts';

/** Runs a job with a TPM to itself (the chip's exclusive turn, or a vTPM's command channel). */
export type TpmRunner = <T>(job: (tpm: Tpm2Client) => Promise<T>) => Promise<T>;

export interface AikIssuer {
  challenge(req: AikRequest): Promise<AikChallenge>;
  complete(id: string, activated: Uint8Array): Promise<Buffer>;
}

export interface AikEnrollment {
  readonly aik: KeyBlob;
  readonly certificate: Buffer;
}

export interface EnrollOptions {
  /** The storage key the AIK is made under. */
  readonly parent: number;
  readonly ekHandle: number;
  readonly ekCertificate: Buffer;
  readonly ekChain?: readonly Buffer[];
}

export async function enrollAik(run: TpmRunner, issuer: AikIssuer, opts: EnrollOptions): Promise<AikEnrollment> {
  const { aik, ekPublic } = await run(async (tpm) => ({
    aik: await createAttestationKey(tpm, opts.parent),
    ekPublic: (await tpm.readPublic(opts.ekHandle)).outPublic,
  }));
  const challenge = await issuer.challenge({
    ekCertificate: opts.ekCertificate,
    ...(opts.ekChain ? { ekChain: opts.ekChain } : {}),
    ekPublic: encodePublicArea(ekPublic),
    aikPublic: encodePublicArea(aik.inPublic),
  });
  const activated = await run((tpm) => withLoaded(tpm, opts.parent, aik, (handle) => activateCredential(tpm, handle, opts.ekHandle, challenge.credentialBlob, challenge.secret)));
  return { aik, certificate: await issuer.complete(challenge.id, activated) };
}
