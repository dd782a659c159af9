/**
 * Benchmark scenarios: the exact TPM 2.0 command bytes every path is fed. Bytes are built with
 * the project's wire Writer and codecs (and the test helpers' command builder and key
 * templates), so the peers compare on identical input.
 *
 * Two kinds:
 * - steady: one command sent back to back for a fixed time. `prepare` runs once per peer
 *   before warm-up (e.g. CreatePrimary of the signing key) and returns the measured command for
 *   that peer — identical everywhere except, at most, a handle the peer itself returned.
 * - one-shot: a command too slow for a timed loop (CreatePrimary RSA), sent a few times with a
 *   different input each time; each response's handle is flushed outside the timing.
 */
import { createHash } from 'node:crypto';
import { Writer } from '../../src/tpm/wire/buffer.ts';
import { ALG, CC, RH, ST, SU } from '../../src/tpm/tpm2/constants.ts';
import { dataBuf, digestValues } from '../../src/tpm/tpm2/types/basic.ts';
import { pcrSelectionList } from '../../src/tpm/tpm2/types/pcr.ts';
import { OBJECT_ATTR as A, public2b, sensitiveCreate, type Public } from '../../src/tpm/tpm2/types/public.ts';
import { NULL_SIG_SCHEME, sigScheme } from '../../src/tpm/tpm2/types/signature.ts';
import { buildCommand, enc, params, pw, selection, tpm2b, u32b } from '../../test/helpers/tpm2-commands.ts';
import { EMPTY, RESTRICTED, eccTemplate, rsaTemplate, scheme } from '../../test/helpers/tpm2-keys.ts';

/**
 * Sends one command to the peer being prepared and resolves with its response; rejects (with
 * the response bytes in the message) unless the rc is 0. `what` names the command for that message.
 */
export type Exchange = (command: Buffer, what: string) => Promise<Buffer>;

/** Warning codes a TSS answers by sending the same command again (tpm2-tss's ESYS does). */
const RESEND_RCS: ReadonlyMap<number, string> = new Map([
  [0x908, 'TPM_RC_YIELDED'],
  [0x90a, 'TPM_RC_TESTING'],
  [0x922, 'TPM_RC_RETRY'],
]);
const MAX_RESENDS = 3;

/**
 * An Exchange over a raw send function. Outside the measured loops a TPM may answer a warning
 * that means "send it again" (swtpm 0.7.1 answers the first Quote after power-on with
 * TPM_RC_RETRY); like a TSS, this resends up to three times and logs each resend in `resent`.
 * Any other rc but 0 rejects with the response bytes.
 */
export function makeExchange(send: (command: Buffer) => Promise<Buffer>, who: string, resent: string[]): Exchange {
  return async (command, what) => {
    for (let attempt = 0; ; attempt++) {
      const response = await send(command);
      const rc = responseCodeOf(response);
      if (rc === 0) return response;
      const warning = RESEND_RCS.get(rc);
      if (warning === undefined || attempt >= MAX_RESENDS) {
        throw new Error(`${who} answered ${what} with rc ${hex(rc)} (response ${response.toString('hex')})`);
      }
      resent.push(`${what}: ${warning} (${hex(rc)}), sent again`);
    }
  };
}

/** What `prepare` leaves on a peer: the measured command, and what undoes the setup afterwards. */
export interface Prepared {
  /** The measured command for this peer, sent as-is every time. */
  command: Buffer;
  /** Sent (rc checked) after the measurement, e.g. FlushContext of the key: the slots are few. */
  teardown: Buffer[];
  /** What setup produced that the command depends on (shown in notes when peers differ), e.g. "key 0x80000000". */
  detail?: string;
}

