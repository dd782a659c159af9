/**
 * Benchmark scenarios: what every path is fed. Three kinds:
 * - steady: one command sent back to back for a fixed time. `prepare` runs once per vTPM before
 *   warm-up (e.g. the key a Quote signs with) and returns the measured command for that vTPM —
 *   identical everywhere except, at most, a handle that vTPM itself returned.
 * - one-shot: a command too slow for a timed loop (CreatePrimary RSA), sent a few times with a
 *   different input each time; each response's handle is flushed outside the timing.
 * - cold-load: the first command to a vTPM that is not in memory; each path makes its vTPM cold
 *   in its own way (see cold-load.ts) and times that command until its response.
 */
import { createHash } from 'node:crypto';
import { ALG } from '../../src/tpm/tpm2/constants.ts';
import { type Public } from '../../src/tpm/tpm2/types/public.ts';
import { eccStorage, sealedData } from '../../test/helpers/tpm2-objects.ts';
import { RESTRICTED, eccTemplate, rsaTemplate, scheme } from '../../test/helpers/tpm2-keys.ts';
import {
  createCommand,
  createPrimaryCommand,
  flushContextCommand,
  loadCommandFor,
  pcrExtendCommand,
  pcrReadCommand,
  quoteCommand,
  responseHandleOf,
  rsaStorageTemplate,
  unsealCommand,
} from './commands.ts';
import type { Exchange } from './exchange.ts';

/** What `prepare` leaves on a vTPM: the measured command, and what undoes the setup afterwards. */
export interface Prepared {
  /** The measured command for this vTPM, sent as-is every time. */
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
  /** Other names `--scenarios` accepts. */
  readonly aliases: readonly string[];
  /** What the table shows. */
  readonly title: string;
  readonly description: string;
  /** The measured command as a fresh TPM gets it (first transient handles from 0x80000000): JSON and header line. */
  readonly sampleCommand: Buffer;
  /**
   * Whether the same command gives the same response bytes on every peer, so first responses can
   * be compared byte for byte. False for signatures (clock, counters, random nonces) and keys.
   */
  readonly deterministic: boolean;
}

