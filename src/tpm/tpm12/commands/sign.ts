import { pkcs1v15SignSha1Digest } from '../../crypto/pkcs1-sign.ts';
import { Writer } from '../../wire/buffer.ts';
import { KEY_USAGE, ORD, SS, STAG } from '../constants.ts';
import { command } from '../command.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { bytes32 } from '../structures/basic.ts';
import { sha1 } from '../state/key-object.ts';
import { useKey } from './key-use.ts';
import { signRaw } from './sign-with.ts';

export const signCommands = [
  command({
    ord: ORD.Sign,
    name: 'TPM_Sign',
    auths: [0, 1],
    handles: 1,
    params: { areaToSign: bytes32(4096) },
    response: { sig: bytes32() },
    handler(ctx, { areaToSign }) {
      const k = useKey(ctx, 0, ctx.handles[0]!);
      if (k.usage !== KEY_USAGE.SIGNING && k.usage !== KEY_USAGE.LEGACY) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
      switch (k.parms.sigScheme) {
        case SS.RSASSAPKCS1v15_SHA1: {
          if (areaToSign.length !== 20) throw new Tpm12Error(RC.BAD_PARAMETER);
          const sig = pkcs1v15SignSha1Digest(k.rsa.privateKey, k.n.length, areaToSign);
          if (!sig) throw new Tpm12Error(RC.BAD_PARAMETER);
          return { sig };
        }
        case SS.RSASSAPKCS1v15_DER:
          return { sig: signRaw(k, areaToSign) };
        case SS.RSASSAPKCS1v15_INFO: {
          // TPM_SIGN_INFO binds the signature to the caller's nonce (the session's nonceOdd).
          const replay = ctx.authCount > 0 ? ctx.blocks[0]!.nonceOdd : Buffer.alloc(20);
          const w = new Writer(64 + areaToSign.length);
          w.u16(STAG.SIGNINFO).bytes(Buffer.from('SIGN', 'latin1')).bytes(replay).u32(areaToSign.length).bytes(areaToSign);
          const sig = pkcs1v15SignSha1Digest(k.rsa.privateKey, k.n.length, sha1(w.finish()));
          if (!sig) throw new Tpm12Error(RC.BAD_PARAMETER);
          return { sig };
        }
        default:
          throw new Tpm12Error(RC.INAPPROPRIATE_SIG);
      }
    },
  }),
];
