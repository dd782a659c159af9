/**
 * PC-Client PCR attributes: which PCRs survive Shutdown(STATE), and from which localities each
 * may be reset or extended (bit n = locality n). PCRs past 23 behave like 23 (application).
 */
export interface PcrAttributes {
  readonly stateSave: boolean;
  readonly resetLocalities: number;
  readonly extendLocalities: number;
  /** D-RTM PCRs start at all ones, so a verifier can tell "never reset" from "reset". */
  readonly initOnes: boolean;
  /** Changes to these do not bump pcrUpdateCounter (the TCB group). */
  readonly noIncrement: boolean;
}

const STATIC: PcrAttributes = { stateSave: true, resetLocalities: 0, extendLocalities: 0x1f, initOnes: false, noIncrement: false };
const APPLICATION: PcrAttributes = { stateSave: false, resetLocalities: 0x0f, extendLocalities: 0x1f, initOnes: false, noIncrement: false };

function drtm(resetLocalities: number, extendLocalities: number, noIncrement = false): PcrAttributes {
  return { stateSave: false, resetLocalities, extendLocalities, initOnes: true, noIncrement };
}

const TABLE: readonly PcrAttributes[] = [
  ...Array.from({ length: 16 }, () => STATIC),
  APPLICATION, // 16: debug
  drtm(0x10, 0x1c), // 17: locality 4
  drtm(0x10, 0x1c), // 18: locality 3
  drtm(0x10, 0x0c), // 19: locality 2
  drtm(0x14, 0x0e, true), // 20: locality 1
  drtm(0x14, 0x04, true), // 21: dynamic OS
  drtm(0x14, 0x04, true), // 22: dynamic OS
  APPLICATION, // 23: application
];

export function pcrAttributes(pcr: number): PcrAttributes {
  return TABLE[pcr] ?? APPLICATION;
}
