/**
 * The seam through which a hardware-backed vTPM keeps its keys in the host's chip. The engine
 * stays synchronous and authoritative for everything a guest can observe — handles, Names,
 * authorization, policies, responses — and asks the backend only for what must happen inside the
 * chip: making a key, and using its private part.
 *
 * A chip is reached asynchronously, so the backend answers from results the device model fetched
 * beforehand. When it has none it throws ExternalOperationNeeded; the model then performs that
 * operation on the chip, hands the result to the backend and runs the same command again. The
 * command changed nothing the first time: the request is raised before any state is touched.
 */
import { RC, TpmError } from './rc.ts';
import type { SeededStream } from '../crypto/drbg.ts';
import type { PcrSelection } from './types/pcr.ts';
import type { Scheme } from './types/public-parms.ts';
import type { EccPoint, Public, Sensitive } from './types/public.ts';
import type { SigScheme, Signature } from './types/signature.ts';

export interface HardwareKeyBackend {
  /**
   * Whether objects made from `template` under `parent` live in the chip (signing, decryption,
   * storage, HMAC and symmetric keys; sealed data). An object that may move with a parent the guest
   * can duplicate does not: TPM2_Duplicate of that parent carries it to another TPM, which can
   * load only an ordinary wrapping.
   */
  backs(template: Public, parent: Public): boolean;
  /**
   * Makes the object in the chip (sealed data: holding `data`) and returns the blob the guest
   * gets (double-wrapped) and the object's public area as the vTPM reports it. `creationPcrs`
   * become its virtual PCR binding.
   */
  create(template: Public, authValue: Buffer, creationPcrs: readonly PcrSelection[], data: Buffer): { outPrivate: Buffer; public: Public };
  /** Whether a primary made from `template` lives in the chip (RSA and ECC keys). */
  backsPrimary(template: Public): boolean;
  /**
   * The primary the chip derives for `template` from `secret`, which the vTPM derives from its
   * hierarchy's seed and the template: the same secret always gives the same key, a new seed a
   * new one, as the vTPM's own derivation would. Returns the object's outer blob and public area.
   */
  createPrimary(template: Public, secret: Buffer): { outer: Buffer; public: Public };
  /** The same object under a new (vTPM-level) authValue: a new outer blob, the chip untouched. */
  changeAuth(outer: Buffer, pub: Public, newAuth: Buffer): Buffer;
  /** The data of a chip-resident sealed data object, its binding checked first. */
  unseal(outer: Buffer, pub: Public): Buffer;
  /**
   * The authValue of a hardware-backed blob, after checking that it belongs to `pub` and that its
   * virtual PCR binding holds; undefined if `outPrivate` is an ordinary (software) private area.
   * Throws TpmError (INTEGRITY, PCR) when the blob is not acceptable.
   */
  open(outPrivate: Buffer, pub: Public): { authValue: Buffer } | undefined;
  /** Signs `digest` with the chip-resident key behind `outer`, checking its PCR binding first. */
  sign(outer: Buffer, pub: Public, scheme: SigScheme, digest: Buffer): Signature;
  /** RSA_Decrypt in the chip (which also removes the padding of `scheme`), binding checked first. */
  rsaDecrypt(outer: Buffer, pub: Public, scheme: Scheme, label: Buffer, cipherText: Buffer): Buffer;
  /**
   * The seedValue a chip-resident storage parent's children are wrapped under, binding checked
   * first. The parent's private key is in the chip; the seed travels in its outer blob.
   */
  storageSeed(outer: Buffer, pub: Public): Buffer;
  /** ECDH_ZGen in the chip: `point` times the key's private scalar, binding checked first. */
  ecdhZGen(outer: Buffer, pub: Public, point: EccPoint): EccPoint;
  /**
   * The sensitive area of a chip-resident object the guest may duplicate, as the vTPM reports the
   * object (its authValue and seed the vTPM's), for TPM2_Duplicate to wrap; binding checked first.
   */
  exportSensitive(outer: Buffer, pub: Public): Sensitive;
  /** The HMAC of `data` (any length) with `hashAlg` under the chip-resident keyed-hash key, binding checked first. */
  hmac(outer: Buffer, pub: Public, hashAlg: number, data: Buffer): Buffer;
  /** EncryptDecrypt in the chip with a chip-resident symmetric key and a resolved `mode`, binding checked first. */
  encryptDecrypt(outer: Buffer, pub: Public, use: SymmetricUse): { outData: Buffer; ivOut: Buffer };
}

export interface SymmetricUse {
  readonly decrypt: boolean;
  readonly mode: number;
  readonly ivIn: Buffer;
  readonly data: Buffer;
}

/** What a loaded hardware-backed object carries instead of a sensitive area. */
export interface HardwareKeyRef {
  readonly outer: Buffer;
  readonly authValue: Buffer;
  /** Attached when the object is loaded into an engine that has a backend. */
  backend?: HardwareKeyBackend;
}

/** The chip behind a hardware-backed object; an engine without one cannot use the key at all. */
export function backendOf(ref: HardwareKeyRef): HardwareKeyBackend {
  if (!ref.backend) throw new TpmError(RC.FAILURE);
  return ref.backend;
}

/**
 * What the engine cannot do in the command's synchronous run: what only the chip can do (a
 * hardware-backed vTPM), or wait for an RSA key made off the main thread.
 */
export type ExternalRequest = ChipRequest | RsaKeyRequest;

/**
 * An RSA key the engine waits for: a fresh one from its pool, or the one `stream` (a fork of the
 * primary's, where the key's draws begin) derives.
 */
export type RsaKeyRequest =
  | { readonly kind: 'rsa-key'; readonly bits: number; readonly exponent: number }
  | { readonly kind: 'derive-rsa'; readonly stream: SeededStream; readonly bits: number; readonly exponent: number };

/** Something only the chip can do, requested by the engine of a hardware-backed vTPM. */
export type ChipRequest =
  | { readonly kind: 'create'; readonly template: Public; readonly data: Buffer }
  | { readonly kind: 'create-primary'; readonly template: Public; readonly chipAuth: Buffer }
  | ({ readonly innerPrivate: Buffer; readonly innerPublic: Public; readonly chipAuth: Buffer; readonly primaryUnique: Buffer } & KeyUse);

/** What a chip-resident key is used for. */
export type KeyUse =
  | { readonly kind: 'sign'; readonly scheme: SigScheme; readonly digest: Buffer }
  | { readonly kind: 'rsa-decrypt'; readonly scheme: Scheme; readonly label: Buffer; readonly cipherText: Buffer }
  | { readonly kind: 'ecdh-zgen'; readonly point: EccPoint }
  | { readonly kind: 'unseal' }
  | { readonly kind: 'export' }
  | { readonly kind: 'hmac'; readonly hashAlg: number; readonly data: Buffer }
  | ({ readonly kind: 'encrypt-decrypt' } & SymmetricUse);

/**
 * A TPM error the chip answered for a key use (a bad padding, a point off the curve): the vTPM
 * answers the same, unnumbered rc.
 */
export interface ChipRefused {
  readonly refused: number;
}

export class ExternalOperationNeeded extends Error {
  constructor(readonly request: ExternalRequest) {
    super(`the command needs the host TPM to ${request.kind}`);
    this.name = 'ExternalOperationNeeded';
  }
}

export type { PcrSelection };
