import { createHash } from 'node:crypto';
import { RC, Tpm12StateError } from '../rc.ts';
import { PERMANENT_FLAG_NAMES, STCLEAR_FLAG_NAMES, type PermanentFlags, type StclearFlags } from '../structures/flags.ts';
import type { NvDataPublic } from '../structures/nv.ts';
import { rebuildRsa, type KeyObject12 } from './key-object.ts';
import { check, fromJson, toJson, type Shape } from './json.ts';

/** An NV area defined by TPM_NV_DefineSpace (or by the manufacturer). */
export interface NvArea {
  pub: NvDataPublic;
  auth: Buffer;
  data: Buffer;
}

/** A monotonic counter. */
export interface Counter {
  id: number;
  label: Buffer;
  value: number;
  auth: Buffer;
}

export interface Owner {
  ownerAuth: Buffer;
  tpmProof: Buffer;
  srk: KeyObject12;
}

/** What TPM_SaveState keeps for TPM_Startup(ST_STATE). */
export interface SavedState {
  pcrs: Buffer[];
  stclear: StclearFlags;
}

/** Everything a TPM 1.2 keeps across power cycles. */
export interface Tpm12Nv {
  ek: KeyObject12 | null;
  flags: PermanentFlags;
  owner: Owner | null;
  dir: Buffer;
  counters: Counter[];
  nextCounterId: number;
  nv: NvArea[];
  saved: SavedState | null;
}

const FORMAT = 'vtpmd-tpm12-nv';
const VERSION = 1;

/**
 * The flags of a fresh chip, as swtpm 0.7.1 / libtpms reports them on an empty state directory:
 * enabled, activated, ownership allowed, the public EK readable, maintenance allowed, NV
 * unlocked, physical presence commands not yet enabled, and enableRevokeEK set until an
 * (unrevocable) EK exists.
 */
export function freshFlags(): PermanentFlags {
  const f = Object.fromEntries(PERMANENT_FLAG_NAMES.map((k) => [k, false])) as PermanentFlags;
  f.ownership = true;
  f.readPubek = true;
  f.allowMaintenance = true;
  f.enableRevokeEK = true;
  return f;
}

export function freshStclear(permanentDeactivated: boolean): StclearFlags {
  const f = Object.fromEntries(STCLEAR_FLAG_NAMES.map((k) => [k, false])) as StclearFlags;
  f.deactivated = permanentDeactivated;
  return f;
}

export function manufacture(): Tpm12Nv {
  return { ek: null, flags: freshFlags(), owner: null, dir: Buffer.alloc(20), counters: [], nextCounterId: 1, nv: [], saved: null };
}

type StoredKey = Omit<KeyObject12, 'rsa'>;

function storedKey(k: KeyObject12): StoredKey {
  const { rsa: _rsa, ...rest } = k;
  return rest;
}

function loadKey(k: StoredKey, path: string): KeyObject12 {
  try {
    return { ...k, rsa: rebuildRsa(k.n, k.p, k.exponent, RC.FAIL) };
  } catch {
    throw new Tpm12StateError(`TPM 1.2 state is corrupted: ${path} is not a valid RSA key`);
  }
}

const KEY_SHAPE: Shape = {
  key12: 'bool',
  usage: 'int',
  flags: 'int',
  authDataUsage: 'int',
  parms: { algorithmID: 'int', encScheme: 'int', sigScheme: 'int', parms: 'buffer' },
  pcrInfo: 'buffer',
  n: 'buffer',
  p: 'buffer',
  exponent: 'int',
  usageAuth: { buffer: 20 },
  migrationAuth: { buffer: 20 },
  parentPCRStatus: 'bool',
};
const PCR_SHORT: Shape = { pcrSelection: 'buffer', localityAtRelease: 'int', digestAtRelease: { buffer: 20 } };
const STATE_SHAPE: Shape = {
  ek: { nullable: KEY_SHAPE },
  flags: Object.fromEntries(PERMANENT_FLAG_NAMES.map((k) => [k, 'bool' as Shape])),
  owner: { nullable: { ownerAuth: { buffer: 20 }, tpmProof: { buffer: 20 }, srk: KEY_SHAPE } },
  dir: { buffer: 20 },
  counters: { array: { id: 'int', label: { buffer: 4 }, value: 'int', auth: { buffer: 20 } } },
  nextCounterId: 'int',
  nv: {
    array: {
      pub: {
        tag: 'int',
        nvIndex: 'int',
        pcrInfoRead: PCR_SHORT,
        pcrInfoWrite: PCR_SHORT,
        permission: { tag: 'int', attributes: 'int' },
        bReadSTClear: 'bool',
        bWriteSTClear: 'bool',
        bWriteDefine: 'bool',
        dataSize: 'int',
      },
      auth: { buffer: 20 },
      data: 'buffer',
    },
  },
  saved: { nullable: { pcrs: { array: { buffer: 20 } }, stclear: Object.fromEntries(STCLEAR_FLAG_NAMES.map((k) => [k, 'bool' as Shape])) } },
};

export function serializeNv(nv: Tpm12Nv): Buffer {
  const state = { ...nv, ek: nv.ek && storedKey(nv.ek), owner: nv.owner && { ...nv.owner, srk: storedKey(nv.owner.srk) } };
  const body = toJson(state);
  const sha256 = createHash('sha256').update(body).digest('hex');
  return Buffer.from(`{"format":"${FORMAT}","version":${VERSION},"sha256":"${sha256}","state":${body}}\n`);
}

/** Parses and validates stored NV; anything unusable is a Tpm12StateError that says what is wrong. */
export function deserializeNv(data: Buffer): Tpm12Nv {
  let doc: { format?: unknown; version?: unknown; sha256?: unknown; state?: unknown };
  try {
    doc = fromJson(data.toString('utf8')) as typeof doc;
  } catch (e) {
    if (e instanceof Tpm12StateError) throw e;
    throw new Tpm12StateError('TPM 1.2 state is corrupted or torn: it is not complete JSON');
  }
  if (!doc || typeof doc !== 'object' || doc.format !== FORMAT) throw new Tpm12StateError(`TPM 1.2 state is not a ${FORMAT} document`);
  if (doc.version !== VERSION) throw new Tpm12StateError(`TPM 1.2 state has version ${String(doc.version)}; this build reads version ${VERSION}`);
  if (typeof doc.state !== 'object' || doc.state === null) throw new Tpm12StateError('TPM 1.2 state is corrupted: it holds no state');
  const body = toJson(doc.state);
  if (createHash('sha256').update(body).digest('hex') !== doc.sha256) throw new Tpm12StateError('TPM 1.2 state is corrupted: its checksum does not match');
  check(doc.state, STATE_SHAPE, 'state');
  const s = doc.state as Tpm12Nv & { ek: StoredKey | null; owner: (Omit<Owner, 'srk'> & { srk: StoredKey }) | null };
  return {
    ...s,
    ek: s.ek && loadKey(s.ek, 'state.ek'),
    owner: s.owner && { ...s.owner, srk: loadKey(s.owner.srk, 'state.owner.srk') },
  };
}
