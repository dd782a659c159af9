/**
 * How long a real discrete TPM takes per command, so benchmarks and simulations can show what a
 * slow chip on an LPC/SPI bus does to the layers above it. Off by default: the chip then answers
 * as fast as the engine does.
 */
import { commandCodeOf } from '../tpm/device.ts';
import { CC } from '../tpm/tpm2/constants.ts';
import { ORD as TPM12_ORD } from '../tpm/tpm12/constants.ts';

export interface LatencyModel {
  /** Every command takes at least this long (bus transfer, firmware dispatch). */
  baseMs: number;
  /** Per command code, replacing `baseMs`; keyed by personality because ordinals differ. */
  perCommandMs?: Partial<Record<'tpm2' | 'tpm12', Readonly<Record<number, number>>>>;
}


/**
 * Figures of the order published for SPI-attached discrete TPMs (firmware TPMs are faster, older
 * LPC parts slower): a few milliseconds for simple commands, tens to hundreds for private-key
 * operations, seconds for RSA key generation.
 */
export const DISCRETE_TPM_LATENCY: LatencyModel = {
  baseMs: 2,
  perCommandMs: {
    tpm2: {
      [CC.PCR_Extend]: 4,
      [CC.PCR_Read]: 3,
      [CC.Quote]: 60,
      [CC.Sign]: 60,
      [CC.Certify]: 60,
      [CC.Create]: 900,
      [CC.CreatePrimary]: 900,
      [CC.CreateLoaded]: 900,
      [CC.Load]: 20,
      [CC.Unseal]: 10,
      [CC.RSA_Decrypt]: 120,
      [CC.ActivateCredential]: 120,
    },
    tpm12: {
      [TPM12_ORD.Extend]: 4,
      [TPM12_ORD.Quote]: 200,
      [TPM12_ORD.Quote2]: 200,
      [TPM12_ORD.Sign]: 200,
      [TPM12_ORD.Seal]: 30,
      [TPM12_ORD.Unseal]: 200,
      [TPM12_ORD.CreateWrapKey]: 2000,
      [TPM12_ORD.LoadKey2]: 200,
    },
  },
};

/** Milliseconds `command` should take under `model`. */
export function delayFor(model: LatencyModel, family: 'tpm2' | 'tpm12', command: Uint8Array): number {
  if (command.length < 10) return model.baseMs;
  return model.perCommandMs?.[family]?.[commandCodeOf(command)] ?? model.baseMs;
}
