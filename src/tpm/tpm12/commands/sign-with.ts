import { pkcs1v15SignRaw, pkcs1v15SignSha1Digest } from '../../crypto/pkcs1-sign.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { isSigningKey, sha1, type KeyObject12 } from '../state/key-object.ts';

/** Signs the SHA-1 digest of a TPM structure (Quote, Quote2, CertifyKey, MakeIdentity) with PKCS #1 v1.5. */
export function signStructure(k: KeyObject12, structure: Uint8Array): Buffer {
  if (!isSigningKey(k)) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
  const sig = pkcs1v15SignSha1Digest(k.rsa.privateKey, k.n.length, sha1(structure));
  if (!sig) throw new Tpm12Error(RC.BAD_DATASIZE);
  return sig;
}

export function signRaw(k: KeyObject12, data: Uint8Array): Buffer {
  const sig = pkcs1v15SignRaw(k.rsa.privateKey, k.n.length, data);
  if (!sig) throw new Tpm12Error(RC.BAD_PARAMETER);
  return sig;
}
