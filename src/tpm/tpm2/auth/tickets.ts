import { constantTimeEqual, hmac } from '../../crypto/hash.ts';
import { ALG, RH, ST } from '../constants.ts';
import type { Tpm2Engine } from '../engine.ts';
import type { TkAuth, TkVerified } from '../types/policy.ts';
import { u32be } from '../../wire/buffer.ts';

/**
 * Tickets (Part 1, 11.4.6; Part 2, TPMT_TK_*): HMACs under a hierarchy's proof that let the TPM
 * recognise later something it checked earlier. The HMAC hash is the TPM's context-integrity
 * hash; tickets never leave the TPM that made them, so only consistency matters.
 */
export const TICKET_HASH = ALG.SHA256;

/** Bit 63 of the PolicySigned/PolicySecret timeout buffer: the ticket also expires at TPM Reset. */
export const EXPIRES_ON_RESET = 1n << 63n;

const EMPTY = Buffer.alloc(0);

function u16(v: number): Buffer {
  const b = Buffer.allocUnsafe(2);
  b.writeUInt16BE(v);
  return b;
}

function u64(v: bigint): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeBigUInt64BE(BigInt.asUintN(64, v));
  return b;
}

/**
 * The TPM's time epoch: Time restarts at every _TPM_Init, after which a Startup always changes
 * resetCount or restartCount, so the pair names one run of Time.
 */
export function timeEpoch(tpm: Tpm2Engine): Buffer {
  return Buffer.concat([u32be(tpm.nv.resetCount), u32be(tpm.nv.restartCount)]);
}

/**
 * TPMT_TK_AUTH (Part 2): HMAC(proof, type || cpHash || policyRef || authName || timeout
 * [|| epoch [|| resetCount]]), the timeout a TPM Time in milliseconds without the
 * expires-on-reset flag.
 */
export function authTicketDigest(
  tpm: Tpm2Engine,
  type: number,
  hierarchy: number,
  timeout: bigint,
  expiresOnReset: boolean,
  cpHash: Uint8Array,
  policyRef: Uint8Array,
  entityName: Uint8Array,
): Buffer {
  const parts: Uint8Array[] = [u16(type), cpHash, policyRef, entityName, u64(timeout)];
  if (timeout !== 0n) {
    parts.push(timeEpoch(tpm));
    if (expiresOnReset) parts.push(u32be(tpm.nv.resetCount));
  }
  return hmac(TICKET_HASH, tpm.proofOf(hierarchy), ...parts);
}

export function authTicket(
  tpm: Tpm2Engine,
  type: number,
  hierarchy: number,
  timeout: bigint,
  expiresOnReset: boolean,
  cpHash: Uint8Array,
  policyRef: Uint8Array,
  entityName: Uint8Array,
): TkAuth {
  return { tag: type, hierarchy, digest: authTicketDigest(tpm, type, hierarchy, timeout, expiresOnReset, cpHash, policyRef, entityName) };
}

/** The ticket PolicySigned and PolicySecret return when they make none. */
export function nullAuthTicket(type: number): TkAuth {
  return { tag: type, hierarchy: RH.NULL, digest: EMPTY };
}

/** TPMT_TK_VERIFIED's HMAC: HMAC(proof(hierarchy), TPM_ST_VERIFIED || digest || keyName). */
export function verifiedTicketDigest(tpm: Tpm2Engine, hierarchy: number, digest: Uint8Array, keyName: Uint8Array): Buffer {
  return hmac(TICKET_HASH, tpm.proofOf(hierarchy), u16(ST.VERIFIED), digest, keyName);
}

/**
 * The TPMT_TK_VERIFIED that TPM2_VerifySignature returns for `digest` signed by the key named
 * `keyName` in `hierarchy`: a NULL ticket for a key of the NULL hierarchy (Part 3, 20.1), which
 * PolicyAuthorize then refuses.
 */
export function verifiedTicket(tpm: Tpm2Engine, hierarchy: number, digest: Uint8Array, keyName: Uint8Array): TkVerified {
  if (hierarchy === RH.NULL) return { tag: ST.VERIFIED, hierarchy: RH.NULL, digest: EMPTY };
  return { tag: ST.VERIFIED, hierarchy, digest: verifiedTicketDigest(tpm, hierarchy, digest, keyName) };
}

/** Whether a TPMT_TK_VERIFIED proves `digest` was signed by the key named `keyName`. */
export function checkVerifiedTicket(tpm: Tpm2Engine, ticket: TkVerified, digest: Uint8Array, keyName: Uint8Array): boolean {
  if (ticket.hierarchy === RH.NULL) return false;
  return constantTimeEqual(ticket.digest, verifiedTicketDigest(tpm, ticket.hierarchy, digest, keyName));
}
