/**
 * One suite for the chip client API, run against every personality: the layers above the chip
 * must not care which one the host has.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { Chip, type Personality } from '../../src/hwtpm/chip.ts';
import { ChipRefusal, verifyAttestation, verifySignature, type ChipClient } from '../../src/hwtpm/chip-client.ts';
import { openChipClient } from '../../src/hwtpm/open-chip-client.ts';
import { MemoryStateStore } from '../../src/tpm/tpm2/state/store.ts';
import { startChip } from '../../src/hwtpm/chip-startup.ts';
import type { HostTpm } from '../../src/hwtpm/host-tpm.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { ALG, CC, RH } from '../../src/tpm/tpm2/constants.ts';
import { NT, NV_ATTR } from '../../src/tpm/tpm2/types/nv.ts';
import { commandCodes, tapChip } from '../helpers/hardware-vtpm.ts';

const PERSONALITIES: Personality[] = ['tpm2', 'tpm12'];

async function freshClient(personality: Personality, store = new MemoryStateStore()): Promise<{ chip: Chip; client: ChipClient; store: MemoryStateStore }> {
  const chip = Chip.open({ personality, store });
  const client = await openChipClient(chip);
  await client.takeOwnership();
  return { chip, client, store };
}

/** The chip's PCR value after extending `start` with the measurement of each of `data`. */
function expectedPcr(hash: 'sha1' | 'sha256', start: Buffer, ...data: string[]): Buffer {
  let v = start;
  for (const d of data) v = createHash(hash).update(v).update(createHash(hash).update(d).digest()).digest();
  return v;
}

/**
 * What a quote's PCR digest must be, computed here independently: TPM 2.0 hashes the values;
 * TPM 1.2 hashes a TPM_PCR_COMPOSITE (selection, value size, values).
 */
function pcrComposite(personality: Personality, pcrs: number[], values: Buffer[]): Buffer {
  if (personality === 'tpm2') return createHash('sha256').update(Buffer.concat(values)).digest();
  const select = Buffer.alloc(3);
  for (const p of pcrs) select[p >> 3]! |= 1 << (p & 7);
  const head = Buffer.alloc(2);
  head.writeUInt16BE(3);
  const size = Buffer.alloc(4);
  size.writeUInt32BE(20 * values.length);
  return createHash('sha1').update(Buffer.concat([head, select, size, ...values])).digest();
}

