import { yesNo } from '../../wire/codec.ts';
import { ALG, CC, HR, RH } from '../constants.ts';
import { digestSize } from '../../crypto/hash.ts';
import { command } from '../command.ts';
import { RC, TpmError } from '../rc.ts';
import type { Tpm2Engine } from '../engine.ts';
import { trimAuth } from '../auth/auth-value.ts';
import { NO_POLICY } from '../state/nv-state.ts';
import { algHashOrNull, authBuf, digestBuf } from '../types/basic.ts';
import { rhClear, rhEnables, rhHierarchy, rhHierarchyAuth, rhHierarchyPolicy, rhPlatform } from '../types/handles.ts';

/**
 * CONTEXT_INTEGRITY_HASH_ALG, reported as TPM_PT_CONTEXT_HASH: no hierarchy authValue may be
 * longer than its digest (TPM2_HierarchyChangeAuth).
 */
const CONTEXT_INTEGRITY_HASH = ALG.SHA256;
/** Bytes of a primary seed and of a proof, as manufactured. */
const SEED_BYTES = 64;
/** TPMA_NV_PLATFORMCREATE: the index was defined with platformAuth and survives TPM2_Clear. */
const NV_PLATFORMCREATE = 1 << 30;
/** The persistent handles EvictControl allots to owner authorization; the rest are the platform's. */
const PLATFORM_PERSISTENT_FIRST = 0x81800000;

const isOwnerRange = (h: number) => h >= HR.PERSISTENT && h < PLATFORM_PERSISTENT_FIRST;

/** The hierarchy an object belongs to, when the object records one (sequences belong to none). */
function hierarchyOf(obj: unknown): number | undefined {
  const h = (obj as { hierarchy?: unknown } | undefined)?.hierarchy;
  return typeof h === 'number' ? h : undefined;
}

/**
 * ObjectFlushHierarchy: flushes the loaded objects of the given hierarchies. Sequence objects
 * belong to no hierarchy and stay, as in the reference implementation.
 */
export function flushLoadedObjects(tpm: Tpm2Engine, hierarchies: readonly number[]): void {
  for (const h of tpm.objects.handles()) {
    const owner = hierarchyOf(tpm.objects.get(h));
    if (owner !== undefined && hierarchies.includes(owner)) tpm.objects.remove(h);
  }
}

/**
 * Everything the given hierarchies own goes: their loaded objects, their persistent objects and,
 * for the owner hierarchy, every NV index not created with platformAuth. A persistent object is
 * matched by the hierarchy it records; one whose hierarchy cannot be read is matched by its
 * handle range (owner range: owner and endorsement together, platform range: platform).
 */
export function clearHierarchyObjects(tpm: Tpm2Engine, hierarchies: readonly number[]): void {
  flushLoadedObjects(tpm, hierarchies);
  const has = (h: number) => hierarchies.includes(h);
  for (const handle of [...tpm.nv.persistent.keys()]) {
    let owner: number | undefined;
    try {
      owner = hierarchyOf(tpm.objectAt(handle));
    } catch {
      owner = undefined;
    }
    const flush = owner !== undefined ? has(owner) : isOwnerRange(handle) ? has(RH.OWNER) && has(RH.ENDORSEMENT) : has(RH.PLATFORM);
    if (!flush) continue;
    tpm.nv.persistent.delete(handle);
    tpm.evictPersistentCache(handle);
  }
  if (has(RH.OWNER)) {
    for (const handle of tpm.nv.nvIndices.handles()) {
      if ((tpm.nv.nvIndices.get(handle)!.attributes & NV_PLATFORMCREATE) === 0) tpm.nv.nvIndices.remove(handle);
    }
  }
  tpm.markNvDirty();
}

const fresh = (tpm: Tpm2Engine) => tpm.random.bytes(SEED_BYTES);

