/**
 * Provisioning steps a manufacturer (or the vMA, for a vTPM) takes on a TPM 2.0, each checking
 * first whether it was already done: a persistent key made from a template at its standard
 * handle, and a certificate in a platform-created, write-locked NV index.
 */
import { ALG, CC, RH } from '../tpm/tpm2/constants.ts';
import { RC, unnumbered } from '../tpm/tpm2/rc.ts';
import { NV_ATTR } from '../tpm/tpm2/types/nv.ts';
import { objectName, publicArea, type Public } from '../tpm/tpm2/types/public.ts';
import { encode } from '../tpm/wire/codec.ts';
import { ChipRefusal } from './chip-client.ts';
import { Tpm2CommandError, handleName, type Tpm2Client } from './tpm2-client.ts';
import { HANDLES } from './tpm2-templates.ts';

/** The attributes of an EK certificate index (TCG EK Credential Profile): platform-written, readable by all. */
export const EK_CERT_ATTRIBUTES =
  NV_ATTR.PPWRITE | NV_ATTR.WRITEDEFINE | NV_ATTR.PPREAD | NV_ATTR.OWNERREAD | NV_ATTR.AUTHREAD | NV_ATTR.NO_DA | NV_ATTR.PLATFORMCREATE;

/** Whether the TPM refused because the handle or index does not exist. */
export function isMissingHandle(e: unknown): boolean {
  return e instanceof Tpm2CommandError && unnumbered(e.rc) === RC.HANDLE;
}

/** The object at `handle`, created from `template` in `hierarchy` and made persistent if absent. */
export async function ensurePersistent(tpm: Tpm2Client, hierarchy: number, handle: number, template: Public): Promise<Public> {
  try {
    return (await tpm.readPublic(handle)).outPublic;
  } catch (e) {
    if (!isMissingHandle(e)) throw e;
  }
  // Both authorized by HMAC, so a hierarchy's authValue does not cross the bus in the clear.
  const made = await tpm.withHierarchyAuth(hierarchy, [handleName(hierarchy)], (auth) => tpm.createPrimary(hierarchy, template, { auth }));
  try {
    await tpm.withHierarchyAuth(RH.OWNER, [handleName(RH.OWNER), made.name], (auth) => tpm.evictControl(RH.OWNER, made.handle, handle, auth));
  } finally {
    await tpm.flushContext(made.handle);
  }
  return made.outPublic;
}

/**
 * Defines `index` with platform authorization, writes `der` and write-locks it. The lock is the
 * last step: a locked index is a finished one.
 */
export async function storeCertificate(tpm: Tpm2Client, index: number, der: Buffer): Promise<void> {
  await tpm.nvDefineSpace(RH.PLATFORM, { nvIndex: index, nameAlg: ALG.SHA256, attributes: EK_CERT_ATTRIBUTES, authPolicy: Buffer.alloc(0), dataSize: der.length });
  await tpm.nvWrite(RH.PLATFORM, index, der);
  await tpm.call(CC.NV_WriteLock, [RH.PLATFORM, index], [{}]);
}

/** Removes `index` if it exists (platform authorization). */
export async function removeIndex(tpm: Tpm2Client, index: number): Promise<void> {
  try {
    await tpm.call(CC.NV_UndefineSpace, [RH.PLATFORM, index], [{}]);
  } catch (e) {
    if (!isMissingHandle(e)) throw e;
  }
}

/**
 * The SRK's public area and Name as the TPM reports them, the Name checked against the public
 * area (a Name is the digest of it), so what sessions are salted to is the key the Name names.
 */
export async function readSrk(tpm: Tpm2Client): Promise<{ outPublic: Public; name: Buffer }> {
  const { outPublic, name } = await tpm.readPublic(HANDLES.SRK);
  if (!objectName(outPublic, encode(publicArea, outPublic)).equals(name)) {
    throw new ChipRefusal('untrusted-srk', "the chip's answer to ReadPublic of the hwSRK has a Name that is not its public area's");
  }
  return { outPublic, name };
}