for (const personality of PERSONALITIES) {
  describe(`chip client over ${personality}`, () => {
    test('measure extends the PCR with the digest of the data', async () => {
      const { client } = await freshClient(personality);
      const [before] = await client.readPcrs([10]);
      await client.measure(10, Buffer.from('component-a'));
      const [after] = await client.readPcrs([10]);
      assert.deepEqual(after, expectedPcr(client.pcrHash, before!, 'component-a'));
    });

    test('seal releases the secret while the PCRs hold their values and refuses after a change', async () => {
      const { client } = await freshClient(personality);
      await client.measure(11, Buffer.from('host tcb'));
      const blob = await client.seal(Buffer.from('pss storage key'), [11, 12]);
      assert.equal((await client.unseal(blob)).toString(), 'pss storage key');
      assert.equal((await client.unseal(blob)).toString(), 'pss storage key', 'unsealing twice works: keys are flushed after each turn');
      await client.measure(12, Buffer.from('an unexpected component'));
      await assert.rejects(client.unseal(blob), (e: unknown) => e instanceof ChipRefusal && e.reason === 'pcr-mismatch');
    });

    test('seal to expected values releases the secret only once the PCRs reach them', async () => {
      const { client } = await freshClient(personality);
      await client.measure(11, Buffer.from('host tcb'));
      const [pcr11, pcr12] = await client.readPcrs([11, 12]);
      // Given out of order: the binding takes the PCRs in ascending order whatever the caller's.
      const expected = new Map([
        [12, expectedPcr(client.pcrHash, pcr12!, 'gvtpm v2')],
        [11, pcr11!],
      ]);
      const blob = await client.seal(Buffer.from('pss storage key'), [12, 11], expected);
      await assert.rejects(client.unseal(blob), (e: unknown) => e instanceof ChipRefusal && e.reason === 'pcr-mismatch', 'PCR 12 does not hold the expected value yet');
      await client.measure(12, Buffer.from('gvtpm v2'));
      assert.equal((await client.unseal(blob)).toString(), 'pss storage key');
      await client.measure(12, Buffer.from('gvtpm v3'));
      await assert.rejects(client.unseal(blob), (e: unknown) => e instanceof ChipRefusal && e.reason === 'pcr-mismatch');
    });

    test('seal to expected values refuses a missing PCR or a value of the wrong size', async () => {
      const { client } = await freshClient(personality);
      const size = client.pcrHash === 'sha256' ? 32 : 20;
      await assert.rejects(client.seal(Buffer.from('k'), [11, 12], new Map([[11, Buffer.alloc(size)]])), /no expected value for PCR 12/);
      await assert.rejects(client.seal(Buffer.from('k'), [11], new Map([[11, Buffer.alloc(size + 1)]])), new RegExp(`has ${size + 1} bytes`));
    });

    test('a sealed blob with a flipped byte is refused, not unsealed', async () => {
      const { client } = await freshClient(personality);
      const blob = await client.seal(Buffer.from('secret'), [11]);
      let refusedAll = true;
      for (const at of [blob.length - 5, Math.floor(blob.length / 2), 12]) {
        const bad = Buffer.from(blob);
        bad[at]! ^= 0x40;
        try {
          const out = await client.unseal(bad);
          if (out.toString() === 'secret') refusedAll = false;
        } catch (e) {
          assert.ok(e instanceof Error, 'a refusal is an error, never a crash');
        }
      }
      assert.ok(refusedAll, 'no altered blob releases the secret');
    });

    test('a blob sealed by one chip does not unseal on another', async () => {
      const a = await freshClient(personality);
      const b = await freshClient(personality);
      const blob = await a.client.seal(Buffer.from('only for chip a'), [11]);
      await assert.rejects(b.client.unseal(blob));
    });

    test('a PCR-bound signing key signs while the PCRs hold and refuses after a change', async () => {
      const { client } = await freshClient(personality);
      const key = await client.createSigningKey([13]);
      const { signature, scheme } = await client.sign(key, Buffer.from('vMA delegation request'));
      assert.ok(verifySignature(key.publicKey, scheme, Buffer.from('vMA delegation request'), signature));
      assert.ok(!verifySignature(key.publicKey, scheme, Buffer.from('something else'), signature));
      await client.measure(13, Buffer.from('vma upgraded'));
      await assert.rejects(client.sign(key, Buffer.from('x')), (e: unknown) => e instanceof ChipRefusal && e.reason === 'pcr-mismatch');
    });

    test('an identity key certifies a key and quotes PCRs with the caller nonce', async () => {
      const { client } = await freshClient(personality);
      await client.measure(11, Buffer.from('quoted'));
      const aik = await client.createIdentityKey();
      const key = await client.createSigningKey([11]);
      const nonce = Buffer.from('0123456789abcdef0123');
      const cert = await client.certifyKey(key, aik, nonce);
      assert.ok(verifyAttestation(aik.publicKey, cert));
      assert.ok(!verifyAttestation(key.publicKey, cert), 'signed by the identity key, not the certified key');
      assert.deepEqual(cert.nonce.subarray(-nonce.length), nonce.subarray(-cert.nonce.length));
      assert.ok(cert.signed.includes(cert.certifiedKeyId), 'the signed bytes name the certified key');

      const quote = await client.quote(aik, [11, 12], nonce);
      assert.ok(verifyAttestation(aik.publicKey, quote));
      assert.ok(quote.signed.includes(quote.pcrDigest));
      const values = await client.readPcrs([11, 12]);
      assert.deepEqual(quote.pcrDigest, pcrComposite(personality, [11, 12], values));
      const tampered = { ...quote, signed: Buffer.from(quote.signed) };
      tampered.signed[tampered.signed.length - 1]! ^= 1;
      assert.ok(!verifyAttestation(aik.publicKey, tampered));
    });

    test('counters start where created and only go up, independently', async () => {
      const { client } = await freshClient(personality);
      const a = await client.createCounter();
      const b = await client.createCounter();
      assert.notEqual(a.id, b.id);
      assert.equal(await client.incrementCounter(a.id), a.value + 1n);
      assert.equal(await client.incrementCounter(a.id), a.value + 2n);
      assert.equal(await client.readCounter(a.id), a.value + 2n);
      assert.ok((await client.readCounter(b.id)) >= b.value);
    });

    test('a counter made with a key moves only with that key, and anyone may still read it', async () => {
      const { client } = await freshClient(personality);
      const key = Buffer.from('the PSS counter key');
      const c = await client.createCounter(key);
      assert.equal(await client.incrementCounter(c.id, key), c.value + 1n);
      await assert.rejects(client.incrementCounter(c.id));
      await assert.rejects(client.incrementCounter(c.id, Buffer.from('another key')));
      assert.equal(await client.readCounter(c.id), c.value + 1n);
    });

    test('concurrent operations are serialized: more callers than slots all succeed', async () => {
      const { client } = await freshClient(personality);
      const blob = await client.seal(Buffer.from('shared'), [11]);
      const results = await Promise.all(Array.from({ length: 8 }, () => client.unseal(blob)));
      for (const r of results) assert.equal(r.toString(), 'shared');
    });

    test('keys, sealed data and counters survive a power cycle and a reopen of the NV', async () => {
      const { chip, client, store } = await freshClient(personality);
      const blob = await client.seal(Buffer.from('durable'), [12]);
      const counter = await client.createCounter();
      await client.incrementCounter(counter.id);
      await chip.flush();
      await chip.powerOff();
      const reopened = Chip.open({ personality, store });
      assert.equal(reopened.fresh, false);
      const again = await openChipClient(reopened);
      assert.equal((await again.unseal(blob)).toString(), 'durable');
      assert.equal(await again.readCounter(counter.id), counter.value + 1n);
    });
  });
}