export const hierarchyCommands = [
  command({
    cc: CC.HierarchyChangeAuth,
    name: 'HierarchyChangeAuth',
    nv: true,
    handles: [{ name: 'authHandle', type: rhHierarchyAuth, auth: 'user' }],
    params: { newAuth: authBuf },
    response: {},
    handler: ({ tpm, handles }, { newAuth }) => {
      // Trailing zeros are not part of an authValue; what remains must fit the integrity hash.
      const auth = Buffer.from(trimAuth(newAuth));
      if (auth.length > digestSize(CONTEXT_INTEGRITY_HASH)) throw TpmError.parameter(RC.SIZE, 1);
      const a = tpm.nv.hierarchy.auth;
      switch (handles[0]) {
        case RH.OWNER:
          a.owner = auth;
          break;
        case RH.ENDORSEMENT:
          a.endorsement = auth;
          break;
        case RH.LOCKOUT:
          a.lockout = auth;
          break;
        case RH.PLATFORM:
          // platformAuth is volatile: no NV write.
          tpm.platformAuth = auth;
          return {};
      }
      tpm.markNvDirty();
      return {};
    },
  }),
  command({
    cc: CC.HierarchyControl,
    name: 'HierarchyControl',
    nv: true,
    extensive: true,
    handles: [{ name: 'authHandle', type: rhHierarchy, auth: 'user' }],
    params: { enable: rhEnables, state: yesNo },
    response: {},
    handler: ({ tpm, handles }, { enable, state }) => {
      const auth = handles[0]!;
      const en = tpm.enables;
      switch (enable) {
        case RH.PLATFORM:
        case RH.PLATFORM_NV:
          // Only platformAuth controls the platform; once phEnable is clear, only a reboot sets it.
          if (auth !== RH.PLATFORM) throw new TpmError(RC.AUTH_TYPE);
          break;
        case RH.OWNER:
          // The owner may disable its hierarchy; enabling it again takes platformAuth.
          if (auth !== RH.PLATFORM && auth !== RH.OWNER) throw new TpmError(RC.AUTH_TYPE);
          if (!en.sh && state && auth !== RH.PLATFORM) throw new TpmError(RC.AUTH_TYPE);
          break;
        case RH.ENDORSEMENT:
          if (auth !== RH.PLATFORM && auth !== RH.ENDORSEMENT) throw new TpmError(RC.AUTH_TYPE);
          if (!en.eh && state && auth !== RH.PLATFORM) throw new TpmError(RC.AUTH_TYPE);
          break;
      }
      const key = enable === RH.OWNER ? 'sh' : enable === RH.ENDORSEMENT ? 'eh' : enable === RH.PLATFORM ? 'ph' : 'phNV';
      if (en[key] !== state) {
        en[key] = state;
        // A disabled hierarchy's loaded objects go at once (phEnableNV guards NV indices only).
        if (!state && enable !== RH.PLATFORM_NV) flushLoadedObjects(tpm, [enable]);
      }
      return {};
    },
  }),
  command({
    cc: CC.SetPrimaryPolicy,
    name: 'SetPrimaryPolicy',
    nv: true,
    handles: [{ name: 'authHandle', type: rhHierarchyPolicy, auth: 'user' }],
    params: { authPolicy: digestBuf, hashAlg: algHashOrNull },
    response: {},
    handler: ({ tpm, handles }, { authPolicy, hashAlg }) => {
      // The digest is as long as hashAlg makes it; an empty policy goes with TPM_ALG_NULL.
      if (authPolicy.length !== digestSize(hashAlg)) throw TpmError.parameter(RC.SIZE, 1);
      const policy = { alg: hashAlg, digest: Buffer.from(authPolicy) };
      const p = tpm.nv.hierarchy.policies;
      switch (handles[0]) {
        case RH.OWNER:
          p.owner = policy;
          break;
        case RH.ENDORSEMENT:
          p.endorsement = policy;
          break;
        case RH.LOCKOUT:
          p.lockout = policy;
          break;
        case RH.PLATFORM:
          tpm.platformPolicy = policy;
          return {};
      }
      tpm.markNvDirty();
      return {};
    },
  }),
  command({
    cc: CC.ChangePPS,
    name: 'ChangePPS',
    nv: true,
    extensive: true,
    handles: [{ name: 'authHandle', type: rhPlatform, auth: 'user' }],
    params: {},
    response: {},
    handler: ({ tpm }) => {
      const h = tpm.nv.hierarchy;
      h.seeds.platform = fresh(tpm);
      // A new proof: saved platform contexts and tickets no longer verify.
      h.proofs.platform = fresh(tpm);
      tpm.platformPolicy = NO_POLICY;
      clearHierarchyObjects(tpm, [RH.PLATFORM]);
      tpm.markNvDirty();
      return {};
    },
  }),
  command({
    cc: CC.ChangeEPS,
    name: 'ChangeEPS',
    nv: true,
    extensive: true,
    handles: [{ name: 'authHandle', type: rhPlatform, auth: 'user' }],
    params: {},
    response: {},
    handler: ({ tpm }) => {
      const h = tpm.nv.hierarchy;
      h.seeds.endorsement = fresh(tpm);
      h.proofs.endorsement = fresh(tpm);
      tpm.enables.eh = true;
      h.auth.endorsement = Buffer.alloc(0);
      h.policies.endorsement = NO_POLICY;
      clearHierarchyObjects(tpm, [RH.ENDORSEMENT]);
      tpm.markNvDirty();
      return {};
    },
  }),
  command({
    cc: CC.Clear,
    name: 'Clear',
    nv: true,
    extensive: true,
    handles: [{ name: 'authHandle', type: rhClear, auth: 'user' }],
    params: {},
    response: {},
    handler: ({ tpm }) => {
      const nv = tpm.nv;
      const h = nv.hierarchy;
      if (h.disableClear) throw new TpmError(RC.DISABLED);
      h.seeds.owner = fresh(tpm);
      h.proofs.owner = fresh(tpm);
      h.proofs.endorsement = fresh(tpm);
      tpm.enables.sh = true;
      tpm.enables.eh = true;
      // Empty authValues: a response HMAC for lockoutAuth is computed with the new, empty one.
      h.auth = { owner: Buffer.alloc(0), endorsement: Buffer.alloc(0), lockout: Buffer.alloc(0) };
      h.policies = { owner: NO_POLICY, endorsement: NO_POLICY, lockout: NO_POLICY };
      clearHierarchyObjects(tpm, [RH.OWNER, RH.ENDORSEMENT]);
      // Clock, resetCount and restartCount start over; Clock is Safe.
      tpm.clock.set(0n);
      tpm.persistClock();
      nv.resetCount = 0;
      nv.restartCount = 0;
      tpm.lockout.restoreDefaults();
      // A policy session with TPM2_PolicyPCR is invalidated by a Clear.
      tpm.pcrs.noteChanged(0);
      tpm.markNvDirty();
      return {};
    },
  }),
  command({
    cc: CC.ClearControl,
    name: 'ClearControl',
    nv: true,
    handles: [{ name: 'auth', type: rhClear, auth: 'user' }],
    params: { disable: yesNo },
    response: {},
    handler: ({ tpm, handles }, { disable }) => {
      // lockoutAuth may set disableClear but only the platform may clear it.
      if (handles[0] === RH.LOCKOUT && !disable) throw new TpmError(RC.AUTH_FAIL);
      tpm.nv.hierarchy.disableClear = disable;
      tpm.markNvDirty();
      return {};
    },
  }),
];
