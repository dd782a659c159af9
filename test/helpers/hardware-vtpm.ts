/** A hardware-backed vTPM on a simulated chip, as the hardware-backed model tests drive it. */
import { createHash, randomBytes, verify } from 'node:crypto';
import { Chip } from '../../src/hwtpm/chip.ts';
import { openChipClient } from '../../src/hwtpm/open-chip-client.ts';
import { Tpm2Client, Tpm2CommandError } from '../../src/hwtpm/tpm2-client.ts';
import { srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { ALG, CC, RH, ST } from '../../src/tpm/tpm2/constants.ts';
import { publicKeyOf } from '../../src/tpm/tpm2/objects/model.ts';
import type { Public } from '../../src/tpm/tpm2/types/public.ts';
import { MemoryStateStore } from '../../src/tpm/tpm2/state/store.ts';
import { HardwareKeyService } from '../../src/vtpm/hardware-key-service.ts';
import { Tpm2VtpmModel } from '../../src/vtpm/tpm2-model.ts';
import { stateKeeper } from './state-keeper.ts';

/** An owned chip, a hardware-backed vTPM using it as 'vm-a' (started, with a vSRK loaded), and a client of each. */
export async function setup(objectSlots = 3) {
  const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
  await (await openChipClient(chip)).takeOwnership();
  const service = new HardwareKeyService(chip);
  const kept = stateKeeper();
  const snapshots = kept.saved;
  const kbk = randomBytes(32);
  const persist = kept.persist;
  const model = await Tpm2VtpmModel.create(persist, { hardware: { kbk, service: service.forVm('vm-a') }, objectSlots });
  const vtpm = new Tpm2Client((c) => model.execute(c, 0));
  await vtpm.startup();
  const vsrk = (await vtpm.createPrimary(RH.OWNER, srkTemplate())).handle;
  const hw = new Tpm2Client((c) => chip.execute(c, 0));
  return { chip, service, model, vtpm, vsrk, hw, kbk, snapshots, persist };
}

export const rcOf = (e: unknown) => (e instanceof Tpm2CommandError ? e.rc : -1);

/** Every command the key and session manager sends the chip, and every response, as a bus analyser would see them. */
export function tapChip(chip: Chip): Buffer[] {
  const seen: Buffer[] = [];
  const exclusive = chip.exclusive.bind(chip);
  chip.exclusive = (job, locality) =>
    exclusive(
      (exec) =>
        job(async (c) => {
          seen.push(Buffer.from(c));
          const r = await exec(c);
          seen.push(Buffer.from(r));
          return r;
        }),
      locality,
    );
  return seen;
}

/** The command codes among what tapChip saw (commands and responses alternate). */
export const commandCodes = (seen: Buffer[]): number[] => seen.filter((_, i) => i % 2 === 0).map((c) => c.readUInt32BE(6));

/** Whether the ECDSA key at `handle` signs through `tpm` so that its public area `pub` verifies it. */
export async function signsWith(tpm: Tpm2Client, handle: number, pub: Public): Promise<boolean> {
  const message = Buffer.from('signed through a hardware-backed vTPM');
  const r = await tpm.call(CC.Sign, [handle], [{}], {
    digest: createHash('sha256').update(message).digest(),
    inScheme: { scheme: ALG.ECDSA, hashAlg: ALG.SHA256 },
    validation: { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: Buffer.alloc(0) },
  });
  const { r: sr, s } = r.params.signature as { r: Buffer; s: Buffer };
  return verify('sha256', message, { key: publicKeyOf(pub), dsaEncoding: 'ieee-p1363' }, Buffer.concat([sr, s]));
}
