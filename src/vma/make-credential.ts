/**
 * TPM2_MakeCredential done in software by a privacy CA (TPM 2.0 Part 1, 24): a seed shared with
 * the EK's holder alone (OAEP to an RSA EK, ephemeral ECDH with an ECC EK, label "IDENTITY"), and
 * the credential wrapped under keys derived from that seed and the AIK's Name, so only the TPM
 * holding both the EK and an object of that Name can unwrap it with TPM2_ActivateCredential.
 */
import { randomBytes } from 'node:crypto';
import { RH } from '../tpm/tpm2/constants.ts';
import { hierarchyQn, makeObject } from '../tpm/tpm2/objects/model.ts';
import { makeSecret } from '../tpm/tpm2/objects/secret.ts';
import { protectorOf, secretToCredential } from '../tpm/tpm2/objects/wrap.ts';
import { OBJECT_ATTR as A, type Public } from '../tpm/tpm2/types/public.ts';
import { VmaError } from './errors.ts';

export interface MadeCredential {
  /** TPM2B_ID_OBJECT contents. */
  readonly credentialBlob: Buffer;
  /** TPM2B_ENCRYPTED_SECRET contents. */
  readonly secret: Buffer;
}

export function makeCredential(ekPublic: Public, objectName: Buffer, credential: Buffer, random: (n: number) => Buffer = randomBytes): MadeCredential {
  const a = ekPublic.objectAttributes;
  const protector = protectorOf(ekPublic);
  if (!(a & A.restricted) || !(a & A.decrypt) || !protector) {
    throw new VmaError('bad-evidence', 'the endorsement key is not a restricted decryption key with a symmetric cipher; send the EK public area the TPM reports');
  }
  const ek = makeObject(ekPublic, undefined, RH.ENDORSEMENT, hierarchyQn(RH.ENDORSEMENT), true);
  const { seed, encryptedSecret } = makeSecret(ek, 'IDENTITY', random);
  return { credentialBlob: secretToCredential(protector, seed, objectName, credential), secret: encryptedSecret };
}
