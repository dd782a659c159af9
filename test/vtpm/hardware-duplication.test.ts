/**
 * Keys a guest may duplicate, in a hardware-backed vTPM: made in the chip like every other key,
 * under a chip policy that lets only the model, with the key's chip authValue, take the private
 * part out — which it does when the guest calls TPM2_Duplicate, so the blob the guest gets is an
 * ordinary duplication blob another TPM imports. What moves with a parent the guest may duplicate
 * stays in the model, wrapped as a TPM wraps it, so it loads under the parent's duplicate.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { HANDLES, eccSigningTemplate, srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { ALG, CC, RH } from '../../src/tpm/tpm2/constants.ts';
import { RC } from '../../src/tpm/tpm2/rc.ts';
import { SESSION_TYPE } from '../../src/tpm/tpm2/auth/sessions.ts';
import { hierarchyQn } from '../../src/tpm/tpm2/objects/model.ts';
import { NULL_SYM } from '../../src/tpm/tpm2/types/public-parms.ts';
import { OBJECT_ATTR as A, sensitiveArea, type Public } from '../../src/tpm/tpm2/types/public.ts';
import { Reader } from '../../src/tpm/wire/buffer.ts';
import { duplicationPolicy } from '../../src/vtpm/chip-key-backend.ts';
import { unwrapBoundKey } from '../../src/vtpm/key-binding.ts';
import { Tpm2VtpmModel } from '../../src/vtpm/tpm2-model.ts';
import { commandCodes, rcOf, setup, signsWith, tapChip } from '../helpers/hardware-vtpm.ts';
import { AES128_CFB, commandCodePolicy, eccStorage } from '../helpers/tpm2-objects.ts';

const DUPLICABLE = A.fixedTPM | A.fixedParent;
const magic = (blob: Buffer) => blob.subarray(0, 4).toString('latin1');

/** An ECDSA signing key the guest may duplicate: its policy allows TPM2_Duplicate, its authValue signing. */
function duplicableSigningKey(fixedParent = false): Public {
  const t = eccSigningTemplate(false);
  return { ...t, objectAttributes: (t.objectAttributes & ~DUPLICABLE) | (fixedParent ? A.fixedParent : 0), authPolicy: commandCodePolicy(CC.Duplicate) };
}

/** Another TPM to duplicate to: a software vTPM with its SRK loaded. */
async function otherTpm(): Promise<{ tpm: Tpm2Client; srk: number; srkPublic: Public }> {
  const model = await Tpm2VtpmModel.create(async () => undefined);
  const tpm = new Tpm2Client((c) => model.execute(c, 0));
  await tpm.startup();
  const made = await tpm.createPrimary(RH.OWNER, srkTemplate());
  return { tpm, srk: made.handle, srkPublic: made.outPublic };
}

/** TPM2_Duplicate through `tpm`, authorized by PolicyCommandCode(Duplicate). */
async function duplicate(tpm: Tpm2Client, object: number, newParent: number, symmetricAlg = AES128_CFB) {
  const session = await tpm.startPolicySession();
  await tpm.call(CC.PolicyCommandCode, [session], [], { code: CC.Duplicate });
  const r = await tpm.call(CC.Duplicate, [object, newParent], [{ policySession: session }], { encryptionKeyIn: Buffer.alloc(0), symmetricAlg });
  return r.params as { encryptionKeyOut: Buffer; duplicate: Buffer; outSymSeed: Buffer };
}

/** The public area of `srkPublic` loaded into `tpm` as a new parent (public part only). */
async function loadParent(tpm: Tpm2Client, srkPublic: Public): Promise<number> {
  return (await tpm.call(CC.LoadExternal, [], [], { inPrivate: null, inPublic: srkPublic, hierarchy: RH.OWNER })).handle!;
}

