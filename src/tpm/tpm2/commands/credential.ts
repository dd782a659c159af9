import { digestSize } from '../../crypto/hash.ts';
import { ALG, CC } from '../constants.ts';
import { command } from '../command.ts';
import { RC, TpmError, atParameter } from '../rc.ts';
import { digestBuf } from '../types/basic.ts';
import { nameBuf } from '../types/creation.ts';
import { dhObject } from '../types/handles.ts';
import { OBJECT_ATTR as A } from '../types/public.ts';
import { encryptedSecret, idObject } from '../types/secret.ts';
import { hasPrivate, type TpmObject } from '../objects/model.ts';
import { makeSecret, recoverSecret } from '../objects/secret.ts';
import { credentialToSecret, protectorOf, secretToCredential, type Protector } from '../objects/wrap.ts';
import { objectAt } from './object.ts';

/**
 * The key credentials are protected by (Part 3, MakeCredential/ActivateCredential): an RSA or
 * ECC restricted decryption key, whose symmetric definition is the credential's cipher.
 * TPM_RC_TYPE, numbered for the handle, otherwise.
 */
function credentialKey(o: TpmObject, handleNumber: number): Protector {
  const p = o.public;
  const a = p.objectAttributes;
  const protector = protectorOf(p);
  if ((p.type !== ALG.RSA && p.type !== ALG.ECC) || !(a & A.decrypt) || !(a & A.restricted) || !protector) {
    throw TpmError.handle(RC.TYPE, handleNumber);
  }
  return protector;
}

function numbered<T>(rc: (e: TpmError) => number, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof TpmError) throw new TpmError(rc(e), e.message);
    throw e;
  }
}

export const credentialCommands = [
  command({
    cc: CC.MakeCredential,
    name: 'MakeCredential',
    handles: [{ name: 'handle', type: dhObject, auth: 'none' }],
    params: { credential: digestBuf, objectName: nameBuf },
    response: { credentialBlob: idObject, secret: encryptedSecret },
    handler: ({ tpm, handles }, { credential, objectName }) => {
      const key = objectAt(tpm, handles[0]!, 1);
      const protector = credentialKey(key, 1);
      if (credential.length > digestSize(key.public.nameAlg)) throw TpmError.parameter(RC.SIZE, 1);
      const { seed, encryptedSecret: secret } = makeSecret(key, 'IDENTITY', (n) => tpm.random.bytes(n));
      return { credentialBlob: secretToCredential(protector, seed, objectName, credential), secret };
    },
  }),
  command({
    cc: CC.ActivateCredential,
    name: 'ActivateCredential',
    handles: [
      { name: 'activateHandle', type: dhObject, auth: 'admin' },
      { name: 'keyHandle', type: dhObject, auth: 'user' },
    ],
    params: { credentialBlob: idObject, secret: encryptedSecret },
    response: { certInfo: digestBuf },
    handler: ({ tpm, handles }, { credentialBlob, secret }) => {
      const activated = objectAt(tpm, handles[0]!, 1);
      const key = objectAt(tpm, handles[1]!, 2);
      const protector = credentialKey(key, 2);
      if (!hasPrivate(key)) throw TpmError.handle(RC.HANDLE, 2);
      // A key that cannot decrypt at all is the TPM's own fault once authorization passed.
      const seed = numbered((e) => (e.rc === RC.KEY ? RC.FAILURE : atParameter(e.rc, 2)), () => recoverSecret(key, 'IDENTITY', secret));
      const certInfo = numbered((e) => atParameter(e.rc, 1), () => credentialToSecret(protector, seed, activated.name, credentialBlob));
      return { certInfo };
    },
  }),
];
