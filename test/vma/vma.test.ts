import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, verify } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ALG } from '../../src/tpm/tpm2/constants.ts';
import { EventLogBuilder } from '../../src/hwtpm/event-log.ts';
import { EV } from '../../src/hwtpm/event-types.ts';
import { OID } from '../../src/hwtpm/credentials/oids.ts';
import { certificatePublicKey, parseCertificate } from '../../src/hwtpm/credentials/x509.ts';
import { HANDLES } from '../../src/hwtpm/tpm2-templates.ts';
import { enrollAik } from '../../src/vma/aik-enrollment.ts';
import { subjectAltDirectory } from '../../src/vma/cert-fields.ts';
import { configurationFromEventLog, vmaPcrs } from '../../src/vma/reference-values.ts';
import { quote, withLoaded } from '../../src/vma/tpm-operations.ts';
import { Verifier, type AttestationEvidence, type ReferencePolicy } from '../../src/vma/verifier.ts';
import { ensureStorageRoot } from '../../src/vma/vtpm-ek.ts';
import { writeVmCredentials } from '../../src/vma/write-credentials.ts';
import { hasCommand, skipUnlessRequired } from '../interop/harness.ts';
import { openLab, type Lab } from './fixture.ts';
import { Vmca } from '../../src/vma/vmca.ts';
import { VirtualManufacturerAuthority } from '../../src/vma/vma.ts';

