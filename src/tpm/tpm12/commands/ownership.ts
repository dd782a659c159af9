import { u16 } from '../../wire/codec.ts';
import { AUTH_USAGE, ES, KEY_FLAG, KEY_USAGE, NV_INDEX, ORD, PID, SS } from '../constants.ts';
import { command } from '../command.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { bytes32, digest20, enc } from '../structures/basic.ts';
import { key, keyParms, pubkey } from '../structures/key.ts';
import { verifyOwner } from '../auth/entities.ts';
import { rsaParmsOf, sha1, toPubkey, toWireKey, type KeyObject12 } from '../state/key-object.ts';
import { oaepTcpaDecrypt } from '../state/wrap.ts';
import type { Tpm12Engine } from '../engine.ts';

function ekOrFail(tpm: Tpm12Engine): KeyObject12 {
  const ek = tpm.nv.ek;
  if (!ek) throw new Tpm12Error(RC.NO_ENDORSEMENT);
  return ek;
}

function pubekResponse(ek: KeyObject12, antiReplay: Buffer) {
  const pubEndorsementKey = toPubkey(ek);
  return { pubEndorsementKey, checksum: sha1(enc(pubkey, pubEndorsementKey), antiReplay) };
}

/** TPM_OwnerClear / TPM_ForceClear: everything of the owner goes; the EK and its certificate stay. */
export function clearOwner(tpm: Tpm12Engine): void {
  const nv = tpm.nv;
  nv.owner = null;
  nv.counters = [];
  nv.nv = nv.nv.filter((a) => (a.pub.nvIndex & NV_INDEX.D_BIT) !== 0);
  nv.dir = Buffer.alloc(20);
  nv.flags.ownership = true;
  nv.flags.readPubek = true;
  nv.flags.disableOwnerClear = false;
  nv.flags.nvLocked = false;
  // The specification returns a cleared TPM disabled and deactivated, as a factory-fresh chip ships.
  nv.flags.disable = true;
  nv.flags.deactivated = true;
  tpm.keys.clear();
  tpm.sessions.clear();
  tpm.activeCounter = null;
  tpm.markNvDirty();
}

