import { yesNo } from '../../wire/codec.ts';
import { AES_BLOCK, aesWithIv, type CipherMode } from '../../crypto/sym-cipher.ts';
import { ALG, CC } from '../constants.ts';
import { command } from '../command.ts';
import { RC, TpmError } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { maxBuffer } from '../types/basic.ts';
import { dhObject } from '../types/handles.ts';
import { OBJECT_ATTR as A } from '../types/public.ts';
import { cipherModeOrNull, ivBuf } from '../types/secret.ts';
import { backendOf } from '../hardware-keys.ts';
import { objectAt } from './object.ts';

const MODES: Record<number, CipherMode> = {
  [ALG.CFB]: 'cfb',
  [ALG.CBC]: 'cbc',
  [ALG.CTR]: 'ctr',
  [ALG.OFB]: 'ofb',
  [ALG.ECB]: 'ecb',
};

/** Parameter positions of EncryptDecrypt and EncryptDecrypt2, for the codes that name one. */
interface Positions {
  mode: number;
  ivIn: number;
  inData: number;
}

/**
 * EncryptDecryptShared (Part 3, 15.2 and 15.3): an unrestricted SYMCIPHER key (TPM_RC_KEY),
 * with decrypt SET to decrypt and sign SET to encrypt (TPM_RC_ATTRIBUTES); the mode is the key's
 * unless the key leaves it NULL (TPM_RC_MODE); the IV must be one block, or empty for ECB, and
 * CBC/ECB data whole blocks (TPM_RC_SIZE).
 */
function encryptDecrypt(tpm: Tpm2Engine, h: number, decrypt: boolean, modeIn: number, ivIn: Buffer, inData: Buffer, at: Positions) {
  const key = objectAt(tpm, h, 1);
  const p = key.public.parameters;
  if (key.public.type !== ALG.SYMCIPHER || p.type !== ALG.SYMCIPHER) throw TpmError.handle(RC.KEY, 1);
  const a = key.public.objectAttributes;
  if (a & A.restricted || !(a & (decrypt ? A.decrypt : A.sign))) throw TpmError.handle(RC.ATTRIBUTES, 1);
  let mode = p.sym.mode;
  if (mode !== ALG.NULL && MODES[mode] === undefined) throw TpmError.handle(RC.MODE, 1);
  if (mode !== ALG.NULL) {
    if (modeIn !== ALG.NULL && modeIn !== mode) throw TpmError.parameter(RC.MODE, at.mode);
  } else {
    if (modeIn === ALG.NULL) throw TpmError.parameter(RC.MODE, at.mode);
    mode = modeIn;
  }
  const m = MODES[mode]!;
  if (m === 'ecb' ? ivIn.length !== 0 : ivIn.length !== AES_BLOCK) throw TpmError.parameter(RC.SIZE, at.ivIn);
  if ((m === 'cbc' || m === 'ecb') && inData.length % AES_BLOCK !== 0) throw TpmError.parameter(RC.SIZE, at.inData);
  if (key.hardware) return backendOf(key.hardware).encryptDecrypt(key.hardware.outer, key.public, { decrypt, mode, ivIn, data: inData });
  if (!key.sensitive) throw TpmError.handle(RC.KEY, 1);
  const { out, ivOut } = aesWithIv(m, key.sensitive.sensitive, ivIn, inData, decrypt ? 'decrypt' : 'encrypt');
  return { outData: out, ivOut };
}

export const symmetricCommands = [
  command({
    cc: CC.EncryptDecrypt,
    name: 'EncryptDecrypt',
    handles: [{ name: 'keyHandle', type: dhObject, auth: 'user' }],
    params: { decrypt: yesNo, mode: cipherModeOrNull, ivIn: ivBuf, inData: maxBuffer },
    response: { outData: maxBuffer, ivOut: ivBuf },
    handler: ({ tpm, handles }, { decrypt, mode, ivIn, inData }) => encryptDecrypt(tpm, handles[0]!, decrypt, mode, ivIn, inData, { mode: 2, ivIn: 3, inData: 4 }),
  }),
  command({
    cc: CC.EncryptDecrypt2,
    name: 'EncryptDecrypt2',
    handles: [{ name: 'keyHandle', type: dhObject, auth: 'user' }],
    params: { inData: maxBuffer, decrypt: yesNo, mode: cipherModeOrNull, ivIn: ivBuf },
    response: { outData: maxBuffer, ivOut: ivBuf },
    handler: ({ tpm, handles }, { inData, decrypt, mode, ivIn }) => encryptDecrypt(tpm, handles[0]!, decrypt, mode, ivIn, inData, { mode: 3, ivIn: 4, inData: 1 }),
  }),
];
