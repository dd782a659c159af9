import { Writer } from '../../wire/buffer.ts';
import { PT, ORD, STAG } from '../constants.ts';
import { command } from '../command.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { bool, bytes32, digest20, enc, rawBytes, STRUCT_VER_11 } from '../structures/basic.ts';
import { certifyInfo, certifyInfo2, quoteInfo, quoteInfo2 } from '../structures/attest.ts';
import { pcrComposite, pcrInfoShort, pcrSelection } from '../structures/pcr.ts';
import { NO_BLOCK } from '../auth/entities.ts';
import { isSigningKey, needsAuth, sha1, type KeyObject12 } from '../state/key-object.ts';
import { currentShort, parsePcrInfo, shortFromBinding } from '../state/pcr-binding.ts';
import { versionInfo } from './capability.ts';
import { useKey } from './key-use.ts';
import { signStructure } from './sign-with.ts';

function signer(k: KeyObject12): KeyObject12 {
  if (!isSigningKey(k)) throw new Tpm12Error(RC.INVALID_KEYUSAGE);
  return k;
}

/** TPM_CERTIFY_INFO2 for keys bound to PCRs by TPM_PCR_INFO_LONG, TPM_CERTIFY_INFO otherwise. */
function certifyInfoOf(k: KeyObject12, antiReplay: Buffer): Buffer {
  const binding = parsePcrInfo(k.pcrInfo, k.key12);
  const common = {
    keyUsage: k.usage,
    keyFlags: k.flags,
    authDataUsage: k.authDataUsage,
    algorithmParms: k.parms,
    pubkeyDigest: sha1(k.n),
    data: antiReplay,
    parentPCRStatus: k.parentPCRStatus,
  };
  if (binding?.long) {
    return enc(certifyInfo2, { tag: STAG.CERTIFY_INFO2, fill: 0, payloadType: PT.ASYM, ...common, pcrInfo: shortFromBinding(binding), migrationAuthority: Buffer.alloc(0) });
  }
  return enc(certifyInfo, { version: STRUCT_VER_11, ...common, pcrInfo: k.pcrInfo });
}

export const attestationCommands = [
  command({
    ord: ORD.Quote,
    name: 'TPM_Quote',
    auths: [0, 1],
    handles: 1,
    params: { externalData: digest20, targetPCR: pcrSelection },
    response: { pcrData: pcrComposite, sig: bytes32() },
    handler(ctx, { externalData, targetPCR }) {
      const k = signer(useKey(ctx, 0, ctx.handles[0]!));
      const composite = ctx.tpm.pcrs.composite(targetPCR);
      const info = enc(quoteInfo, { version: STRUCT_VER_11, fixed: Buffer.from('QUOT', 'latin1'), digestValue: sha1(enc(pcrComposite, composite)), externalData });
      return { pcrData: composite, sig: signStructure(k, info) };
    },
  }),
  command({
    ord: ORD.Quote2,
    name: 'TPM_Quote2',
    auths: [0, 1],
    handles: 1,
    params: { externalData: digest20, targetPCR: pcrSelection, addVersion: bool },
    response: { pcrData: pcrInfoShort, versionInfo: bytes32(), sig: bytes32() },
    handler(ctx, { externalData, targetPCR, addVersion }) {
      const k = signer(useKey(ctx, 0, ctx.handles[0]!));
      const pcrData = currentShort(targetPCR, ctx.tpm.pcrs, ctx.locality);
      const version = addVersion ? versionInfo(ctx.tpm) : Buffer.alloc(0);
      const w = new Writer(128);
      quoteInfo2.encode(w, { tag: STAG.QUOTE_INFO2, fixed: Buffer.from('QUT2', 'latin1'), externalData, infoShort: pcrData });
      w.bytes(version);
      return { pcrData, versionInfo: version, sig: signStructure(k, w.finish()) };
    },
  }),
  command({
    ord: ORD.CertifyKey,
    name: 'TPM_CertifyKey',
    auths: [0, 1, 2],
    handles: 2,
    params: { antiReplay: digest20 },
    response: { certifyInfo: rawBytes, outData: bytes32() },
    handler(ctx, { antiReplay }) {
      const [certHandle, keyHandle] = ctx.handles as [number, number];
      const certKey = ctx.tpm.key(certHandle);
      // With one block, it belongs to whichever key requires authorization (the certifying key first).
      let certBlock = NO_BLOCK;
      let keyBlock = NO_BLOCK;
      if (ctx.authCount === 2) [certBlock, keyBlock] = [0, 1];
      else if (ctx.authCount === 1) needsAuth(certKey) ? (certBlock = 0) : (keyBlock = 0);
      const c = signer(useKey(ctx, certBlock, certHandle));
      const k = useKey(ctx, keyBlock, keyHandle);
      const info = certifyInfoOf(k, antiReplay);
      return { certifyInfo: info, outData: signStructure(c, info) };
    },
  }),
];
