/**
 * Storage parents of a hardware-backed vTPM: their private keys are made and used in the chip
 * (RSA_Decrypt or ECDH_ZGen recovers every secret a guest shares with them: salts, credentials,
 * duplicates), while the model wraps their children under the seed their outer blob carries.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { HANDLES, eccSigningTemplate, srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { ALG, CC, RH } from '../../src/tpm/tpm2/constants.ts';
import { RC } from '../../src/tpm/tpm2/rc.ts';
import { OBJECT_ATTR as A, sensitiveArea, type Public, type Sensitive } from '../../src/tpm/tpm2/types/public.ts';
import { Writer } from '../../src/tpm/wire/buffer.ts';
import { makeCredential } from '../../src/vma/make-credential.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { Tpm2VtpmModel } from '../../src/vtpm/tpm2-model.ts';
import { eccStorage, objectNameOf, outerWrap, rsaStorage, sealedData, shareSecret } from '../helpers/tpm2-objects.ts';
import { commandCodes, rcOf, setup, signsWith, tapChip } from '../helpers/hardware-vtpm.ts';

const PARENTS: [string, Public, number][] = [
  ['RSA', rsaStorage(2048), CC.RSA_Decrypt],
  ['ECC', eccStorage(), CC.ECDH_ZGen],
];


const magic = (blob: Buffer) => blob.subarray(0, 4).toString('latin1');


/** A sealed secret made outside any TPM, wrapped for `parent` as TPM2_Duplicate would (outer wrapper only). */
function duplicateFor(parent: Public, secret: Buffer): { objectPublic: Public; duplicate: Buffer; inSymSeed: Buffer } {
  const seedValue = Buffer.alloc(32, 0x33);
  const objectPublic: Public = { ...sealedData(A.userWithAuth | A.noDA), unique: { digest: createHash('sha256').update(seedValue).update(secret).digest() } };
  const sensitive: Sensitive = { sensitiveType: ALG.KEYEDHASH, authValue: Buffer.alloc(0), seedValue, sensitive: secret };
  const w = new Writer(128);
  const at = w.reserveU16();
  sensitiveArea.encode(w, sensitive);
  w.patchU16(at, w.length - 2);
  const { seed, secret: inSymSeed } = shareSecret(parent, 'DUPLICATE');
  return { objectPublic, duplicate: outerWrap(parent.nameAlg, 128, seed, objectNameOf(objectPublic), Buffer.from(w.finish())), inSymSeed };
}

const PERSISTENT = 0x81000100;
const NULL_SYM = { algorithm: ALG.NULL, keyBits: 0, mode: ALG.NULL };

/** The marshaled point with its y coordinate changed: no longer on the curve. */
function offCurve(point: Buffer): Buffer {
  const off = Buffer.from(point);
  off[off.length - 1]! ^= 1;
  return off;
}

/** A software vTPM with a vSRK loaded, to compare against. */
async function softwareVtpm(): Promise<{ vtpm: Tpm2Client; vsrk: number }> {
  const model = await Tpm2VtpmModel.create(async () => undefined);
  const vtpm = new Tpm2Client((c) => model.execute(c, 0));
  await vtpm.startup();
  return { vtpm, vsrk: (await vtpm.createPrimary(RH.OWNER, srkTemplate())).handle };
}

