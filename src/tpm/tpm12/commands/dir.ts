import { u32 } from '../../wire/codec.ts';
import { ORD } from '../constants.ts';
import { command } from '../command.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { digest20 } from '../structures/basic.ts';
import { verifyOwner } from '../auth/entities.ts';

export const dirCommands = [
  command({
    ord: ORD.DirWriteAuth,
    name: 'TPM_DirWriteAuth',
    auths: [1],
    params: { dirIndex: u32, newContents: digest20 },
    response: {},
    handler(ctx, { dirIndex, newContents }) {
      verifyOwner(ctx, 0);
      if (dirIndex !== 0) throw new Tpm12Error(RC.BADINDEX);
      ctx.tpm.nv.dir = newContents;
      ctx.tpm.markNvDirty();
      return {};
    },
  }),
  command({
    ord: ORD.DirRead,
    name: 'TPM_DirRead',
    auths: [0],
    params: { dirIndex: u32 },
    response: { dirContents: digest20 },
    handler(ctx, { dirIndex }) {
      if (dirIndex !== 0) throw new Tpm12Error(RC.BADINDEX);
      return { dirContents: ctx.tpm.nv.dir };
    },
  }),
];
