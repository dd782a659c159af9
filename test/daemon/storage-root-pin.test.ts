import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { pinStorageRoot, SRK_NAME_FILE } from '../../src/daemon/storage-root-pin.ts';
import { ChipRefusal } from '../../src/hwtpm/chip-client.ts';
import { openManufacturerCa } from '../../src/hwtpm/credentials/manufacturer-ca.ts';
import type { HostTpm } from '../../src/hwtpm/host-tpm.ts';
import { bootLabHost } from '../../src/hwtpm/lab-host.ts';
import { openChipClient } from '../../src/hwtpm/open-chip-client.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { readSrk } from '../../src/hwtpm/tpm2-provisioning.ts';
import { HANDLES, srkTemplate } from '../../src/hwtpm/tpm2-templates.ts';
import { PssViolation } from '../../src/pss/errors.ts';
import { ProtectedStorage } from '../../src/pss/protected-storage.ts';
import { CC, RH } from '../../src/tpm/tpm2/constants.ts';
import { tempDirs } from '../helpers/temp-dirs.ts';

const tempDir = tempDirs('vtpmd-srk-pin-');
const MEASUREMENT = Buffer.alloc(32, 7);

async function labHost() {
  const state = tempDir();
  const lab = await bootLabHost({ stateDir: join(state, 'chip'), hostId: 'srk-pin' });
  return { state, lab, tpm: new Tpm2Client((c) => lab.chip.execute(c, 0)) };
}

/**
 * The lab chip as reached through something that answers ReadPublic of the SRK with `impostor`'s
 * public area (and Name, which matches it); every command code that passes is noted in `seen`.
 */
function interposed(chip: HostTpm, impostor: () => number | undefined, seen: number[]): HostTpm {
  const pass = (command: Uint8Array): Uint8Array => {
    const c = Buffer.from(command);
    seen.push(c.readUInt32BE(6));
    const other = impostor();
    if (other !== undefined && c.readUInt32BE(6) === CC.ReadPublic && c.readUInt32BE(10) === HANDLES.SRK) c.writeUInt32BE(other, 10);
    return c;
  };
  return {
    family: chip.family,
    get powered() {
      return chip.powered;
    },
    powerOn: () => chip.powerOn(),
    execute: (c, l) => chip.execute(pass(c), l),
    exclusive: (job, l) => chip.exclusive((exec) => job((c) => exec(pass(c))), l),
    flush: () => chip.flush(),
  };
}

/** Pins a fresh client of `tpm` as a host start does (at `now`), and opens the PSS of `state` with it. */
async function start(state: string, tpm: HostTpm, ekRoots: Parameters<typeof pinStorageRoot>[0]['ekRoots'], now?: Date) {
  const client = await openChipClient(tpm);
  await client.takeOwnership();
  const pinned = await pinStorageRoot({ tpm, ekRoots }, client, state, undefined, now);
  return { pinned, pss: await ProtectedStorage.open({ dir: join(state, 'pss'), chip: client }) };
}

