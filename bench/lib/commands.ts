/**
 * TPM 2.0 command bytes the scenarios send, built with the project's wire Writer and codecs and
 * the test helpers' command builder and key templates, so every path is fed identical input.
 */
import { createHash } from 'node:crypto';
import { Writer } from '../../src/tpm/wire/buffer.ts';
import { ALG, CC, RH, ST, SU } from '../../src/tpm/tpm2/constants.ts';
import { dataBuf, digestValues } from '../../src/tpm/tpm2/types/basic.ts';
import { pcrSelectionList } from '../../src/tpm/tpm2/types/pcr.ts';
import { OBJECT_ATTR as A, public2b, sensitiveCreate, type Public } from '../../src/tpm/tpm2/types/public.ts';
import { NULL_SIG_SCHEME, sigScheme } from '../../src/tpm/tpm2/types/signature.ts';
import { buildCommand, enc, params, pw, selection, tpm2b, u32b } from '../../test/helpers/tpm2-commands.ts';
import { EMPTY, rsaTemplate } from '../../test/helpers/tpm2-keys.ts';

/** TPMA_SESSION.continueSession, as tpm2-tools sets it on password sessions. */
const CONTINUE_SESSION = 0x01;

/** A TPM 2.0 command: header, handles, optional authorization area, parameter bytes. */
export function tpm2Command(cc: number, handles: readonly number[], auth: Buffer | null, parameters: Uint8Array): Buffer {
  const w = new Writer(64);
  w.u16(auth === null ? ST.NO_SESSIONS : ST.SESSIONS);
  const sizeAt = w.reserveU32();
  w.u32(cc);
  for (const h of handles) w.u32(h);
  if (auth !== null) {
    w.u32(auth.length);
    w.bytes(auth);
  }
  w.bytes(parameters);
  w.patchU32(sizeAt, w.length);
  return Buffer.from(w.finish()); // a standalone copy: the writer's buffer may be larger
}

/** One TPMS_AUTH_COMMAND for the password session TPM_RS_PW. */
export function passwordSession(password: Uint8Array = Buffer.alloc(0)): Buffer {
  const w = new Writer(16);
  w.u32(RH.RS_PW);
  w.u16(0); // nonceCaller: empty
  w.u8(CONTINUE_SESSION);
  w.u16(password.length);
  w.bytes(password);
  return Buffer.from(w.finish());
}

export function startupClear(): Buffer {
  const w = new Writer(2);
  w.u16(SU.CLEAR);
  return tpm2Command(CC.Startup, [], null, w.finish());
}

export const HASH_SIZES: Readonly<Record<number, number>> = { [ALG.SHA1]: 20, [ALG.SHA256]: 32, [ALG.SHA384]: 48 };

/** TPM2_PCR_Extend of one digest of `hashAlg` into `pcr`, authorized by an empty password. */
export function pcrExtendCommand(hashAlg: number, pcr: number): Buffer {
  const size = HASH_SIZES[hashAlg];
  if (size === undefined) throw new Error(`no digest size known for hash algorithm 0x${hashAlg.toString(16)}`);
  const digest = createHash('sha512').update(`vtpmd bench PCR_Extend ${hashAlg}`).digest().subarray(0, size);
  const w = new Writer(64);
  digestValues.encode(w, [{ hashAlg, digest }]);
  const command = tpm2Command(CC.PCR_Extend, [pcr], passwordSession(), w.finish());
  // header 10 + handle 4 + authSize 4 + session 9 + count 4 + alg 2 + digest
  if (command.length !== 33 + size) throw new Error(`PCR_Extend command is ${command.length} bytes, expected ${33 + size}: the encoding changed`);
  return command;
}

/** TPM2_PCR_Read of one PCR in the SHA-256 bank. */
export function pcrReadCommand(pcr: number): Buffer {
  return buildCommand({ cc: CC.PCR_Read, params: enc(pcrSelectionList, [selection(ALG.SHA256, [pcr])]) });
}

/** TPM2_CreatePrimary in the owner hierarchy, empty password session, empty userAuth and data. */
export function createPrimaryCommand(template: Public): Buffer {
  return buildCommand({
    cc: CC.CreatePrimary,
    handles: [RH.OWNER],
    sessions: [pw('')],
    params: params(enc(sensitiveCreate, { userAuth: EMPTY, data: EMPTY }), enc(public2b, template), tpm2b(''), enc(pcrSelectionList, [])),
  });
}