interface ScenarioBase {
  /** Stable machine name, used in JSON. */
  readonly id: string;
  /** Short name for `--scenarios`. */
  readonly name: string;
  /** What the table shows. */
  readonly title: string;
  readonly description: string;
  /** The measured command as a fresh TPM gets it (first transient handle 0x80000000): JSON and header line. */
  readonly sampleCommand: Buffer;
  /**
   * Whether the same command gives the same response bytes on every peer, so first responses can
   * be compared byte for byte. False for signatures (clock, counters, random nonces) and keys.
   */
  readonly deterministic: boolean;
}

export interface SteadyScenario extends ScenarioBase {
  readonly kind: 'steady';
  /** Runs once per peer, after the peer's own Startup and before warm-up. */
  prepare(exchange: Exchange): Promise<Prepared>;
  /** In process, every n-th execute() is timed: 64 for µs-scale commands, 1 where a clock read is negligible. */
  readonly inProcessSampleEvery: number;
}

export interface OneShotScenario extends ScenarioBase {
  readonly kind: 'one-shot';
  /**
   * The i-th command of a series (i = 0 is the unmeasured warm-up). Distinct for every
   * (series, i), so no peer can answer from a cache; every path of a round gets the same series.
   */
  command(series: string, i: number): Buffer;
  /** Sent after the i-th response, outside the timing (FlushContext of its handle); rc checked. */
  cleanup(response: Buffer): Buffer;
}

export type Scenario = SteadyScenario | OneShotScenario;

/** TPMA_SESSION.continueSession, as tpm2-tools sets it on password sessions. */
const CONTINUE_SESSION = 0x01;