describe("the host TPM's SRK, pinned before a secret crosses to it", () => {
  for (const proof of ['proven against the EK roots', 'recorded at the first start'] as const) {
    test(`${proof}: a later start that meets another SRK on the way opens the PSS refusing every vTPM (untrusted-chip), and sends no Unseal`, async () => {
      const { state, lab, tpm } = await labHost();
      const roots = proof === 'proven against the EK roots' ? [lab.ca.certificate] : [];
      const first = await start(state, lab.chip, roots);
      const srk = (await readSrk(tpm)).name;
      assert.deepEqual(first.pinned, srk);
      const record = readFileSync(join(state, SRK_NAME_FILE), 'utf8');
      assert.match(record, proof === 'proven against the EK roots' ? new RegExp(`^${srk.toString('hex')}\\nproven \\d{4}-\\S+Z\\n$`) : new RegExp(`^${srk.toString('hex')}\\n$`));
      await first.pss.save('vm-a', MEASUREMENT, Buffer.from('state of vm-a'));
      await first.pss.close();

      const again = await start(state, lab.chip, roots);
      assert.deepEqual(again.pinned, srk, 'the same chip is pinned again');
      assert.deepEqual(await again.pss.load('vm-a', MEASUREMENT), Buffer.from('state of vm-a'));
      await again.pss.close();

      // A storage key of the interposer's, whose public area is consistent with its Name.
      const impostor = (await tpm.createPrimary(RH.NULL, srkTemplate())).handle;
      const seen: number[] = [];
      const met = await start(state, interposed(lab.chip, () => impostor, seen), roots);
      assert.equal(met.pinned, undefined);
      assert.equal(met.pss.status().refusal, 'untrusted-chip');
      const why = proof === 'proven against the EK roots' ? /untrusted-chip.*not proven to be the certified chip's: the chip could not activate/ : /untrusted-chip.*not the one recorded in .*hwsrk-name/;
      await assert.rejects(met.pss.load('vm-a', MEASUREMENT), (e) => e instanceof PssViolation && why.test(e.message));
      assert.ok(seen.includes(CC.ReadPublic), 'the interposer was asked');
      assert.ok(!seen.includes(CC.Load) && !seen.includes(CC.Unseal), 'the sealed storage key went to the chip');
      assert.equal(readFileSync(join(state, SRK_NAME_FILE), 'utf8'), record, 'the record is kept');
      await met.pss.close();
    });
  }

  test('a client pinned to the SRK refuses to seal under another one met afterwards', async () => {
    const { state, lab, tpm } = await labHost();
    let impostor: number | undefined;
    const seen: number[] = [];
    const between = interposed(lab.chip, () => impostor, seen);
    const client = await openChipClient(between);
    await client.takeOwnership();
    assert.ok(await pinStorageRoot({ tpm: between, ekRoots: [lab.ca.certificate] }, client, state));
    impostor = (await tpm.createPrimary(RH.NULL, srkTemplate())).handle;
    seen.length = 0;
    await assert.rejects(client.seal(Buffer.alloc(32, 1), [16]), (e) => e instanceof ChipRefusal && e.reason === 'untrusted-srk' && /is not the one pinned for this host/.test(e.message));
    assert.ok(!seen.includes(CC.Create), 'the secret went to the chip');
  });

  test('at a first start an SRK that is not proven makes no PSS, naming why, and records nothing', async () => {
    const { state, lab } = await labHost();
    const stranger = await openManufacturerCa(tempDir(), { manufacturer: 'Elsewhere' });
    await assert.rejects(
      start(state, lab.chip, [stranger.certificate]),
      (e) => e instanceof ChipRefusal && e.reason === 'untrusted-srk' && /no secret is sent under the chip's SRK: .*does not chain to a trusted manufacturer root/.test(e.message),
    );
    assert.throws(() => readFileSync(join(state, SRK_NAME_FILE)), { code: 'ENOENT' });
  });

  test('the chain is checked as of the first proof: one that has expired since still proves the same chip, and proves none at a first start', async () => {
    const { state, lab } = await labHost();
    const first = await start(state, lab.chip, [lab.ca.certificate]);
    assert.ok(first.pinned);
    await first.pss.save('vm-a', MEASUREMENT, Buffer.from('state of vm-a'));
    await first.pss.close();
    // Past the manufacturer root's 25 years.
    const later = new Date(Date.now() + 30 * 365 * 24 * 3600 * 1000);
    const again = await start(state, lab.chip, [lab.ca.certificate], later);
    assert.deepEqual(again.pinned, first.pinned);
    assert.deepEqual(await again.pss.load('vm-a', MEASUREMENT), Buffer.from('state of vm-a'));
    await again.pss.close();
    const elsewhere = tempDir();
    await assert.rejects(start(elsewhere, lab.chip, [lab.ca.certificate], later), (e) => e instanceof ChipRefusal && /expired/.test(e.message));
  });

  test('an SRK recorded without roots is proven, and the time recorded, once roots are given', async () => {
    const { state, lab } = await labHost();
    const first = await start(state, lab.chip, []);
    await first.pss.close();
    assert.doesNotMatch(readFileSync(join(state, SRK_NAME_FILE), 'utf8'), /proven/);
    const proven = await start(state, lab.chip, [lab.ca.certificate]);
    assert.deepEqual(proven.pinned, first.pinned);
    assert.match(readFileSync(join(state, SRK_NAME_FILE), 'utf8'), /\nproven \d{4}-/);
    await proven.pss.close();
  });

  test('a damaged record stops the start, naming its file', async () => {
    const { state, lab } = await labHost();
    writeFileSync(join(state, SRK_NAME_FILE), 'not a name\n');
    await assert.rejects(start(state, lab.chip, [lab.ca.certificate]), /hwsrk-name does not hold an SRK Name in hex/);
  });
});
