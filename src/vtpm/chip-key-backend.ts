/**
 * The hardware-backed device model's side of the engine's key seam: it turns guest templates into
 * keys made in the chip — under the hwSRK, or for primaries as primaries of the chip's storage
 * hierarchy derived from a secret of the vTPM's — double-wraps the result under the key-binding
 * key, and enforces each key's virtual PCR binding against the vTPM's own PCRs before the chip is
 * asked to use the key. Chip operations themselves are performed by the model (see
 * ExternalOperationNeeded); this class only hands their results to the engine.
 */
import { createHash, randomBytes } from 'node:crypto';
import { digest, digestSize } from '../tpm/crypto/hash.ts';
import { kdfa } from '../tpm/crypto/kdf.ts';
import { ALG, CC } from '../tpm/tpm2/constants.ts';
import { ExternalOperationNeeded, type ChipRefused, type ChipRequest, type HardwareKeyBackend, type KeyUse, type SymmetricUse } from '../tpm/tpm2/hardware-keys.ts';
import { RC, TpmError } from '../tpm/tpm2/rc.ts';
import type { PcrSelection } from '../tpm/tpm2/types/pcr.ts';
import { NULL_SYM, type Scheme } from '../tpm/tpm2/types/public-parms.ts';
import { OBJECT_ATTR as A, publicArea, type EccPoint, type Public, type Sensitive } from '../tpm/tpm2/types/public.ts';
import type { SigScheme, Signature } from '../tpm/tpm2/types/signature.ts';
import { u32be } from '../tpm/wire/buffer.ts';
import { encode } from '../tpm/wire/codec.ts';
import { isOuterBlob, unwrapBoundKey, wrapBoundKey, type BoundKey } from './key-binding.ts';

export interface ChipCreateResult {
  outPrivate: Buffer;
  outPublic: Public;
  /** The authValue the chip key was made with. */
  chipAuth: Buffer;
}

/**
 * The template the chip gets: the guest's object without the vTPM-level rules the model enforces
 * (restrictions, policies); keys always of the chip's own making, sealed data as the guest gave it.
 * A storage parent becomes a plain decryption key there: the chip decrypts the secrets guests
 * share with it (RSA_Decrypt, ECDH_ZGen), which it refuses for a restricted key, and the model
 * does the rest as the parent's restrictions allow. An object the guest may duplicate is one the
 * chip may duplicate too, but only under a policy of TPM2_Duplicate with its chip authValue
 * (duplicationPolicy): the model takes it out that way when the guest duplicates it.
 */
export function chipTemplateFor(t: Public): Public {
  // Keyed-hash and symmetric objects may carry the guest's own bits (sensitiveDataOrigin CLEAR).
  const origin = t.type === ALG.KEYEDHASH || t.type === ALG.SYMCIPHER ? t.objectAttributes & A.sensitiveDataOrigin : A.sensitiveDataOrigin;
  const fixed = (t.objectAttributes & A.fixedTPM) !== 0;
  const dropped = A.restricted | A.adminWithPolicy | A.sensitiveDataOrigin | A.fixedTPM | A.fixedParent | A.encryptedDuplication;
  const a = (t.objectAttributes & ~dropped) | origin | (fixed ? A.fixedTPM | A.fixedParent : 0) | A.userWithAuth | A.noDA;
  const unique = t.type === ALG.RSA ? { rsa: Buffer.alloc(0) } : t.type === ALG.ECC ? { ecc: { x: Buffer.alloc(0), y: Buffer.alloc(0) } } : { digest: Buffer.alloc(0) };
  const p = t.parameters;
  // Only a storage key (restricted decryption) names a symmetric algorithm; an unrestricted key
  // may not.
  const parameters = p.type === ALG.RSA || p.type === ALG.ECC ? { ...p, symmetric: NULL_SYM } : p;
  return { ...t, objectAttributes: a, authPolicy: fixed ? Buffer.alloc(0) : duplicationPolicy(t.nameAlg), unique, parameters };
}

/**
 * The chip-side policy of an object the guest may duplicate: TPM2_PolicyCommandCode(Duplicate),
 * then TPM2_PolicyAuthValue, so that taking the object out of the chip needs its chip authValue
 * as every use of it does.
 */
export function duplicationPolicy(nameAlg: number): Buffer {
  const commandCode = digest(nameAlg, Buffer.alloc(digestSize(nameAlg)), u32be(CC.PolicyCommandCode), u32be(CC.Duplicate));
  return digest(nameAlg, commandCode, u32be(CC.PolicyAuthValue));
}

/**
 * A primary's chip template: its chip public area with `primaryUnique` as the unique field, the
 * vTPM's contribution to what the chip derives the key from (any value will do for the chip; this
 * one is secret and the vTPM's own).
 */
export function primaryChipTemplate(innerPublic: Public, primaryUnique: Buffer): Public {
  const unique = innerPublic.type === ALG.RSA ? { rsa: primaryUnique } : { ecc: { x: primaryUnique, y: Buffer.alloc(0) } };
  return { ...innerPublic, unique };
}

