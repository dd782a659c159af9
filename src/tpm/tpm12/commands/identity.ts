import { AUTH_USAGE, EK_TYPE, ES, KEY_FLAG, KEY_USAGE, ORD, SS, STAG } from '../constants.ts';
import { command } from '../command.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { bytes32, decodeAs, digest20, enc, STRUCT_VER_11 } from '../structures/basic.ts';
import { key, pubkey } from '../structures/key.ts';
import { asymCaContents, ekBlob, ekBlobActivate, identityContents, symmetricKey, type SymmetricKey } from '../structures/identity.ts';
import { authorizeKey, NO_BLOCK, verifyOwner } from '../auth/entities.ts';
import { rsaParmsOf, sha1, toPubkey, toWireKey, type KeyObject12 } from '../state/key-object.ts';
import { bindAtCreation, checkShort } from '../state/pcr-binding.ts';
import { oaepTcpaDecrypt, wrapKey } from '../state/wrap.ts';
import { KH } from '../constants.ts';
import { useKey } from './key-use.ts';
import { signStructure } from './sign-with.ts';

export const identityCommands = [
  command({
    ord: ORD.MakeIdentity,
    name: 'TPM_MakeIdentity',
    auths: [1, 2],
    params: { identityAuth: digest20, labelPrivCADigest: digest20, idKeyParams: key },
    response: { idKey: key, identityBinding: bytes32() },
    handler(ctx, { identityAuth, labelPrivCADigest, idKeyParams }) {
      const tpm = ctx.tpm;
      const ownerBlock = ctx.authCount - 1;
      const owner = tpm.nv.owner;
      if (!owner) throw new Tpm12Error(RC.NOSRK);
      authorizeKey(ctx, ctx.authCount === 2 ? 0 : NO_BLOCK, KH.SRK, owner.srk);
      verifyOwner(ctx, ownerBlock, { osapOnly: true });
      const p = idKeyParams.algorithmParms;
      if (idKeyParams.keyUsage !== KEY_USAGE.IDENTITY) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
      if ((idKeyParams.keyFlags & KEY_FLAG.MIGRATABLE) !== 0) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
      const { keyLength, exponent } = rsaParmsOf(p);
      if (keyLength !== 2048 || p.encScheme !== ES.NONE || p.sigScheme !== SS.RSASSAPKCS1v15_SHA1) throw new Tpm12Error(RC.BAD_KEY_PROPERTY);
      if (idKeyParams.authDataUsage === AUTH_USAGE.NEVER) throw new Tpm12Error(RC.BAD_KEY_PROPERTY);
      const usageAuth = ctx.adip(ownerBlock, identityAuth);
      const { stored } = bindAtCreation(idKeyParams.pcrInfo, tpm.pcrs, ctx.locality, idKeyParams.key12);
      const rsa = tpm.generateRsa(2048);
      const k: KeyObject12 = {
        key12: idKeyParams.key12,
        usage: KEY_USAGE.IDENTITY,
        flags: idKeyParams.keyFlags,
        authDataUsage: idKeyParams.authDataUsage,
        parms: p,
        pcrInfo: stored,
        n: rsa.n,
        p: rsa.p,
        exponent,
        usageAuth,
        migrationAuth: owner.tpmProof,
        parentPCRStatus: owner.srk.pcrInfo.length > 0,
        rsa,
      };
      const contents = enc(identityContents, { ver: STRUCT_VER_11, ordinal: ORD.MakeIdentity, labelPrivCADigest, identityPubKey: toPubkey(k) });
      return { idKey: toWireKey(k, wrapKey(owner.srk, k, (n) => tpm.random.bytes(n))), identityBinding: signStructure(k, contents) };
    },
  }),
  command({
    ord: ORD.ActivateIdentity,
    name: 'TPM_ActivateIdentity',
    auths: [2],
    handles: 1,
    params: { blob: bytes32(512) },
    response: { symmetricKey },
    handler(ctx, { blob }) {
      const tpm = ctx.tpm;
      const idKey = useKey(ctx, 0, ctx.handles[0]!);
      verifyOwner(ctx, 1);
      if (idKey.usage !== KEY_USAGE.IDENTITY) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
      const ek = tpm.nv.ek;
      if (!ek) throw new Tpm12Error(RC.NO_ENDORSEMENT);
      const plain = oaepTcpaDecrypt(ek, blob);
      if (!plain) throw new Tpm12Error(RC.DECRYPT_ERROR);
      let sessionKey: SymmetricKey;
      let idDigest: Buffer;
      if (plain.length >= 2 && plain.readUInt16BE(0) === STAG.EK_BLOB) {
        const outer = decodeAs(ekBlob, plain, RC.BAD_PARAMETER);
        if (outer.ekType !== EK_TYPE.ACTIVATE) throw new Tpm12Error(RC.BAD_TYPE);
        const inner = decodeAs(ekBlobActivate, outer.blob, RC.BAD_PARAMETER);
        checkShort(inner.pcrInfo, tpm.pcrs, ctx.locality);
        ({ sessionKey, idDigest } = inner);
      } else {
        ({ sessionKey, idDigest } = decodeAs(asymCaContents, plain, RC.BAD_PARAMETER));
      }
      if (!idDigest.equals(sha1(enc(pubkey, toPubkey(idKey))))) throw new Tpm12Error(RC.BAD_PARAMETER);
      return { symmetricKey: sessionKey };
    },
  }),
];
