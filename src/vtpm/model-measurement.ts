/**
 * A device model's measurement: the digest of its program code segment (the engine and device
 * model code it runs) and of its configuration, taken before the model first runs. The PSS binds
 * each vTPM's state to it, so a vTPM's NVM is only ever handed back to the same code and
 * configuration that wrote it.
 */
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { componentImage, readComponentCode } from '../hwtpm/gvtpm-component-code.ts';

export interface ModelConfig {
  /** Where the vTPM's keys live: in the model, or inside the hwTPM. */
  readonly design: 'software' | 'hardware';
  readonly tpm: '2.0' | '1.2';
  readonly pcrCount: number;
  /** 'per-command' saves before each response; 'batched' may lose the last commands on a crash. */
  readonly durability: 'per-command' | 'batched';
  readonly migratable: boolean;
}

export const DEFAULT_MODEL_CONFIG: ModelConfig = { design: 'software', tpm: '2.0', pcrCount: 24, durability: 'per-command', migratable: false };

/** The folders whose code a device model runs, per TPM version. */
const MODEL_CODE: Record<ModelConfig['tpm'], readonly string[]> = {
  '2.0': ['src/tpm/tpm2', 'src/tpm/crypto', 'src/tpm/wire', 'src/vtpm'],
  '1.2': ['src/tpm/tpm12', 'src/tpm/crypto', 'src/tpm/wire', 'src/vtpm'],
};

/** Digests of the code images, computed once per process and TPM version: the code does not change under a running daemon. */
export class ModelMeasurer {
  private readonly code = new Map<string, Promise<Buffer>>();

  constructor(private readonly rootDir = resolve(import.meta.dirname, '..', '..')) {}

  async measure(config: ModelConfig): Promise<Buffer> {
    const code = await this.codeDigest(config.tpm);
    const canonical = JSON.stringify({ design: config.design, tpm: config.tpm, pcrCount: config.pcrCount, durability: config.durability, migratable: config.migratable });
    return createHash('sha256').update('vtpmd device model\0').update(code).update(canonical).digest();
  }

  private codeDigest(tpm: ModelConfig['tpm']): Promise<Buffer> {
    let d = this.code.get(tpm);
    if (!d) {
      d = (async () => {
        const h = createHash('sha256');
        for (const folder of MODEL_CODE[tpm]) h.update(componentImage(await readComponentCode(this.rootDir, folder, folder)));
        return h.digest();
      })();
      this.code.set(tpm, d);
    }
    return d;
  }
}
