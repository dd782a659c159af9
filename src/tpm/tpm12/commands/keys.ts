import { AUTH_USAGE, KEY_FLAG, ORD } from '../constants.ts';
import { command } from '../command.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { digest20 } from '../structures/basic.ts';
import { key, pubkey } from '../structures/key.ts';
import { authorizeKey, keyEntity } from '../auth/entities.ts';
import { isMigratable, isStorageKey, rebuildRsa, toPubkey, toWireKey, type KeyObject12 } from '../state/key-object.ts';
import { bindAtCreation, checkBinding, parsePcrInfo } from '../state/pcr-binding.ts';
import { unwrapKey, wrapKey } from '../state/wrap.ts';
import { checkKeyDescription } from './key-use.ts';
import type { Tpm12Engine } from '../engine.ts';

function storageParent(tpm: Tpm12Engine, handle: number): KeyObject12 {
  const parent = tpm.key(handle);
  if (!isStorageKey(parent)) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
  return parent;
}

export const keyCommands = [
  command({
    ord: ORD.CreateWrapKey,
    name: 'TPM_CreateWrapKey',
    auths: [1],
    handles: 1,
    params: { dataUsageAuth: digest20, dataMigrationAuth: digest20, keyInfo: key },
    response: { wrappedKey: key },
    handler(ctx, { dataUsageAuth, dataMigrationAuth, keyInfo }) {
      const tpm = ctx.tpm;
      const handle = ctx.handles[0]!;
      const parent = storageParent(tpm, handle);
      ctx.verify(0, parent.usageAuth, keyEntity(handle), { osapOnly: true });
      checkBinding(parsePcrInfo(parent.pcrInfo, parent.key12), tpm.pcrs, ctx.locality);
      const { keyLength, exponent } = checkKeyDescription(keyInfo, { allowIdentity: false });
      const migratable = (keyInfo.keyFlags & KEY_FLAG.MIGRATABLE) !== 0;
      if (isMigratable(parent) && !migratable) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
      const usageAuth = ctx.adip(0, dataUsageAuth);
      const migrationAuth = migratable ? ctx.adip(0, dataMigrationAuth, true) : tpm.tpmProof!;
      const { stored } = bindAtCreation(keyInfo.pcrInfo, tpm.pcrs, ctx.locality, keyInfo.key12);
      const rsa = tpm.generateRsa(keyLength);
      const k: KeyObject12 = {
        key12: keyInfo.key12,
        usage: keyInfo.keyUsage,
        flags: keyInfo.keyFlags,
        authDataUsage: keyInfo.authDataUsage,
        parms: keyInfo.algorithmParms,
        pcrInfo: stored,
        n: rsa.n,
        p: rsa.p,
        exponent,
        usageAuth,
        migrationAuth,
        parentPCRStatus: parent.pcrInfo.length > 0,
        rsa,
      };
      return { wrappedKey: toWireKey(k, wrapKey(parent, k, (n) => tpm.random.bytes(n))) };
    },
  }),
  command({
    ord: ORD.LoadKey2,
    name: 'TPM_LoadKey2',
    auths: [0, 1],
    handles: 1,
    params: { inKey: key },
    responseHandle: true,
    response: {},
    handler(ctx, { inKey }) {
      const tpm = ctx.tpm;
      const handle = ctx.handles[0]!;
      const parent = storageParent(tpm, handle);
      authorizeKey(ctx, 0, handle, parent);
      const { keyLength, exponent } = checkKeyDescription(inKey, { allowIdentity: true });
      if (inKey.pubKey.length * 8 !== keyLength) throw new Tpm12Error(RC.BAD_KEY_PROPERTY);
      const secret = unwrapKey(parent, inKey, exponent);
      const migratable = (inKey.keyFlags & KEY_FLAG.MIGRATABLE) !== 0;
      if (!migratable && (!tpm.tpmProof || !secret.migrationAuth.equals(tpm.tpmProof))) throw new Tpm12Error(RC.FAIL);
      if (isMigratable(parent) && !migratable) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
      const k: KeyObject12 = {
        key12: inKey.key12,
        usage: inKey.keyUsage,
        flags: inKey.keyFlags,
        authDataUsage: inKey.authDataUsage,
        parms: inKey.algorithmParms,
        pcrInfo: inKey.pcrInfo,
        n: inKey.pubKey,
        p: secret.p,
        exponent,
        usageAuth: secret.usageAuth,
        migrationAuth: secret.migrationAuth,
        parentPCRStatus: parent.pcrInfo.length > 0,
        rsa: rebuildRsa(inKey.pubKey, secret.p, exponent),
      };
      return { handle: tpm.keys.add(k) };
    },
  }),
  command({
    ord: ORD.GetPubKey,
    name: 'TPM_GetPubKey',
    auths: [0, 1],
    handles: 1,
    params: {},
    response: { pubKey: pubkey },
    handler(ctx) {
      const handle = ctx.handles[0]!;
      const k = ctx.tpm.key(handle);
      if (ctx.authCount > 0) ctx.verify(0, k.usageAuth, keyEntity(handle));
      else if (k.authDataUsage === AUTH_USAGE.ALWAYS) throw new Tpm12Error(RC.AUTHFAIL);
      if ((k.flags & KEY_FLAG.PCR_IGNORED_ON_READ) === 0) checkBinding(parsePcrInfo(k.pcrInfo, k.key12), ctx.tpm.pcrs, ctx.locality);
      return { pubKey: toPubkey(k) };
    },
  }),
];