describe('chip client over tpm2: room for counters', () => {
  test('a TPM whose NV is full refuses another counter, saying where the PSS counters are and how to release them', async () => {
    const { client } = await freshClient('tpm2');
    const made: number[] = [];
    let refusal: unknown;
    for (let i = 0; i < 300 && refusal === undefined; i++) {
      try {
        made.push((await client.createCounter(Buffer.from('key'))).id);
      } catch (e) {
        refusal = e;
      }
    }
    assert.ok(made.length > 0 && new Set(made).size === made.length, 'each counter at an index of its own');
    assert.ok(refusal instanceof ChipRefusal && refusal.reason === 'resources', String(refusal));
    assert.match(refusal.message, /no room for another PSS counter: its NV memory is full \(TPM_RC_NV_SPACE\)\. .*0x01500000–0x015000ff; release those of state directories no longer used with tpm2_nvundefine -C o INDEX/);
  });
});

/** A started chip whose owner authorization is set, as vtpmd is given it (the owner's, and a tap on its bus). */
async function ownedChip(): Promise<{ chip: Chip; owner: Buffer; client: ChipClient; bus: Buffer[] }> {
  const chip = Chip.open({ personality: 'tpm2', store: new MemoryStateStore() });
  await startChip(chip);
  const owner = randomBytes(32);
  await new Tpm2Client((c) => chip.execute(c, 0)).call(CC.HierarchyChangeAuth, [RH.OWNER], [{}], { newAuth: owner });
  const host: HostTpm = {
    family: 'tpm2',
    get powered() {
      return chip.powered;
    },
    hierarchyAuth: { owner },
    powerOn: () => chip.powerOn(),
    execute: (c, l) => chip.execute(c, l),
    exclusive: (job, l) => chip.exclusive(job, l),
    flush: () => chip.flush(),
  };
  const bus = tapChip(chip);
  return { chip, owner, client: await openChipClient(host), bus };
}

describe('chip client over tpm2: the bus', () => {
  test('a secret sealed or unsealed, and a counter key at its definition, cross it only encrypted; the owner authorization never crosses', async () => {
    const { owner, client, bus } = await ownedChip();
    await client.takeOwnership();
    const secret = randomBytes(32);
    const key = randomBytes(32);
    assert.deepEqual(await client.unseal(await client.seal(secret, [16])), secret);
    const counter = await client.createCounter(key);
    assert.equal(await client.incrementCounter(counter.id, key), counter.value + 1n);
    await assert.rejects(client.incrementCounter(counter.id, randomBytes(32)), 'the counter moves only with its key');
    const codes = commandCodes(bus);
    for (const cc of [CC.Create, CC.Unseal, CC.NV_DefineSpace]) assert.ok(codes.includes(cc), `the tap saw 0x${cc.toString(16)}`);
    assert.ok(!bus.some((b) => b.includes(secret)), 'the sealed secret crossed the bus');
    const definition = bus[codes.indexOf(CC.NV_DefineSpace) * 2]!;
    assert.ok(!definition.includes(createHash('sha256').update(key).digest()), "the counter's key crossed the bus as it was defined");
    assert.equal(await client.readCounter(counter.id), counter.value + 1n, 'the owner still reads it');
    assert.equal(await client.readCounter(counter.id, key), counter.value + 1n, 'and so does its key');
    for (const cc of [CC.CreatePrimary, CC.EvictControl, CC.NV_Read]) assert.ok(commandCodes(bus).includes(cc), `the tap saw 0x${cc.toString(16)}`);
    assert.ok(!bus.some((b) => b.includes(owner)), 'the owner authorization crossed the bus');
  });

  test('a keyed counter made before keys could read it is still read by the owner, whose authorization does not cross the bus', async () => {
    const { chip, owner, client, bus } = await ownedChip();
    await client.takeOwnership();
    const key = randomBytes(32);
    const keyAuth = createHash('sha256').update(key).digest();
    const id = 0x01500000;
    // Defined as that release did, off the tapped bus.
    const hw = new Tpm2Client((c) => chip.execute(c, 0), { owner });
    await hw.nvDefineSpace(RH.OWNER, { nvIndex: id, nameAlg: ALG.SHA256, attributes: (NV_ATTR.AUTHWRITE | NV_ATTR.OWNERREAD | NV_ATTR.NO_DA | (NT.COUNTER << 4)) >>> 0, authPolicy: Buffer.alloc(0), dataSize: 8 }, { indexAuth: keyAuth });
    await hw.nvIncrement(id, id, { password: keyAuth });
    const first = await client.readCounter(id, key);
    assert.equal(await client.incrementCounter(id, key), first + 1n);
    assert.equal(await client.readCounter(id), first + 1n);
    assert.ok(commandCodes(bus).filter((cc) => cc === CC.NV_Read).length >= 3, 'the owner read it on the tapped bus');
    assert.ok(!bus.some((b) => b.includes(owner)), 'the owner authorization crossed the bus');
  });
});
