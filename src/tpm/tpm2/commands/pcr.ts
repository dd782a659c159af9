import { u32, yesNo } from '../../wire/codec.ts';
import { HASH_ALGS, digest, digestSize } from '../../crypto/hash.ts';
import { CC, RH } from '../constants.ts';
import { command } from '../command.ts';
import { RC, TpmError } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { digestList, digestValues, eventBuf, type TaggedHash } from '../types/basic.ts';
import { dhPcr, dhPcrOrNull, rhPlatform } from '../types/handles.ts';
import { isSelected, pcrSelectionList, type PcrSelection } from '../types/pcr.ts';
import { pcrAttributes } from '../state/pcr-attributes.ts';

/** The most digests one PCR_Read returns (a TPML_DIGEST holds eight). */
const MAX_READ = 8;

/** TPM_RC_LOCALITY unless the PCR may be extended from this locality (TPM_RH_NULL always may). */
export function checkExtendLocality(pcr: number, locality: number): void {
  if (pcr !== RH.NULL && !(pcrAttributes(pcr).extendLocalities & (1 << locality))) throw new TpmError(RC.LOCALITY);
}

/** Digests of an event in every implemented algorithm, as PCR_Event reports them. */
export function eventDigests(data: Uint8Array): TaggedHash[] {
  return HASH_ALGS.map((h) => ({ hashAlg: h.alg, digest: digest(h.alg, data) }));
}

/** Extends a PCR with one digest per bank (missing or unallocated banks are skipped). */
export function extendPcr(tpm: Tpm2Engine, pcr: number, locality: number, digests: readonly TaggedHash[]): void {
  if (pcr === RH.NULL) return;
  checkExtendLocality(pcr, locality);
  for (const d of digests) tpm.pcrs.extend(d.hashAlg, pcr, d.digest);
  tpm.pcrs.noteChanged(pcr);
}

/** PCR_SELECT_MAX: a selection may not be wider than the PCRs this TPM has. */
function checkSelectSize(tpm: Tpm2Engine, selections: readonly PcrSelection[]): void {
  const max = Math.ceil(tpm.pcrCount / 8);
  if (selections.some((s) => s.select.length > max)) throw TpmError.parameter(RC.VALUE, 1);
}

export const pcrCommands = [
  command({
    cc: CC.PCR_Extend,
    name: 'PCR_Extend',
    nv: true,
    handles: [{ name: 'pcrHandle', type: dhPcrOrNull, auth: 'user' }],
    params: { digests: digestValues },
    response: {},
    handler: ({ tpm, handles, locality }, { digests }) => {
      extendPcr(tpm, handles[0]!, locality, digests);
      return {};
    },
  }),
  command({
    cc: CC.PCR_Event,
    name: 'PCR_Event',
    nv: true,
    handles: [{ name: 'pcrHandle', type: dhPcrOrNull, auth: 'user' }],
    params: { eventData: eventBuf },
    response: { digests: digestValues },
    handler: ({ tpm, handles, locality }, { eventData }) => {
      const digests = eventDigests(eventData);
      extendPcr(tpm, handles[0]!, locality, digests);
      return { digests };
    },
  }),
  command({
    cc: CC.PCR_Read,
    name: 'PCR_Read',
    handles: [],
    params: { pcrSelectionIn: pcrSelectionList },
    response: { pcrUpdateCounter: u32, pcrSelectionOut: pcrSelectionList, pcrValues: digestList },
    handler: ({ tpm }, { pcrSelectionIn }) => {
      checkSelectSize(tpm, pcrSelectionIn);
      const values: Buffer[] = [];
      const out: PcrSelection[] = pcrSelectionIn.map((sel) => {
        const select = Buffer.alloc(sel.select.length);
        for (let pcr = 0; pcr < sel.select.length * 8; pcr++) {
          if (!isSelected(sel.select, pcr)) continue;
          const v = tpm.pcrs.value(sel.hash, pcr);
          if (!v || values.length >= MAX_READ) continue;
          values.push(v);
          select[pcr >> 3]! |= 1 << (pcr & 7);
        }
        return { hash: sel.hash, select };
      });
      return { pcrUpdateCounter: tpm.pcrs.updateCounter, pcrSelectionOut: out, pcrValues: values };
    },
  }),
  command({
    cc: CC.PCR_Reset,
    name: 'PCR_Reset',
    nv: true,
    handles: [{ name: 'pcrHandle', type: dhPcr, auth: 'user' }],
    params: {},
    response: {},
    handler: ({ tpm, handles, locality }) => {
      const pcr = handles[0]!;
      if (!(pcrAttributes(pcr).resetLocalities & (1 << locality))) throw new TpmError(RC.LOCALITY);
      tpm.pcrs.reset(pcr);
      tpm.pcrs.noteChanged(pcr);
      return {};
    },
  }),
  command({
    cc: CC.PCR_Allocate,
    name: 'PCR_Allocate',
    handles: [{ name: 'authHandle', type: rhPlatform, auth: 'user' }],
    params: { pcrAllocation: pcrSelectionList },
    response: { allocationSuccess: yesNo, maxPCR: u32, sizeNeeded: u32, sizeAvailable: u32 },
    nv: true,
    handler: ({ tpm }, { pcrAllocation }) => {
      checkSelectSize(tpm, pcrAllocation);
      const bytes = Math.ceil(tpm.pcrCount / 8);
      const next = new Map(tpm.nv.pendingAllocation ?? tpm.nv.allocation);
      for (const sel of pcrAllocation) {
        const bitmap = Buffer.alloc(bytes);
        for (let pcr = 0; pcr < tpm.pcrCount; pcr++) if (isSelected(sel.select, pcr)) bitmap[pcr >> 3]! |= 1 << (pcr & 7);
        next.set(sel.hash, bitmap);
      }
      let sizeNeeded = 0;
      for (const [alg, bitmap] of next) {
        for (let pcr = 0; pcr < tpm.pcrCount; pcr++) if (isSelected(bitmap, pcr)) sizeNeeded += digestSize(alg);
      }
      const sizeAvailable = tpm.pcrCount * HASH_ALGS.reduce((n, h) => n + h.size, 0);
      // Takes effect at the next TPM Reset, as on a chip.
      tpm.nv.pendingAllocation = next;
      tpm.markNvDirty();
      return { allocationSuccess: true, maxPCR: tpm.pcrCount, sizeNeeded, sizeAvailable };
    },
  }),
];