/** TPM2_Create under `parent` (empty password), with `data` as the sensitive data (a sealed object's secret). */
export function createCommand(parent: number, template: Public, data: Buffer = EMPTY): Buffer {
  return buildCommand({
    cc: CC.Create,
    handles: [parent],
    sessions: [pw('')],
    params: params(enc(sensitiveCreate, { userAuth: EMPTY, data }), enc(public2b, template), tpm2b(''), enc(pcrSelectionList, [])),
  });
}

/**
 * TPM2_Load of what a TPM2_Create response returned: its TPM2B_PRIVATE and TPM2B_PUBLIC are the
 * first two parameters, passed on byte for byte.
 */
export function loadCommandFor(parent: number, createResponse: Buffer): Buffer {
  // header 10, parameterSize 4, then outPrivate and outPublic, each a u16 size and its bytes
  const privateEnd = 14 + 2 + createResponse.readUInt16BE(14);
  const publicEnd = privateEnd + 2 + createResponse.readUInt16BE(privateEnd);
  if (publicEnd > createResponse.length) throw new Error(`Create response of ${createResponse.length} bytes is too short for its outPrivate and outPublic`);
  return buildCommand({ cc: CC.Load, handles: [parent], sessions: [pw('')], params: createResponse.subarray(14, publicEnd) });
}

export function unsealCommand(handle: number): Buffer {
  return buildCommand({ cc: CC.Unseal, handles: [handle], sessions: [pw('')] });
}

export function flushContextCommand(handle: number): Buffer {
  return buildCommand({ cc: CC.FlushContext, params: u32b(handle) });
}

/** The 16 bytes of qualifying data (a verifier's nonce) every Quote carries. */
const QUALIFYING_DATA = createHash('sha256').update('vtpmd bench Quote nonce').digest().subarray(0, 16);
/** sha256:0-7, as `tpm2_quote -l sha256:0,1,2,3,4,5,6,7` sends it (3-byte select). */
const QUOTE_PCRS = [selection(ALG.SHA256, [0, 1, 2, 3, 4, 5, 6, 7])];

/** TPM2_Quote with `signHandle`, empty password, inScheme NULL (the key's own scheme). */
export function quoteCommand(signHandle: number): Buffer {
  return buildCommand({
    cc: CC.Quote,
    handles: [signHandle],
    sessions: [pw('')],
    params: params(enc(dataBuf, QUALIFYING_DATA), enc(sigScheme, NULL_SIG_SCHEME), enc(pcrSelectionList, QUOTE_PCRS)),
  });
}

/**
 * The TCG storage-key template (EK Credential Profile's SRK shape): RSA-2048, restricted
 * decrypt, AES-128-CFB, NULL scheme, exponent 0, with the given 256-byte `unique`.
 */
export function rsaStorageTemplate(unique: Buffer): Public {
  const t = rsaTemplate(A.fixedTPM | A.fixedParent | A.sensitiveDataOrigin | A.userWithAuth | A.noDA | A.restricted | A.decrypt);
  if (t.parameters.type !== ALG.RSA) throw new Error('rsaTemplate did not give an RSA template');
  t.parameters.symmetric = { algorithm: ALG.AES, keyBits: 128, mode: ALG.CFB };
  t.unique = { rsa: unique };
  return t;
}

/** The handle of a successful CreatePrimary / Load response (it precedes the parameters). */
export function responseHandleOf(response: Buffer): number {
  if (response.length < 14) throw new Error(`response of ${response.length} bytes has no handle (${response.toString('hex')})`);
  return response.readUInt32BE(10);
}

/** The response code of a TPM response; throws when the bytes cannot be a response at all. */
export function responseCodeOf(response: Buffer): number {
  if (response.length < 10) throw new Error(`response of ${response.length} bytes is shorter than a TPM header`);
  return response.readUInt32BE(6);
}

export function hex(rc: number): string {
  return `0x${(rc >>> 0).toString(16).padStart(3, '0')}`;
}
