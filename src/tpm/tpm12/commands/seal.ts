import { ORD, PT } from '../constants.ts';
import { command } from '../command.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { bytes32, decodeAs, digest20, enc } from '../structures/basic.ts';
import { sealedData, storedData, storedDataDigestBytes, type StoredData } from '../structures/stored-data.ts';
import { keyEntity, NO_BLOCK } from '../auth/entities.ts';
import { isStorageKey, sha1 } from '../state/key-object.ts';
import { bindAtCreation, checkBinding, parsePcrInfo } from '../state/pcr-binding.ts';
import { oaepTcpaDecrypt, oaepTcpaEncrypt } from '../state/wrap.ts';
import { useKey } from './key-use.ts';

/** Bytes TPM_SEALED_DATA adds around the data: payload, authData, tpmProof, storedDigest, size. */
const SEALED_OVERHEAD = 1 + 20 + 20 + 20 + 4;

export const sealCommands = [
  command({
    ord: ORD.Seal,
    name: 'TPM_Seal',
    auths: [1],
    handles: 1,
    params: { encAuth: digest20, pcrInfo: bytes32(256), inData: bytes32(1024) },
    response: { sealedData: storedData },
    handler(ctx, { encAuth, pcrInfo, inData }) {
      const tpm = ctx.tpm;
      const handle = ctx.handles[0]!;
      const k = tpm.key(handle);
      ctx.verify(0, k.usageAuth, keyEntity(handle), { osapOnly: true });
      if (!isStorageKey(k)) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
      checkBinding(parsePcrInfo(k.pcrInfo, k.key12), tpm.pcrs, ctx.locality);
      if (SEALED_OVERHEAD + inData.length > k.n.length - 2 * 20 - 2) throw new Tpm12Error(RC.BAD_DATASIZE);
      const authData = ctx.adip(0, encAuth);
      const { long, stored } = bindAtCreation(pcrInfo, tpm.pcrs, ctx.locality);
      const s: StoredData = { data12: long, et: 0, sealInfo: stored, encData: Buffer.alloc(0) };
      const plain = enc(sealedData, { payload: PT.SEAL, authData, tpmProof: tpm.tpmProof!, storedDigest: sha1(storedDataDigestBytes(s)), data: inData });
      const c = oaepTcpaEncrypt(k.n, k.exponent, plain, (n) => tpm.random.bytes(n));
      if (!c) throw new Tpm12Error(RC.ENCRYPT_ERROR);
      s.encData = c;
      return { sealedData: s };
    },
  }),
  command({
    ord: ORD.Unseal,
    name: 'TPM_Unseal',
    auths: [1, 2],
    handles: 1,
    params: { inData: storedData },
    response: { secret: bytes32() },
    handler(ctx, { inData }) {
      const tpm = ctx.tpm;
      const handle = ctx.handles[0]!;
      const parentAuthed = ctx.authCount === 2;
      const k = useKey(ctx, parentAuthed ? 0 : NO_BLOCK, handle);
      if (!isStorageKey(k)) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
      const plain = oaepTcpaDecrypt(k, inData.encData);
      if (!plain) throw new Tpm12Error(RC.NOTSEALED_BLOB);
      const s = decodeAs(sealedData, plain, RC.NOTSEALED_BLOB);
      if (s.payload !== PT.SEAL || !tpm.tpmProof || !s.tpmProof.equals(tpm.tpmProof)) throw new Tpm12Error(RC.NOTSEALED_BLOB);
      if (!s.storedDigest.equals(sha1(storedDataDigestBytes(inData)))) throw new Tpm12Error(RC.NOTSEALED_BLOB);
      if (inData.data12 && inData.et !== 0) throw new Tpm12Error(RC.NOTSEALED_BLOB);
      ctx.verify(ctx.authCount - 1, s.authData, { types: [] }, { oiapOnly: true });
      checkBinding(parsePcrInfo(inData.sealInfo, inData.data12), tpm.pcrs, ctx.locality);
      return { secret: s.data };
    },
  }),
];