describe('a key the guest may duplicate, in a hardware-backed vTPM', () => {
  test('is made in the chip under its duplication policy, signs there, and TPM2_Duplicate gives a blob another TPM imports and signs with', async () => {
    const { vtpm, vsrk, chip, kbk } = await setup();
    const bus = tapChip(chip);
    const key = await vtpm.create(vsrk, duplicableSigningKey());
    assert.equal(magic(key.outPrivate), 'vHK3');
    assert.ok(commandCodes(bus).includes(CC.Create), 'the chip made the key');
    const inner = unwrapBoundKey(kbk, key.outPrivate)!.innerPublic;
    assert.equal(inner.objectAttributes & DUPLICABLE, 0, 'the chip may duplicate it');
    assert.deepEqual(inner.authPolicy, duplicationPolicy(ALG.SHA256), 'but only with its chip authValue');
    assert.equal(key.outPublic.objectAttributes & DUPLICABLE, 0, 'the guest sees the attributes it asked for');

    const { handle } = await vtpm.load(vsrk, key.outPrivate, key.outPublic);
    assert.ok(await signsWith(vtpm, handle, key.outPublic));

    const other = await otherTpm();
    const newParent = await loadParent(vtpm, other.srkPublic);
    const before = bus.length;
    const dup = await duplicate(vtpm, handle, newParent);
    assert.ok(commandCodes(bus.slice(before)).includes(CC.Duplicate), 'the chip handed the key out');
    const imported = await other.tpm.call(CC.Import, [other.srk], [{}], {
      encryptionKey: dup.encryptionKeyOut,
      objectPublic: key.outPublic,
      duplicate: dup.duplicate,
      inSymSeed: dup.outSymSeed,
      symmetricAlg: AES128_CFB,
    });
    const there = await other.tpm.load(other.srk, imported.params.outPrivate as Buffer, key.outPublic);
    assert.ok(await signsWith(other.tpm, there.handle, key.outPublic), 'the same private key signs on the other TPM');

    // Duplicated without any wrapping, the private key is in the clear for the guest; it never
    // crossed the bus that way.
    const plain = await duplicate(vtpm, handle, RH.NULL, NULL_SYM);
    const r = new Reader(plain.duplicate);
    r.u16();
    const sensitive = sensitiveArea.decode(r);
    assert.equal(sensitive.sensitive.length, 32);
    assert.equal(bus.some((b) => b.indexOf(sensitive.sensitive) >= 0), false);
  });

  test('a parent the guest may duplicate is in the chip; its children stay in the model and move with it to another TPM', async () => {
    const { vtpm, vsrk, chip } = await setup();
    const bus = tapChip(chip);
    const template = { ...eccStorage(), objectAttributes: eccStorage().objectAttributes & ~DUPLICABLE, authPolicy: commandCodePolicy(CC.Duplicate) };
    const parent = await vtpm.create(vsrk, template);
    assert.equal(magic(parent.outPrivate), 'vHK3');
    const p = await vtpm.load(vsrk, parent.outPrivate, parent.outPublic);
    const before = bus.length;
    // fixedParent SET: it cannot be duplicated itself, only with its parent.
    const child = await vtpm.create(p.handle, duplicableSigningKey(true));
    assert.notEqual(magic(child.outPrivate), 'vHK3');
    assert.equal(commandCodes(bus.slice(before)).includes(CC.Create), false, 'the chip did not make the child');
    const c = await vtpm.load(p.handle, child.outPrivate, child.outPublic);
    assert.ok(await signsWith(vtpm, c.handle, child.outPublic));
    await vtpm.flushContext(c.handle);

    const other = await otherTpm();
    const dup = await duplicate(vtpm, p.handle, await loadParent(vtpm, other.srkPublic), NULL_SYM);
    const imported = await other.tpm.call(CC.Import, [other.srk], [{}], {
      encryptionKey: Buffer.alloc(0),
      objectPublic: parent.outPublic,
      duplicate: dup.duplicate,
      inSymSeed: dup.outSymSeed,
      symmetricAlg: NULL_SYM,
    });
    const thereParent = await other.tpm.load(other.srk, imported.params.outPrivate as Buffer, parent.outPublic);
    const thereChild = await other.tpm.load(thereParent.handle, child.outPrivate, child.outPublic);
    assert.ok(await signsWith(other.tpm, thereChild.handle, child.outPublic), 'the child made here loads under the parent there');
  });

  test('the chip hands the key out only under its policy with its chip authValue', async () => {
    const { vtpm, vsrk, hw, kbk } = await setup();
    const key = await vtpm.create(vsrk, duplicableSigningKey());
    const bound = unwrapBoundKey(kbk, key.outPrivate)!;
    const loaded = await hw.load(HANDLES.SRK, bound.innerPrivate, bound.innerPublic);
    // The command code alone does not satisfy the policy.
    const commandOnly = await hw.startPolicySession();
    await hw.call(CC.PolicyCommandCode, [commandOnly], [], { code: CC.Duplicate });
    await assert.rejects(
      hw.call(CC.Duplicate, [loaded.handle, RH.NULL], [{ policySession: commandOnly }], { encryptionKeyIn: Buffer.alloc(0), symmetricAlg: NULL_SYM }),
      (e) => (rcOf(e) & 0xff) === (RC.POLICY_FAIL & 0xff),
    );
    // The full policy with a wrong authValue fails the session's HMAC (BAD_AUTH: chip keys are noDA).
    const session = await hw.startHmacSession(undefined, SESSION_TYPE.POLICY);
    await hw.call(CC.PolicyCommandCode, [session.handle], [], { code: CC.Duplicate });
    await hw.call(CC.PolicyAuthValue, [session.handle], []);
    await assert.rejects(
      hw.call(CC.Duplicate, [loaded.handle, RH.NULL], [{ hmacSession: session, authValue: Buffer.from('guess'), names: [loaded.name, hierarchyQn(RH.NULL)] }], {
        encryptionKeyIn: Buffer.alloc(0),
        symmetricAlg: NULL_SYM,
      }),
      (e) => (rcOf(e) & 0xff) === (RC.BAD_AUTH & 0xff),
    );
  });
});
