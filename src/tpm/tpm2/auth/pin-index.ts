/**
 * NV PIN indices (TPM 2.0 Part 1, clause 37.2; Part 2, TPM_NT): an index whose data is
 * TPMS_NV_PIN_COUNTER_PARAMETERS {pinCount, pinLimit} and whose authValue is a PIN that serves
 * only while pinCount < pinLimit (auth/authorize.ts checks that before the PIN is compared).
 *
 * - PIN Pass: every successful use of the PIN counts; pinLimit is a number of uses.
 * - PIN Fail: every wrong PIN counts, a right one sets pinCount back to zero; pinLimit is the
 *   number of consecutive failures allowed. Such an index is exempt from dictionary-attack
 *   protection (NV_DefineSpace insists on TPMA_NV_NO_DA): it is its own lockout, and a wrong PIN
 *   is TPM_RC_AUTH_FAIL without touching the TPM's failure counter.
 *
 * Only the PIN itself counts — a password or HMAC session on the index — not a policy session
 * that authorizes the index by other means. The new count is NV: it is written before the
 * command's response.
 */
import { HT } from '../constants.ts';
import type { Tpm2Engine } from '../engine.ts';
import { NT, nvType } from '../types/nv.ts';

function pinIndex(tpm: Tpm2Engine, h: number): { data: Buffer; type: number } | undefined {
  if (h >>> 24 !== HT.NV_INDEX) return undefined;
  const ix = tpm.nv.nvIndices.get(h);
  if (!ix || ix.data.length < 8) return undefined;
  const type = nvType(ix.attributes);
  return type === NT.PIN_PASS || type === NT.PIN_FAIL ? { data: ix.data, type } : undefined;
}

function setPinCount(tpm: Tpm2Engine, data: Buffer, count: number): void {
  if (data.readUInt32BE(0) === count) return;
  data.writeUInt32BE(count >>> 0, 0);
  tpm.markNvDirty();
}

/** The PIN was right: a PIN Pass index counts the use, a PIN Fail index forgets its failures. */
export function pinAccepted(tpm: Tpm2Engine, h: number): void {
  const pin = pinIndex(tpm, h);
  if (!pin) return;
  setPinCount(tpm, pin.data, pin.type === NT.PIN_PASS ? pin.data.readUInt32BE(0) + 1 : 0);
}

/**
 * The PIN was wrong. True for a PIN Fail index, whose count went up (the caller answers
 * TPM_RC_AUTH_FAIL); false for anything else, which the caller treats as any wrong authValue.
 */
export function pinRefused(tpm: Tpm2Engine, h: number): boolean {
  const pin = pinIndex(tpm, h);
  if (!pin || pin.type !== NT.PIN_FAIL) return false;
  setPinCount(tpm, pin.data, pin.data.readUInt32BE(0) + 1);
  return true;
}