describe('a storage parent of a hardware-backed vTPM', () => {
  for (const [kind, template, decryptCc] of PARENTS) {
    test(`${kind}: made in the chip, it parents chip keys and software keys alike; the chip will not load its blob, and a changed blob is TPM_RC_INTEGRITY`, async () => {
      const { vtpm, vsrk, hw, chip } = await setup();
      const seen = tapChip(chip);
      const parent = await vtpm.create(vsrk, template);
      assert.equal(magic(parent.outPrivate), 'vHK3', 'the guest holds the double-wrapped blob');
      assert.ok(commandCodes(seen).includes(CC.Create), 'the chip made the key');
      assert.equal(parent.outPublic.objectAttributes & (A.restricted | A.decrypt), A.restricted | A.decrypt, 'the guest sees the storage key it asked for');
      await assert.rejects(hw.load(HANDLES.SRK, parent.outPrivate, parent.outPublic));
      const tampered = Buffer.from(parent.outPrivate);
      tampered[tampered.length - 5]! ^= 1;
      await assert.rejects(vtpm.load(vsrk, tampered, parent.outPublic), (e) => (rcOf(e) & 0xfff) === (RC.INTEGRITY | 0x40 | (1 << 8)));

      const p = await vtpm.load(vsrk, parent.outPrivate, parent.outPublic);
      const inChip = await vtpm.create(p.handle, eccSigningTemplate(false));
      // What the guest imports under it stays in the model, wrapped under the parent's seed.
      const secret = Buffer.from('imported under a chip-resident parent');
      const dup = duplicateFor(parent.outPublic, secret);
      const imported = await vtpm.call(CC.Import, [p.handle], [{}], { encryptionKey: Buffer.alloc(0), objectPublic: dup.objectPublic, duplicate: dup.duplicate, inSymSeed: dup.inSymSeed, symmetricAlg: NULL_SYM });
      const soft = { outPrivate: imported.params.outPrivate as Buffer, outPublic: dup.objectPublic };
      assert.equal(magic(inChip.outPrivate), 'vHK3');
      assert.notEqual(magic(soft.outPrivate), 'vHK3');
      /** The child loads under `at` and works: the chip key signs, the imported object unseals. */
      const works = async (at: number, child: { outPrivate: Buffer; outPublic: Public }) => {
        const { handle } = await vtpm.load(at, child.outPrivate, child.outPublic);
        if (child === inChip) assert.ok(await signsWith(vtpm, handle, child.outPublic));
        else assert.deepEqual(await vtpm.unseal(handle), secret);
        await vtpm.flushContext(handle);
      };
      for (const child of [inChip, soft]) await works(p.handle, child);
      // Wrapped under this parent's seed, the software child is no one else's.
      await assert.rejects(vtpm.load(vsrk, soft.outPrivate, soft.outPublic), (e) => (rcOf(e) & 0xfff) === (RC.INTEGRITY | 0x40 | (1 << 8)));

      // Saved and loaded again (as a resource manager does between commands), or made persistent, it still parents both.
      const context = (await vtpm.call(CC.ContextSave, [p.handle], [])).params.context;
      await vtpm.flushContext(p.handle);
      const reloaded = (await vtpm.call(CC.ContextLoad, [], [], { context })).handle!;
      await vtpm.evictControl(RH.OWNER, reloaded, PERSISTENT);
      for (const at of [reloaded, PERSISTENT]) {
        for (const child of [inChip, soft]) await works(at, child);
      }
    });

    test(`${kind}: the chip recovers what is shared with it — a salt, a credential, a duplicate — via ${kind === 'RSA' ? 'RSA_Decrypt' : 'ECDH_ZGen'}`, async () => {
      const { vtpm, vsrk, chip } = await setup();
      const parent = await vtpm.create(vsrk, template);
      const p = await vtpm.load(vsrk, parent.outPrivate, parent.outPublic);
      const seen = tapChip(chip);

      // A session salted to the parent: the vTPM checks the HMAC made with the session key, and
      // decrypts the parameter encrypted with it.
      const session = await vtpm.startHmacSession({ handle: p.handle, public: parent.outPublic });
      assert.ok(commandCodes(seen).includes(decryptCc), 'the salt was decrypted in the chip');
      const pin = Buffer.from('pin under a salted session');
      const sealed = await vtpm.create(p.handle, sealedData(), {
        parentAuth: { hmacSession: session, authValue: Buffer.alloc(0), names: [p.name], decrypt: true },
        data: pin,
      });
      const s = await vtpm.load(p.handle, sealed.outPrivate, sealed.outPublic);
      assert.deepEqual(await vtpm.unseal(s.handle), pin);
      await vtpm.flushContext(s.handle);

      // A credential made for the parent, as a privacy CA makes one for an EK, for a key it parents.
      seen.length = 0;
      const key = await vtpm.create(p.handle, eccSigningTemplate(false));
      const k = await vtpm.load(p.handle, key.outPrivate, key.outPublic);
      const credential = Buffer.from('activated in the chip');
      const made = makeCredential(parent.outPublic, k.name, credential);
      const activated = await vtpm.call(CC.ActivateCredential, [k.handle, p.handle], [{}, {}], { credentialBlob: made.credentialBlob, secret: made.secret });
      assert.deepEqual(activated.params.certInfo, credential);
      assert.ok(commandCodes(seen).includes(decryptCc), 'the credential seed was recovered in the chip');
      await vtpm.flushContext(k.handle);

      // A duplicate made outside for the parent imports, loads and unseals.
      seen.length = 0;
      const secret = Buffer.from('a secret made elsewhere');
      const dup = duplicateFor(parent.outPublic, secret);
      const imported = await vtpm.call(CC.Import, [p.handle], [{}], {
        encryptionKey: Buffer.alloc(0),
        objectPublic: dup.objectPublic,
        duplicate: dup.duplicate,
        inSymSeed: dup.inSymSeed,
        symmetricAlg: NULL_SYM,
      });
      assert.ok(commandCodes(seen).includes(decryptCc), 'the duplication seed was recovered in the chip');
      const i = await vtpm.load(p.handle, imported.params.outPrivate, dup.objectPublic);
      assert.deepEqual(await vtpm.unseal(i.handle), secret);
    });

    test(`${kind}: a secret not made for the parent is refused with the response code a software vTPM gives`, async () => {
      const codes: number[][] = [];
      for (const [design, { vtpm, vsrk }] of [['hardware', await setup()], ['software', await softwareVtpm()]] as const) {
        const parent = await vtpm.create(vsrk, template);
        assert.equal(magic(parent.outPrivate) === 'vHK3', design === 'hardware');
        const p = await vtpm.load(vsrk, parent.outPrivate, parent.outPublic);
        const dup = duplicateFor(parent.outPublic, Buffer.from('x'));
        const importing = (inSymSeed: Buffer) =>
          vtpm.call(CC.Import, [p.handle], [{}], { encryptionKey: Buffer.alloc(0), objectPublic: dup.objectPublic, duplicate: dup.duplicate, inSymSeed, symmetricAlg: NULL_SYM }).then(
            () => 0,
            rcOf,
          );
        // Shared for another use: the label (RSA) or the KDF context (ECC) differs.
        const wrongUse = shareSecret(parent.outPublic, 'SECRET').secret;
        // A block that is not the modulus' size (RSA), a point off the curve (ECC): neither reaches the chip.
        const malformed = kind === 'RSA' ? dup.inSymSeed.subarray(1) : offCurve(dup.inSymSeed);
        codes.push([await importing(wrongUse), await importing(malformed)]);
      }
      const [hardware, software] = codes;
      assert.deepEqual(hardware, software);
      // RSA: OAEP fails on the label, TPM_RC_VALUE + P4, and a short block is TPM_RC_SIZE + P4; ECC:
      // the seed derives but the outer HMAC fails, TPM_RC_INTEGRITY + P3, and a point off the curve is TPM_RC_ECC_POINT + P4.
      const p4 = (rc: number) => rc | 0x40 | (4 << 8);
      assert.deepEqual(hardware, kind === 'RSA' ? [p4(RC.VALUE), p4(RC.SIZE)] : [RC.INTEGRITY | 0x40 | (3 << 8), p4(RC.ECC_POINT)]);
    });
  }

  test('differential: whatever a guest sends as a shared secret — a salt, a credential seed, a duplication seed — a chip-resident parent answers with the response code a software one gives', async () => {
    const designs = [await setup(8), await softwareVtpm()];
    for (const [kind, template] of PARENTS) {
      const parents: { vtpm: Tpm2Client; parent: number; key: number; dup: ReturnType<typeof duplicateFor> }[] = [];
      for (const { vtpm, vsrk } of designs) {
        const made = await vtpm.create(vsrk, template);
        const p = await vtpm.load(vsrk, made.outPrivate, made.outPublic);
        const key = await vtpm.create(p.handle, eccSigningTemplate(false));
        const k = await vtpm.load(p.handle, key.outPrivate, key.outPublic);
        parents.push({ vtpm, parent: p.handle, key: k.handle, dup: duplicateFor(made.outPublic, Buffer.from('x')) });
      }
      const rcOfCall = (p: Promise<unknown>) => p.then(() => 0, rcOf);
      // RSA: any length, and blocks of the modulus' size below every modulus (a leading zero), so
      // that the same bytes are the same kind of wrong for both keys; ECC: any bytes as a point.
      const secrets =
        kind === 'RSA'
          ? fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ minLength: 255, maxLength: 255 }).map((b) => Uint8Array.of(0, ...b)))
          : fc.uint8Array({ maxLength: 150 });
      await fc.assert(
        fc.asyncProperty(fc.constantFrom('salt', 'credential', 'duplicate'), secrets, async (use, bytes) => {
          const secret = Buffer.from(bytes);
          const codes = [];
          for (const { vtpm, parent, key, dup } of parents) {
            if (use === 'salt') {
              codes.push(await rcOfCall(vtpm.call(CC.StartAuthSession, [parent, RH.NULL], [], { nonceCaller: Buffer.alloc(16, 1), encryptedSalt: secret, sessionType: 0, symmetric: NULL_SYM, authHash: ALG.SHA256 })));
            } else if (use === 'credential') {
              codes.push(await rcOfCall(vtpm.call(CC.ActivateCredential, [key, parent], [{}, {}], { credentialBlob: Buffer.alloc(60, 2), secret })));
            } else {
              codes.push(await rcOfCall(vtpm.call(CC.Import, [parent], [{}], { encryptionKey: Buffer.alloc(0), objectPublic: dup.objectPublic, duplicate: dup.duplicate, inSymSeed: secret, symmetricAlg: NULL_SYM })));
            }
          }
          assert.notEqual(codes[0], 0, `${use}: random bytes are not a secret shared with the key`);
          assert.equal(codes[0], codes[1], `${kind} ${use}: hardware 0x${codes[0]!.toString(16)}, software 0x${codes[1]!.toString(16)}`);
        }),
        { numRuns: 60 },
      );
      for (const { vtpm, parent, key } of parents) for (const h of [key, parent]) await vtpm.flushContext(h);
    }
  });
});