export const ownershipCommands = [
  command({
    ord: ORD.ReadPubek,
    name: 'TPM_ReadPubek',
    auths: [0],
    params: { antiReplay: digest20 },
    response: { pubEndorsementKey: pubkey, checksum: digest20 },
    handler(ctx, { antiReplay }) {
      const ek = ekOrFail(ctx.tpm);
      if (!ctx.tpm.nv.flags.readPubek) throw new Tpm12Error(RC.DISABLED_CMD);
      return pubekResponse(ek, antiReplay);
    },
  }),
  command({
    ord: ORD.OwnerReadPubek,
    name: 'TPM_OwnerReadPubek',
    auths: [1],
    params: {},
    response: { pubEndorsementKey: pubkey },
    handler(ctx) {
      verifyOwner(ctx, 0);
      return { pubEndorsementKey: toPubkey(ekOrFail(ctx.tpm)) };
    },
  }),
  command({
    ord: ORD.CreateEndorsementKeyPair,
    name: 'TPM_CreateEndorsementKeyPair',
    auths: [0],
    params: { antiReplay: digest20, keyInfo: keyParms },
    response: { pubEndorsementKey: pubkey, checksum: digest20 },
    handler(ctx, { antiReplay, keyInfo }) {
      const tpm = ctx.tpm;
      if (tpm.nv.ek) throw new Tpm12Error(RC.DISABLED_CMD);
      const { keyLength } = rsaParmsOf(keyInfo);
      if (keyLength !== 2048 || keyInfo.encScheme !== ES.RSAESOAEP_SHA1_MGF1 || keyInfo.sigScheme !== SS.NONE) throw new Tpm12Error(RC.BAD_KEY_PROPERTY);
      tpm.nv.ek = tpm.makeEk();
      tpm.nv.flags.CEKPUsed = true;
      tpm.nv.flags.enableRevokeEK = false;
      tpm.markNvDirty();
      return pubekResponse(tpm.nv.ek, antiReplay);
    },
  }),
  command({
    ord: ORD.TakeOwnership,
    name: 'TPM_TakeOwnership',
    auths: [1],
    params: { protocolID: u16, encOwnerAuth: bytes32(512), encSrkAuth: bytes32(512), srkParams: key },
    response: { srkPub: key },
    handler(ctx, { protocolID, encOwnerAuth, encSrkAuth, srkParams }) {
      const tpm = ctx.tpm;
      if (tpm.nv.owner) throw new Tpm12Error(RC.OWNER_SET);
      if (!tpm.nv.flags.ownership) throw new Tpm12Error(RC.INSTALL_DISABLED);
      const ek = ekOrFail(tpm);
      if (protocolID !== PID.OWNER) throw new Tpm12Error(RC.BAD_PARAMETER);
      const ownerAuth = oaepTcpaDecrypt(ek, encOwnerAuth);
      const srkAuth = oaepTcpaDecrypt(ek, encSrkAuth);
      if (!ownerAuth || !srkAuth || ownerAuth.length !== 20 || srkAuth.length !== 20) throw new Tpm12Error(RC.DECRYPT_ERROR);
      ctx.verify(0, ownerAuth, undefined, { oiapOnly: true });
      if (srkParams.keyUsage !== KEY_USAGE.STORAGE || (srkParams.keyFlags & KEY_FLAG.MIGRATABLE) !== 0) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
      if (srkParams.authDataUsage !== AUTH_USAGE.ALWAYS && srkParams.authDataUsage !== AUTH_USAGE.NEVER) throw new Tpm12Error(RC.BAD_KEY_PROPERTY);
      const { keyLength } = rsaParmsOf(srkParams.algorithmParms);
      const p = srkParams.algorithmParms;
      if (keyLength !== 2048 || p.encScheme !== ES.RSAESOAEP_SHA1_MGF1 || p.sigScheme !== SS.NONE) throw new Tpm12Error(RC.BAD_KEY_PROPERTY);
      const tpmProof = tpm.random.bytes(20);
      const rsa = tpm.generateRsa(2048);
      const srk: KeyObject12 = {
        key12: srkParams.key12,
        usage: KEY_USAGE.STORAGE,
        flags: srkParams.keyFlags,
        authDataUsage: srkParams.authDataUsage,
        parms: p,
        pcrInfo: srkParams.pcrInfo,
        n: rsa.n,
        p: rsa.p,
        exponent: 65537,
        usageAuth: srkAuth,
        migrationAuth: tpmProof,
        parentPCRStatus: false,
        rsa,
      };
      tpm.nv.owner = { ownerAuth, tpmProof, srk };
      tpm.nv.flags.readPubek = false;
      tpm.markNvDirty();
      return { srkPub: toWireKey(srk, Buffer.alloc(0)) };
    },
  }),
  command({
    ord: ORD.OwnerClear,
    name: 'TPM_OwnerClear',
    auths: [1],
    params: {},
    response: {},
    whenDeactivated: true,
    handler(ctx) {
      verifyOwner(ctx, 0);
      if (ctx.tpm.nv.flags.disableOwnerClear) throw new Tpm12Error(RC.CLEAR_DISABLED);
      clearOwner(ctx.tpm);
      return {};
    },
  }),
  command({
    ord: ORD.ForceClear,
    name: 'TPM_ForceClear',
    auths: [0],
    params: {},
    response: {},
    whenDisabled: true,
    whenDeactivated: true,
    handler(ctx) {
      if (!ctx.tpm.physicalPresence) throw new Tpm12Error(RC.BAD_PRESENCE);
      if (ctx.tpm.stclear.disableForceClear) throw new Tpm12Error(RC.CLEAR_DISABLED);
      clearOwner(ctx.tpm);
      return {};
    },
  }),
];