let lab: Lab;
const dirs: string[] = [];
before(async () => {
  lab = await openLab();
});
after(async () => {
  await lab?.close();
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

const noOpenssl = hasCommand('openssl') ? undefined : skipUnlessRequired('the credential interop tests need openssl (apt-get install openssl)');
const openssl = (...args: string[]) => execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

describe('vTPM credentials', () => {
  test('openssl accepts a vTPM EK certificate chained through the vMA delegation to the VMCA root and shows its TCG fields', { skip: noOpenssl }, async () => {
    const vm = await lab.vm('web', false);
    const creds = await lab.vma.credentials(vm.ek.certificate, 'web', false, lab.vmca.root.der);
    const out = mkdtempSync(join(tmpdir(), 'vtpmd-creds-'));
    dirs.push(out);
    await writeVmCredentials(out, creds);
    const f = (n: string) => join(out, n);
    assert.match(openssl('verify', '-CAfile', f('vmca-root.pem'), '-untrusted', f('chain.pem'), f('ek.pem')), /ek\.pem: OK/);
    assert.match(openssl('verify', '-CAfile', f('vmca-root.pem'), '-untrusted', f('chain.pem'), f('platform.pem')), /platform\.pem: OK/);
    const text = openssl('x509', '-in', f('ek.pem'), '-noout', '-text');
    assert.match(text, /2\.23\.133\.8\.1/, 'tcg-kp-EKCertificate');
    assert.match(text, /2\.23\.133\.2\.2=vtpmd vTPM \(GVTPM software on vtpmd simulated TPM 2\.0\)/, 'model names the GVTPM and the hwTPM');
    assert.match(text, /2\.23\.133\.2\.1=id:/, 'TPM manufacturer');
    assert.match(text, /2\.23\.133\.2\.3=id:/, 'TPM version');
    const platform = openssl('x509', '-in', f('platform.pem'), '-noout', '-text');
    assert.match(platform, /lab-vma/);
    assert.match(platform, /2\.23\.133\.8\.2/, 'tcg-kp-PlatformAttributeCertificate');
    const chain = openssl('x509', '-in', f('chain.pem'), '-noout', '-text');
    assert.match(chain, /CA:TRUE, pathlen:0/);
  });

  test('the EK certificate is in the vTPM at the standard NV index', async () => {
    const vm = await lab.vm('nv-check', false);
    const pub = await vm.tpm.nvReadPublic(HANDLES.EK_CERT_ECC);
    assert.deepEqual(await vm.tpm.nvRead(0x4000000c, HANDLES.EK_CERT_ECC, pub.dataSize), vm.ek.certificate);
  });

  test('migratable and non-migratable vTPMs carry credentials signed by different vMA keys', async () => {
    const fixed = parseCertificate((await lab.vm('fixed', false)).ek.certificate);
    const mobile = parseCertificate((await lab.vm('mobile', true)).ek.certificate);
    const fixedCa = lab.vma.delegation(false);
    const mobileCa = lab.vma.delegation(true);
    assert.ok(!fixedCa.subjectPublicKeyInfo.equals(mobileCa.subjectPublicKeyInfo));
    assert.deepEqual(fixed.issuer, fixedCa.subject);
    assert.deepEqual(mobile.issuer, mobileCa.subject);
    assert.ok(verify('sha256', fixed.tbs, certificatePublicKey(fixedCa), fixed.signature));
    assert.ok(!verify('sha256', fixed.tbs, certificatePublicKey(mobileCa), fixed.signature));
    assert.ok(verify('sha256', mobile.tbs, certificatePublicKey(mobileCa), mobile.signature));
  });
});

describe('attestation', () => {
  test("the chip's own quote, with its AIK credential chaining to the manufacturer root, verifies as a chip", async () => {
    const pcrs = vmaPcrs();
    const nonce = lab.verifier.challenge();
    const ek = lab.host.platform.eks.find((e) => e.handle === HANDLES.EK_ECC)!;
    const evidence: AttestationEvidence = {
      quote: await lab.vma.quoteChip(pcrs, nonce),
      aikCertificate: lab.vma.aik.certificate,
      ekCertificate: ek.certificate,
      ekChain: [],
      eventLog: lab.hostEventLog,
    };
    const policy: ReferencePolicy = { pcrs, expected: configurationFromEventLog('host', lab.hostEventLog).pcrs };
    const r = await lab.verifier.verify(evidence, policy);
    assert.deepEqual(r.ok ? r.kind : r.reasons, 'chip');
  });

  test('a VM attests through its vTPM; a changed PCR, a revoked vMA, a forged or expired certificate and a replayed nonce are each refused with a reason', async () => {
    const vm = await lab.vm('db', false);
    await ensureStorageRoot(vm.tpm);
    const aik = await enrollAik((job) => job(vm.tpm), lab.privacyCa, {
      parent: HANDLES.SRK,
      ekHandle: HANDLES.EK_ECC,
      ekCertificate: vm.ek.certificate,
      ekChain: [lab.vma.delegation(false).der],
    });
    assert.equal(subjectAltDirectory(parseCertificate(aik.certificate)).get(OID.tcgTpmModel), subjectAltDirectory(parseCertificate(vm.ek.certificate)).get(OID.tcgTpmModel));

    // The guest's measured boot.
    const log = new EventLogBuilder([ALG.SHA256]);
    for (const [pcr, what] of [[0, 'guest firmware'], [4, 'guest boot loader'], [7, 'secure boot policy']] as const) {
      const e = log.measure(pcr, EV.POST_CODE, Buffer.from(what));
      await vm.tpm.pcrExtend(pcr, [{ hashAlg: ALG.SHA256, digest: e.digests[0]!.digest }]);
    }
    const pcrs = [0, 4, 7];
    const policy: ReferencePolicy = { pcrs, expected: configurationFromEventLog('guest', log.encode(), pcrs).pcrs, kind: 'vtpm' };
    const attest = async (overrides: Partial<AttestationEvidence> = {}, nonce = lab.verifier.challenge(), quotePcrs = pcrs): Promise<AttestationEvidence> => ({
      quote: await withLoaded(vm.tpm, HANDLES.SRK, aik.aik, (h) => quote(vm.tpm, h, quotePcrs, nonce)),
      aikCertificate: aik.certificate,
      ekCertificate: vm.ek.certificate,
      ekChain: [lab.vma.delegation(false).der],
      eventLog: log.encode(),
      ...overrides,
    });
    const reasons = async (e: AttestationEvidence): Promise<string> => {
      const r = await lab.verifier.verify(e, policy);
      assert.equal(r.ok, false, 'refused');
      return r.ok ? '' : r.reasons.join('\n');
    };

    const good = await attest();
    const r = await lab.verifier.verify(good, policy);
    assert.ok(r.ok, r.ok ? '' : r.reasons.join('\n'));
    assert.equal(r.kind, 'vtpm');

    assert.match(await reasons(good), /replays a nonce/);
    assert.match(await reasons(await attest({}, Buffer.alloc(32, 7))), /not answer a nonce this verifier issued/);
    assert.match(await reasons(await attest({}, undefined, [0, 4])), /quote covers PCRs 0,4/);

    const forged = Buffer.from(vm.ek.certificate);
    forged[forged.length - 5]! ^= 0x01;
    assert.match(await reasons(await attest({ ekCertificate: forged })), /forged or altered/);
    assert.match(await reasons(await attest({ eventLog: Buffer.from('not a log') })), /event log cannot be replayed/);

    await vm.tpm.pcrExtend(4, [{ hashAlg: ALG.SHA256, digest: createHash('sha256').update('unlogged').digest() }]);
    assert.match(await reasons(await attest()), /event log does not replay to the quoted PCR values/);

    const later = new Verifier({
      privacyCaRoots: [lab.privacyCa.root],
      manufacturerRoots: [...lab.host.platform.ekRoots],
      vmcaRoots: [lab.vmca.root],
      crls: async () => [await lab.vmca.crl()],
      now: () => new Date(Date.now() + 2 * 365 * 86_400_000),
    });
    const stale = await later.verify(await attest({}, later.challenge()), policy);
    assert.match(stale.ok ? '' : stale.reasons.join('\n'), /expired on/);

    await lab.vmca.withdrawConfiguration(lab.configuration);
    const revoked = await reasons(await attest());
    assert.match(revoked, /was revoked by "vtpmd Virtual Manufacturer Root CA"/);
  });
});

describe('the VMCA', () => {
  test('refuses to delegate to a vMA on a host configuration it has not approved, naming the PCRs that differ', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vtpmd-vmca-'));
    dirs.push(dir);
    const vmca = await Vmca.open({ dir, privacyCaRoots: () => [lab.privacyCa.root] });
    // Approved: the same host with a different hypervisor measured.
    const measured = configurationFromEventLog('another build', lab.hostEventLog);
    await vmca.approve({ ...measured, pcrs: { ...measured.pcrs, '9': '00'.repeat(32) } });
    const ek = lab.host.platform.eks.find((e) => e.handle === HANDLES.EK_ECC)!;
    await assert.rejects(
      VirtualManufacturerAuthority.open({ chip: lab.host.platform.tpm, hostId: 'lab-vma', eventLog: lab.hostEventLog, ek: { handle: ek.handle, certificate: ek.certificate }, privacyCa: lab.privacyCa, vmca }),
      (e: unknown) => e instanceof Error && /no approved configuration/.test(e.message) && /PCRs 9\b/.test(e.message),
    );
  });
});
