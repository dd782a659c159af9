/**
 * Benchmark scenarios: the exact TPM 2.0 command bytes every path is fed. One Buffer per scenario
 * goes unchanged to the in-process engine and over the wire to every peer, so the peers compare
 * on identical input. Bytes are built with the project's wire Writer and codecs.
 */
import { createHash } from 'node:crypto';
import { Writer } from '../../src/tpm/wire/buffer.ts';
import { ALG, CC, RH, ST, SU } from '../../src/tpm/tpm2/constants.ts';
import { digestValues } from '../../src/tpm/tpm2/types/basic.ts';

export interface Scenario {
  /** Stable machine name, used in JSON and on the command line. */
  readonly id: string;
  /** What the table shows. */
  readonly title: string;
  readonly description: string;
  /** Sent once (after the peer's own Startup) before warm-up; each must answer rc 0. */
  readonly setup: readonly Buffer[];
  /** The measured command, sent as-is every time. */
  readonly command: Buffer;
}

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
export function pcrExtendSha256(pcr = 16): Scenario {
  const digest = createHash('sha256').update('vtpmd bench PCR_Extend').digest();
  const params = new Writer(64);
  digestValues.encode(params, [{ hashAlg: ALG.SHA256, digest }]);
  const command = tpm2Command(CC.PCR_Extend, [pcr], passwordSession(), params.finish());
  // header 10 + handle 4 + authSize 4 + session 9 + count 4 + alg 2 + digest 32
  if (command.length !== 65) throw new Error(`PCR_Extend command is ${command.length} bytes, expected 65: the encoding changed`);
  return {
    id: 'pcr-extend-sha256',
    title: 'PCR_Extend SHA-256',
    description: `TPM2_PCR_Extend, PCR ${pcr}, password session (empty auth), one 32-byte SHA-256 digest`,
    setup: [],
    command,
  };
}

export const SCENARIOS: readonly (() => Scenario)[] = [() => pcrExtendSha256(16)];

/** The response code of a TPM response; throws when the bytes cannot be a response at all. */
export function responseCodeOf(response: Buffer): number {
  if (response.length < 10) throw new Error(`response of ${response.length} bytes is shorter than a TPM header`);
  return response.readUInt32BE(6);
}

export function hex(rc: number): string {
  return `0x${(rc >>> 0).toString(16).padStart(3, '0')}`;
}
