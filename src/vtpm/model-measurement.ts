/**
 * A device model's measurement: the digest of its program code segment (the engine and device
 * model code it runs) and of its configuration, taken before the model runs: when it is made and
 * every time it is loaded. The PSS binds each vTPM's state to it, so a vTPM's NVM is only ever
 * handed back to the code and configuration that wrote it — or to code an upgrade staged as its
 * successor (src/daemon/code-upgrade.ts).
 */
import { createHash } from 'node:crypto';
import { componentImage, PROJECT_ROOT, readComponentCode } from '../hwtpm/gvtpm-component-code.ts';

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

/** Every folder a device model's code comes from. */
export function modelCodeFolders(): string[] {
  return [...new Set(Object.values(MODEL_CODE).flat())];
}

/** A code digest and a configuration as the measurement the PSS binds a vTPM's state to. */
export function measurementOf(codeDigest: Buffer, config: ModelConfig): Buffer {
  const canonical = JSON.stringify({ design: config.design, tpm: config.tpm, pcrCount: config.pcrCount, durability: config.durability, migratable: config.migratable });
  return createHash('sha256').update('vtpmd device model\0').update(codeDigest).update(canonical).digest();
}

/**
 * Measures models: the code under `rootDir` (default this checkout, the code running), digested
 * once per process and TPM version, since the code does not change under a running daemon.
 */
export class ModelMeasurer {
  private readonly code = new Map<string, Promise<Buffer>>();

  constructor(private readonly rootDir = PROJECT_ROOT) {}

  async measure(config: ModelConfig): Promise<Buffer> {
    return measurementOf(await this.codeDigest(config.tpm), config);
  }

  /**
   * The measurements of `config` under the code that ran before this code, as far back as
   * `transitions` (earlier code digest → later one, each authorized by an upgrade) reach.
   */
  async earlierMeasurements(config: ModelConfig, transitions: readonly (readonly [Buffer, Buffer])[]): Promise<Buffer[]> {
    if (transitions.length === 0) return [];
    const seen = new Set([(await this.codeDigest(config.tpm)).toString('hex')]);
    const out: Buffer[] = [];
    for (let frontier = [...seen]; frontier.length > 0; ) {
      const next: string[] = [];
      for (const [from, to] of transitions) {
        const earlier = from.toString('hex');
        if (frontier.includes(to.toString('hex')) && !seen.has(earlier)) {
          seen.add(earlier);
          next.push(earlier);
          out.push(measurementOf(from, config));
        }
      }
      frontier = next;
    }
    return out;
  }

  /** The digest of the code a model of TPM version `tpm` runs. */
  codeDigest(tpm: ModelConfig['tpm']): Promise<Buffer> {
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