/** A TPM 2.0 command: header, handles, optional authorization area, parameter bytes. */
export function tpm2Command(cc: number, handles: readonly number[], auth: Buffer | null, params: Uint8Array): Buffer {
  const w = new Writer(64);
  w.u16(auth === null ? ST.NO_SESSIONS : ST.SESSIONS);
  const sizeAt = w.reserveU32();
  w.u32(cc);
  for (const h of handles) w.u32(h);
  if (auth !== null) {
    w.u32(auth.length);
    w.bytes(auth);
  }
  w.bytes(params);
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

/** TPM2_PCR_Extend of one SHA-256 digest into `pcr`, authorized by an empty password. */
export function pcrExtendSha256(pcr = 16): SteadyScenario {
  const digest = createHash('sha256').update('vtpmd bench PCR_Extend').digest();
  const params = new Writer(64);
  digestValues.encode(params, [{ hashAlg: ALG.SHA256, digest }]);
  const command = tpm2Command(CC.PCR_Extend, [pcr], passwordSession(), params.finish());
  // header 10 + handle 4 + authSize 4 + session 9 + count 4 + alg 2 + digest 32
  if (command.length !== 65) throw new Error(`PCR_Extend command is ${command.length} bytes, expected 65: the encoding changed`);
  return {
    kind: 'steady',
    id: 'pcr-extend-sha256',
    name: 'extend',
    title: 'PCR_Extend SHA-256',
    description: `TPM2_PCR_Extend, PCR ${pcr}, password session (empty auth), one 32-byte SHA-256 digest`,
    sampleCommand: command,
    deterministic: true,
    inProcessSampleEvery: 64,
    prepare: async () => ({ command, teardown: [] }),
  };
}

// ---------------------------------------------------------------------------------------------
// Keys

/** The first transient handle a fresh TPM hands out: what `sampleCommand` assumes. */
const FIRST_TRANSIENT = 0x80000000;

/** TPM2_CreatePrimary in the owner hierarchy, empty password session, empty userAuth and data. */
export function createPrimaryCommand(template: Public): Buffer {
  return buildCommand({
    cc: CC.CreatePrimary,
    handles: [RH.OWNER],
    sessions: [pw('')],
    params: params(enc(sensitiveCreate, { userAuth: EMPTY, data: EMPTY }), enc(public2b, template), tpm2b(''), enc(pcrSelectionList, [])),
  });
}

/** The handle of a successful CreatePrimary / Load response (it precedes the parameters). */
export function responseHandleOf(response: Buffer): number {
  if (response.length < 14) throw new Error(`response of ${response.length} bytes has no handle (${response.toString('hex')})`);
  return response.readUInt32BE(10);
}

export function flushContextCommand(handle: number): Buffer {
  return buildCommand({ cc: CC.FlushContext, params: u32b(handle) });
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

// ---------------------------------------------------------------------------------------------
// Quote

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

function quoteScenario(id: string, name: string, title: string, keyText: string, template: Public): SteadyScenario {
  const createKey = createPrimaryCommand(template);
  return {
    kind: 'steady',
    id,
    name,
    title,
    description:
      `TPM2_Quote of PCRs sha256:0-7 with 16 bytes of qualifying data, inScheme NULL, password session (empty auth), ` +
      `signed by a primary ${keyText} created per peer in the owner hierarchy before warm-up`,
    sampleCommand: quoteCommand(FIRST_TRANSIENT),
    deterministic: false,
    inProcessSampleEvery: 1,
    prepare: async (exchange) => {
      const handle = responseHandleOf(await exchange(createKey, `CreatePrimary (${keyText})`));
      return { command: quoteCommand(handle), teardown: [flushContextCommand(handle)], detail: `key 0x${handle.toString(16)}` };
    },
  };
}

export function quoteEccP256(): SteadyScenario {
  return quoteScenario(
    'quote-ecc-p256',
    'quote-ecc',
    'Quote ECC P-256',
    'ECC P-256 restricted signing key (ECDSA-SHA256, symmetric NULL)',
    eccTemplate(RESTRICTED, scheme(ALG.ECDSA, ALG.SHA256)),
  );
}

export function quoteRsa2048(): SteadyScenario {
  return quoteScenario(
    'quote-rsa-2048',
    'quote-rsa',
    'Quote RSA-2048',
    'RSA-2048 restricted signing key (RSASSA-SHA256, symmetric NULL)',
    rsaTemplate(RESTRICTED, scheme(ALG.RSASSA, ALG.SHA256), 2048),
  );
}

// ---------------------------------------------------------------------------------------------
// CreatePrimary

/** 256 bytes: SHA-256(series ‖ i) then zeros. Each (series, i) gives a different template, so a different key. */
function uniqueFor(series: string, i: number): Buffer {
  const u = Buffer.alloc(256);
  createHash('sha256').update(`vtpmd bench CreatePrimary ${series} ${i}`).digest().copy(u);
  return u;
}

export function createPrimaryRsa2048(): OneShotScenario {
  return {
    kind: 'one-shot',
    id: 'createprimary-rsa-2048',
    name: 'createprimary-rsa',
    title: 'CreatePrimary RSA-2048',
    description:
      'TPM2_CreatePrimary in the owner hierarchy, password session (empty auth), RSA-2048 storage-key template ' +
      '(restricted decrypt, AES-128-CFB, noDA) with a different 256-byte unique each time; ' +
      'each new handle is flushed (FlushContext, rc checked) outside the timing',
    sampleCommand: createPrimaryCommand(rsaStorageTemplate(uniqueFor('sample', 0))),
    deterministic: false,
    command: (series, i) => createPrimaryCommand(rsaStorageTemplate(uniqueFor(series, i))),
    cleanup: (response) => flushContextCommand(responseHandleOf(response)),
  };
}

export const SCENARIOS: readonly (() => Scenario)[] = [() => pcrExtendSha256(16), quoteEccP256, quoteRsa2048, createPrimaryRsa2048];

/** The response code of a TPM response; throws when the bytes cannot be a response at all. */
export function responseCodeOf(response: Buffer): number {
  if (response.length < 10) throw new Error(`response of ${response.length} bytes is shorter than a TPM header`);
  return response.readUInt32BE(6);
}

export function hex(rc: number): string {
  return `0x${(rc >>> 0).toString(16).padStart(3, '0')}`;
}
