import { checked, oneOf, sized, u32, u8 } from '../../wire/codec.ts';
import { digestSize } from '../../crypto/hash.ts';
import { kdfa } from '../../crypto/kdf.ts';
import { ALG, CC, HT, RH } from '../constants.ts';
import { command } from '../command.ts';
import { RC, TpmError } from '../rc.ts';
import { activeSessions, MAX_ACTIVE_SESSIONS, SESSION_TYPE, newPolicyState, type Session } from '../auth/sessions.ts';
import { algHash, nonceBuf } from '../types/basic.ts';
import { symDefOrNull } from '../types/public-parms.ts';
import { decryptSalt } from '../objects/secret.ts';

/** TPMI_DH_OBJECT+ and TPMI_DH_ENTITY+: any handle type except sessions; NULL allowed. */
const objectOrNull = checked(u32, (h) => h === RH.NULL || h >>> 24 === HT.TRANSIENT || h >>> 24 === HT.PERSISTENT, RC.VALUE);
const entityOrNull = checked(u32, (h) => {
  const ht = h >>> 24;
  return ht === HT.PCR || ht === HT.NV_INDEX || ht === HT.PERMANENT || ht === HT.TRANSIENT || ht === HT.PERSISTENT;
}, RC.VALUE);

/** TPM2B_ENCRYPTED_SECRET (sizeof TPMU_ENCRYPTED_SECRET: an RSA-3072 block). */
const encryptedSecret = sized(384);
/** The smallest nonceCaller the TPM accepts (Part 3, StartAuthSession). */
const MIN_NONCE = 16;

export const sessionCommands = [
  command({
    cc: CC.StartAuthSession,
    name: 'StartAuthSession',
    handles: [
      { name: 'tpmKey', type: objectOrNull, auth: 'none' },
      { name: 'bind', type: entityOrNull, auth: 'none' },
    ],
    params: {
      nonceCaller: nonceBuf,
      encryptedSalt: encryptedSecret,
      sessionType: oneOf(u8, [SESSION_TYPE.HMAC, SESSION_TYPE.POLICY, SESSION_TYPE.TRIAL]),
      symmetric: symDefOrNull,
      authHash: algHash,
    },
    responseHandle: true,
    response: { nonceTPM: nonceBuf },
    handler: ({ tpm, handles }, { nonceCaller, encryptedSalt, sessionType, symmetric, authHash }) => {
      const [tpmKey, bind] = handles as [number, number];
      if (nonceCaller.length < MIN_NONCE || nonceCaller.length > digestSize(authHash)) throw TpmError.parameter(RC.SIZE, 1);
      // A salted session: the salt is a secret shared with tpmKey ("SECRET"); unsalted, none may come.
      const salt = tpmKey === RH.NULL ? Buffer.alloc(0) : decryptSalt(tpm.objectAt(tpmKey), encryptedSalt);
      if (tpmKey === RH.NULL && encryptedSalt.length !== 0) throw TpmError.parameter(RC.VALUE, 2);
      if (symmetric.algorithm === ALG.AES && symmetric.mode !== ALG.CFB) throw TpmError.parameter(RC.MODE, 4);
      if (activeSessions(tpm) >= MAX_ACTIVE_SESSIONS) throw new TpmError(RC.SESSION_HANDLES);
      const handle = tpm.sessions.nextHandle(sessionType);
      const nonceTPM = tpm.random.bytes(digestSize(authHash));
      const bindAuth = bind === RH.NULL ? undefined : tpm.authValue(bind);
      // sessionKey = KDFa(authHash, bindAuth || salt, "ATH", nonceTPM, nonceCaller). Unbound and
      // unsalted sessions have an empty key: their HMACs rest on authValues alone.
      const keyInput = Buffer.concat([bindAuth ?? Buffer.alloc(0), salt]);
      const sessionKey = keyInput.length ? kdfa(authHash, keyInput, 'ATH', nonceTPM, nonceCaller, digestSize(authHash) * 8) : Buffer.alloc(0);
      const session: Session = {
        handle,
        type: sessionType,
        authHash,
        sessionKey,
        symmetric,
        bind: bind === RH.NULL ? undefined : { handle: bind, name: tpm.nameOf(bind), auth: Buffer.from(bindAuth ?? []) },
        nonceTPM,
        nonceCaller: Buffer.from(nonceCaller),
        policyDigest: Buffer.alloc(digestSize(authHash)),
        // Expirations relative to nonceTPM count from here.
        policy: sessionType === SESSION_TYPE.HMAC ? undefined : newPolicyState(tpm.clock.time),
      };
      tpm.sessions.add(session);
      return { handle, nonceTPM };
    },
  }),
];