/** Whether the chip can hold an object of `t`'s kind (see ChipKeyBackend.backs). */
function chipMakes(t: Public): boolean {
  const a = t.objectAttributes;
  // Sealed data (neither sign nor decrypt) or an HMAC key; a keyed-hash decrypt key would be a
  // derivation parent.
  if (t.type === ALG.KEYEDHASH) return (a & (A.decrypt | A.restricted)) === 0;
  if (t.type === ALG.SYMCIPHER) return (a & A.restricted) === 0 && (a & (A.sign | A.decrypt)) !== 0;
  return (t.type === ALG.RSA || t.type === ALG.ECC) && (a & (A.sign | A.decrypt)) !== 0;
}

/** A storage parent: a restricted decryption key that does not sign. */
function isStorageTemplate(t: Public): boolean {
  return (t.objectAttributes & (A.restricted | A.decrypt | A.sign)) === (A.restricted | A.decrypt);
}

/**
 * What identifies a request across the attempts of one command: every field, length-prefixed —
 * buffers as they are and public areas marshaled, rather than spelled out as JSON on a hot path.
 */
function requestKey(r: ChipRequest): string {
  const h = createHash('sha256');
  const part = (bytes: Buffer) => {
    const n = Buffer.alloc(4);
    n.writeUInt32BE(bytes.length);
    h.update(n).update(bytes);
  };
  for (const [name, value] of Object.entries(r)) {
    part(Buffer.from(name));
    if (Buffer.isBuffer(value)) part(value);
    else if (name === 'template' || name === 'innerPublic') part(encode(publicArea, value as Public));
    else part(Buffer.from(JSON.stringify(value)));
  }
  return h.digest('hex');
}

export class ChipKeyBackend implements HardwareKeyBackend {
  private readonly results = new Map<string, unknown>();

  constructor(
    private readonly kbk: Buffer,
    /** The digest of the vTPM's present values of `selection` (SHA-256 over the PCR values). */
    private readonly pcrDigest: (selection: PcrSelection[]) => Buffer,
  ) {}

  /**
   * Asymmetric signing keys (attestation keys included), decryption keys — storage parents too,
   * restricted or not, and keys that do both — sealed data, HMAC keys and unrestricted symmetric
   * keys, whether the guest may duplicate them or not. Not an object whose parent the guest may
   * duplicate: it moves with that parent, to a TPM that needs its ordinary wrapping under the
   * parent's seed, which the model gives it. (The engine makes no derivation parents.)
   */
  backs(t: Public, parent: Public): boolean {
    return (parent.objectAttributes & A.fixedTPM) !== 0 && chipMakes(t);
  }

  /** RSA and ECC primaries, but for one the guest may duplicate (it stays in the model). */
  backsPrimary(t: Public): boolean {
    return (t.type === ALG.RSA || t.type === ALG.ECC) && (t.objectAttributes & A.fixedTPM) !== 0 && chipMakes(t);
  }

  /** The model hands over what the chip did for `request`; the next attempt of the command uses it. */
  provide(request: ChipRequest, result: unknown): void {
    this.results.set(requestKey(request), result);
  }

  private take<T>(request: ChipRequest): T {
    const key = requestKey(request);
    if (!this.results.has(key)) throw new ExternalOperationNeeded(request);
    const r = this.results.get(key) as T;
    this.results.delete(key);
    return r;
  }

  create(template: Public, authValue: Buffer, creationPcrs: readonly PcrSelection[], data: Buffer): { outPrivate: Buffer; public: Public } {
    const made = this.take<ChipCreateResult>({ kind: 'create', template: chipTemplateFor(template), data });
    const pub: Public = { ...template, unique: made.outPublic.unique };
    const pcrSelection = creationPcrs.filter((s) => s.select.some((b) => b !== 0));
    const outer = wrapBoundKey(this.kbk, {
      innerPrivate: made.outPrivate,
      innerPublic: made.outPublic,
      authValue,
      chipAuth: made.chipAuth,
      seedValue: isStorageTemplate(template) ? randomBytes(digestSize(template.nameAlg)) : Buffer.alloc(0),
      primaryUnique: Buffer.alloc(0),
      publicDigest: publicDigestOf(pub),
      pcrSelection,
      pcrDigest: pcrSelection.length ? this.pcrDigest(pcrSelection) : Buffer.alloc(0),
    });
    return { outPrivate: outer, public: pub };
  }

