import { u16, u32 } from '../../wire/codec.ts';
import { ET, ET_XOR, KH, ORD, RT } from '../constants.ts';
import { command } from '../command.ts';
import { RC, Tpm12Error } from '../rc.ts';
import { digest20 } from '../structures/basic.ts';
import { osapSharedSecret } from '../auth/hmac.ts';
import type { Tpm12Engine } from '../engine.ts';

/** The usage auth of the entity an OSAP session is opened for. */
function entityAuth(tpm: Tpm12Engine, type: number, value: number): Buffer {
  switch (type) {
    case ET.KEYHANDLE:
      return tpm.key(value).usageAuth;
    case ET.SRK: {
      const owner = tpm.nv.owner;
      if (!owner) throw new Tpm12Error(RC.NOSRK);
      return owner.srk.usageAuth;
    }
    case ET.OWNER: {
      const owner = tpm.nv.owner;
      if (!owner) throw new Tpm12Error(RC.NOSRK);
      return owner.ownerAuth;
    }
    case ET.COUNTER: {
      const c = tpm.nv.counters.find((x) => x.id === value);
      if (!c) throw new Tpm12Error(RC.BAD_COUNTER);
      return c.auth;
    }
    case ET.NV: {
      const a = tpm.nv.nv.find((x) => x.pub.nvIndex === value);
      if (!a) throw new Tpm12Error(RC.BADINDEX);
      return a.auth;
    }
    default:
      throw new Tpm12Error(RC.WRONG_ENTITYTYPE);
  }
}

export const sessionCommands = [
  command({
    ord: ORD.OIAP,
    name: 'TPM_OIAP',
    auths: [0],
    params: {},
    response: { authHandle: u32, nonceEven: digest20 },
    whenDisabled: true,
    whenDeactivated: true,
    handler(ctx) {
      const nonceEven = ctx.tpm.random.bytes(20);
      const authHandle = ctx.tpm.sessions.add({ kind: 'oiap', nonceEven });
      return { authHandle, nonceEven };
    },
  }),
  command({
    ord: ORD.OSAP,
    name: 'TPM_OSAP',
    auths: [0],
    params: { entityType: u16, entityValue: u32, nonceOddOSAP: digest20 },
    response: { authHandle: u32, nonceEven: digest20, nonceEvenOSAP: digest20 },
    whenDisabled: true,
    whenDeactivated: true,
    handler(ctx, { entityType, entityValue, nonceOddOSAP }) {
      const type = entityType & 0xff;
      const adipScheme = entityType >> 8;
      if (adipScheme !== ET_XOR) throw new Tpm12Error(RC.INAPPROPRIATE_ENC);
      if (type === ET.SRK && entityValue !== KH.SRK) throw new Tpm12Error(RC.BAD_PARAMETER);
      const secret = entityAuth(ctx.tpm, type, entityValue);
      const nonceEvenOSAP = ctx.tpm.random.bytes(20);
      const nonceEven = ctx.tpm.random.bytes(20);
      const sharedSecret = osapSharedSecret(secret, nonceEvenOSAP, nonceOddOSAP);
      const authHandle = ctx.tpm.sessions.add({ kind: 'osap', nonceEven, entityType: type, adipScheme, entityValue, sharedSecret });
      return { authHandle, nonceEven, nonceEvenOSAP };
    },
  }),
  command({
    ord: ORD.FlushSpecific,
    name: 'TPM_FlushSpecific',
    auths: [0],
    params: { handle: u32, resourceType: u32 },
    response: {},
    whenDisabled: true,
    whenDeactivated: true,
    handler(ctx, { handle, resourceType }) {
      switch (resourceType) {
        case RT.KEY:
          // Reserved handles (SRK, EK) are not in a slot and cannot be flushed.
          if (!ctx.tpm.keys.delete(handle)) throw new Tpm12Error(RC.BAD_PARAMETER);
          return {};
        case RT.AUTH:
          if (!ctx.tpm.sessions.delete(handle)) throw new Tpm12Error(RC.INVALID_AUTHHANDLE);
          return {};
        case RT.TRANS:
        case RT.CONTEXT:
        case RT.DAA_TPM:
          throw new Tpm12Error(RC.BAD_PARAMETER);
        default:
          throw new Tpm12Error(RC.INVALID_RESOURCE);
      }
    },
  }),
  command({
    ord: ORD.Terminate_Handle,
    name: 'TPM_Terminate_Handle',
    auths: [0],
    params: { handle: u32 },
    response: {},
    whenDisabled: true,
    whenDeactivated: true,
    handler(ctx, { handle }) {
      if (!ctx.tpm.sessions.delete(handle)) throw new Tpm12Error(RC.INVALID_AUTHHANDLE);
      return {};
    },
  }),
];