export interface SteadyScenario extends ScenarioBase {
  readonly kind: 'steady';
  /** Runs once per vTPM, after its Startup and before warm-up. */
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

export interface ColdLoadScenario extends ScenarioBase {
  readonly kind: 'cold-load';
  /** Sent once to the vTPM before it is first made cold, so its saved state holds something. */
  readonly seed: Buffer;
  /** The first command after the vTPM was made cold: the timed one. */
  readonly command: Buffer;
}

export type Scenario = SteadyScenario | OneShotScenario | ColdLoadScenario;

/** The first transient handle a fresh TPM hands out: what `sampleCommand` assumes. */
const FIRST_TRANSIENT = 0x80000000;
const EXTEND_PCR = 16;

function pcrExtend(hashAlg: number, bank: string, id: string, name: string, aliases: string[]): SteadyScenario {
  const command = pcrExtendCommand(hashAlg, EXTEND_PCR);
  return {
    kind: 'steady',
    id,
    name,
    aliases,
    title: `PCR_Extend ${bank}`,
    description: `TPM2_PCR_Extend, PCR ${EXTEND_PCR}, password session (empty auth), one ${command.length - 33}-byte ${bank} digest`,
    sampleCommand: command,
    deterministic: true,
    inProcessSampleEvery: 64,
    prepare: async () => ({ command, teardown: [] }),
  };
}

// ---------------------------------------------------------------------------------------------
// Keys

/**
 * An ECC P-256 storage primary (restricted decrypt, AES-128-CFB, noDA): the parent of sealed
 * objects and of the RSA Quote key. ECC because a vTPM derives an RSA primary's primes from its
 * seed, 0.2–0.7 s each in vtpmd, and every one of N vTPMs needs its own.
 */
const STORAGE_PRIMARY = createPrimaryCommand(eccStorage());
const STORAGE_TEXT = 'ECC P-256 storage primary (AES-128-CFB, noDA)';

async function storagePrimary(exchange: Exchange): Promise<number> {
  return responseHandleOf(await exchange(STORAGE_PRIMARY, `CreatePrimary (${STORAGE_TEXT})`));
}

/** Create under `parent`, then Load: the new object's handle. */
async function createLoaded(exchange: Exchange, parent: number, create: Buffer, what: string): Promise<number> {
  const created = await exchange(create, `Create (${what})`);
  return responseHandleOf(await exchange(loadCommandFor(parent, created), `Load (${what})`));
}

// ---------------------------------------------------------------------------------------------
// Quote

const QUOTE_TEXT = 'TPM2_Quote of PCRs sha256:0-7 with 16 bytes of qualifying data, inScheme NULL, password session (empty auth)';

export function quoteEccP256(): SteadyScenario {
  const keyText = 'ECC P-256 restricted signing key (ECDSA-SHA256, symmetric NULL)';
  const createKey = createPrimaryCommand(eccTemplate(RESTRICTED, scheme(ALG.ECDSA, ALG.SHA256)));
  return {
    kind: 'steady',
    id: 'quote-ecc-p256',
    name: 'quote-ecc',
    aliases: [],
    title: 'Quote ECC P-256',
    description: `${QUOTE_TEXT}, signed by a primary ${keyText} created per vTPM in the owner hierarchy before warm-up`,
    sampleCommand: quoteCommand(FIRST_TRANSIENT),
    deterministic: false,
    inProcessSampleEvery: 1,
    prepare: async (exchange) => {
      const handle = responseHandleOf(await exchange(createKey, `CreatePrimary (${keyText})`));
      return { command: quoteCommand(handle), teardown: [flushContextCommand(handle)], detail: `key 0x${handle.toString(16)}` };
    },
  };
}

export function quoteRsa2048(): SteadyScenario {
  const keyText = 'RSA-2048 restricted signing key (RSASSA-SHA256, symmetric NULL)';
  const template: Public = rsaTemplate(RESTRICTED, scheme(ALG.RSASSA, ALG.SHA256), 2048);
  return {
    kind: 'steady',
    id: 'quote-rsa-2048',
    name: 'quote-rsa',
    aliases: [],
    title: 'Quote RSA-2048',
    description: `${QUOTE_TEXT}, signed by an ${keyText} made per vTPM before warm-up with TPM2_Create under an ${STORAGE_TEXT} and loaded`,
    sampleCommand: quoteCommand(FIRST_TRANSIENT + 1),
    deterministic: false,
    inProcessSampleEvery: 1,
    prepare: async (exchange) => {
      const parent = await storagePrimary(exchange);
      const handle = await createLoaded(exchange, parent, createCommand(parent, template), keyText);
      return {
        command: quoteCommand(handle),
        teardown: [flushContextCommand(handle), flushContextCommand(parent)],
        detail: `key 0x${handle.toString(16)}`,
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Sealing

/** The 32-byte secret every sealed object holds. */
const SECRET = createHash('sha256').update('vtpmd bench sealed secret').digest();
/** KEYEDHASH sealed data, userWithAuth, noDA (no lockout bookkeeping on the measured path). */
const SEALED = sealedData();

export function seal(): SteadyScenario {
  return {
    kind: 'steady',
    id: 'seal',
    name: 'seal',
    aliases: [],
    title: 'Seal (Create)',
    description: `TPM2_Create of a sealed data object (KEYEDHASH, noDA, 32 bytes of data) under an ${STORAGE_TEXT} created per vTPM before warm-up; the object is not loaded`,
    sampleCommand: createCommand(FIRST_TRANSIENT, SEALED, SECRET),
    deterministic: false,
    inProcessSampleEvery: 16,
    prepare: async (exchange) => {
      const parent = await storagePrimary(exchange);
      return { command: createCommand(parent, SEALED, SECRET), teardown: [flushContextCommand(parent)], detail: `parent 0x${parent.toString(16)}` };
    },
  };
}

export function unseal(): SteadyScenario {
  return {
    kind: 'steady',
    id: 'unseal',
    name: 'unseal',
    aliases: [],
    title: 'Unseal',
    description: `TPM2_Unseal, password session (empty auth), of a 32-byte sealed data object (KEYEDHASH, noDA) created under an ${STORAGE_TEXT} and loaded once per vTPM before warm-up`,
    sampleCommand: unsealCommand(FIRST_TRANSIENT + 1),
    deterministic: true,
    inProcessSampleEvery: 64,
    prepare: async (exchange) => {
      const parent = await storagePrimary(exchange);
      const handle = await createLoaded(exchange, parent, createCommand(parent, SEALED, SECRET), 'sealed data object');
      return {
        command: unsealCommand(handle),
        teardown: [flushContextCommand(handle), flushContextCommand(parent)],
        detail: `object 0x${handle.toString(16)}`,
      };
    },
  };
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
    aliases: [],
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

// ---------------------------------------------------------------------------------------------
// Cold load

export function coldLoad(): ColdLoadScenario {
  const command = pcrReadCommand(EXTEND_PCR);
  return {
    kind: 'cold-load',
    id: 'cold-load',
    name: 'cold-load',
    aliases: [],
    title: 'vTPM cold load',
    description:
      `the first command (TPM2_PCR_Read of sha256:${EXTEND_PCR}) to a vTPM that is not in memory, timed until its response: ` +
      'in process, a new engine resumed from the saved state; hypervisor, a vTPM the GVTPM manager unloaded, reloaded from the PSS; ' +
      'vtpmd serve, a stopped VM started through the control API (its vTPM reloaded from the PSS, Startup sent, endpoint opened), then connected to; ' +
      'swtpm, a new process on the existing state directory, connected to as soon as it listens',
    sampleCommand: command,
    deterministic: false,
    seed: pcrExtendCommand(ALG.SHA256, EXTEND_PCR),
    command,
  };
}

export const SCENARIOS: readonly (() => Scenario)[] = [
  () => pcrExtend(ALG.SHA1, 'SHA-1', 'pcr-extend-sha1', 'extend-sha1', []),
  () => pcrExtend(ALG.SHA256, 'SHA-256', 'pcr-extend-sha256', 'extend', ['extend-sha256']),
  () => pcrExtend(ALG.SHA384, 'SHA-384', 'pcr-extend-sha384', 'extend-sha384', []),
  quoteEccP256,
  quoteRsa2048,
  seal,
  unseal,
  createPrimaryRsa2048,
  coldLoad,
];

/** The PCR_Extend SHA-256 scenario, the one the host-level benchmarks drive. */
export function pcrExtendSha256(): SteadyScenario {
  return pcrExtend(ALG.SHA256, 'SHA-256', 'pcr-extend-sha256', 'extend', ['extend-sha256']);
}