  createPrimary(template: Public, secret: Buffer): { outer: Buffer; public: Public } {
    const derive = (label: string, bits: number) => kdfa(ALG.SHA256, secret, label, Buffer.alloc(0), Buffer.alloc(0), bits);
    const primaryUnique = derive('VTPMD CHIP PRIMARY UNIQUE', 256);
    const chipAuth = derive('VTPMD CHIP PRIMARY AUTH', 256);
    // A trailing zero would be dropped from an HMAC key (and so from an authValue).
    chipAuth[chipAuth.length - 1]! |= 1;
    const made = this.take<{ outPublic: Public }>({ kind: 'create-primary', template: primaryChipTemplate(chipTemplateFor(template), primaryUnique), chipAuth });
    const pub: Public = { ...template, unique: made.outPublic.unique };
    const outer = wrapBoundKey(this.kbk, {
      innerPrivate: Buffer.alloc(0),
      innerPublic: made.outPublic,
      authValue: Buffer.alloc(0),
      chipAuth,
      // Derived too: children wrapped under a storage primary must load under it when it is made
      // again.
      seedValue: isStorageTemplate(template) ? derive('VTPMD CHIP PRIMARY SEED', digestSize(template.nameAlg) * 8) : Buffer.alloc(0),
      primaryUnique,
      publicDigest: publicDigestOf(pub),
      pcrSelection: [],
      pcrDigest: Buffer.alloc(0),
    });
    return { outer, public: pub };
  }

  open(outPrivate: Buffer, pub: Public): { authValue: Buffer } | undefined {
    if (!isOuterBlob(outPrivate)) return undefined;
    return { authValue: this.checked(outPrivate, pub).authValue };
  }

  sign(outer: Buffer, pub: Public, scheme: SigScheme, digest: Buffer): Signature {
    return this.use<Signature>(outer, pub, { kind: 'sign', scheme, digest });
  }

  rsaDecrypt(outer: Buffer, pub: Public, scheme: Scheme, label: Buffer, cipherText: Buffer): Buffer {
    return this.use<Buffer>(outer, pub, { kind: 'rsa-decrypt', scheme, label, cipherText });
  }

  storageSeed(outer: Buffer, pub: Public): Buffer {
    const { seedValue } = this.checked(outer, pub);
    // Only a storage parent's blob carries one; the model asks only of a parent it loaded.
    if (seedValue.length === 0) throw new TpmError(RC.TYPE);
    return seedValue;
  }

  ecdhZGen(outer: Buffer, pub: Public, point: EccPoint): EccPoint {
    return this.use<EccPoint>(outer, pub, { kind: 'ecdh-zgen', point });
  }

  unseal(outer: Buffer, pub: Public): Buffer {
    return this.use<Buffer>(outer, pub, { kind: 'unseal' });
  }

  exportSensitive(outer: Buffer, pub: Public): Sensitive {
    const k = this.checked(outer, pub);
    const chip = this.useOpened<Sensitive>(k, { kind: 'export' });
    // The chip holds its own authValue; a storage parent's seed (its children's wrapping) is the
    // model's. A sealed object's or a symmetric key's seedValue is the chip's, which its unique
    // value commits to.
    return { sensitiveType: chip.sensitiveType, authValue: k.authValue, seedValue: k.seedValue.length ? k.seedValue : chip.seedValue, sensitive: chip.sensitive };
  }

  hmac(outer: Buffer, pub: Public, hashAlg: number, data: Buffer): Buffer {
    return this.use<Buffer>(outer, pub, { kind: 'hmac', hashAlg, data });
  }

  encryptDecrypt(outer: Buffer, pub: Public, use: SymmetricUse): { outData: Buffer; ivOut: Buffer } {
    return this.use<{ outData: Buffer; ivOut: Buffer }>(outer, pub, { kind: 'encrypt-decrypt', ...use });
  }

  changeAuth(outer: Buffer, pub: Public, newAuth: Buffer): Buffer {
    return wrapBoundKey(this.kbk, { ...this.opened(outer, pub), authValue: newAuth });
  }

  private use<T>(outer: Buffer, pub: Public, use: KeyUse): T {
    return this.useOpened<T>(this.checked(outer, pub), use);
  }

  /** `use` of a bound key already opened and checked. */
  private useOpened<T>(k: BoundKey, use: KeyUse): T {
    const result = this.take<T | ChipRefused>({ innerPrivate: k.innerPrivate, innerPublic: k.innerPublic, chipAuth: k.chipAuth, primaryUnique: k.primaryUnique, ...use });
    if (result && typeof result === 'object' && 'refused' in result) throw new TpmError(result.refused);
    return result as T;
  }

  /** The bound key, if `outer` was made here for `pub`. */
  private opened(outer: Buffer, pub: Public): BoundKey {
    const k = unwrapBoundKey(this.kbk, outer);
    if (!k || !k.publicDigest.equals(publicDigestOf(pub))) throw new TpmError(RC.INTEGRITY);
    return k;
  }

  /** The bound key, opened and with its virtual PCR binding holding. */
  private checked(outer: Buffer, pub: Public): BoundKey {
    const k = this.opened(outer, pub);
    if (k.pcrSelection.length && !this.pcrDigest(k.pcrSelection).equals(k.pcrDigest)) throw new TpmError(RC.PCR);
    return k;
  }
}

function publicDigestOf(pub: Public): Buffer {
  return createHash('sha256').update(encode(publicArea, pub)).digest();
}
