/**
 * The manufacturer CA and EK certificates: OpenSSL verifies the chain and reads the TCG fields the
 * EK Credential Profile asks for; the CA survives a restart and corrupt CA files are reported.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { generatePrivateKey } from '../../src/tpm/crypto/rsa.ts';
import { execFile } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { CredentialError } from '../../src/hwtpm/credentials/errors.ts';
import { issueEkCertificate, tpmIdString, type IssuedCertificate } from '../../src/hwtpm/credentials/ek-certificate.ts';
import {
  MANUFACTURER_CA_FILES,
  createManufacturerCa,
  loadManufacturerCa,
  openManufacturerCa,
  saveManufacturerCa,
  type CertificateAuthority,
} from '../../src/hwtpm/credentials/manufacturer-ca.ts';
import { OID } from '../../src/hwtpm/credentials/oids.ts';
import { allFromPem, findExtension, fromPem, parseCertificate, toPem } from '../../src/hwtpm/credentials/x509.ts';
import { hasCommand, skipUnlessRequired } from '../interop/harness.ts';

const MANUFACTURER = 'vtpmd Simulated TPMs';

const rsaEk = () => createPublicKey(generatePrivateKey('rsa', { modulusLength: 2048, publicExponent: 65537 }));
const eccEk = (curve: 'prime256v1' | 'secp384r1' = 'prime256v1') => createPublicKey(generatePrivateKey('ec', { namedCurve: curve }));

function issue(ca: CertificateAuthority, ek: KeyObject): IssuedCertificate {
  return issueEkCertificate({ ekPublicKey: ek, issuer: ca, manufacturerId: 'VTPD', model: 'vtpmd hw', firmwareVersion: 0x00010002 });
}

async function openssl(args: string[], input?: Buffer): Promise<{ code: number; out: string }> {
  return new Promise((ok) => {
    const child = execFile('openssl', args, { encoding: 'utf8' }, (err, stdout, stderr) => ok({ code: err ? Number(err.code ?? 1) : 0, out: stdout + stderr }));
    child.stdin!.end(input);
  });
}

describe('manufacturer CA and EK certificates', () => {
  const skip = hasCommand('openssl') ? false : skipUnlessRequired('openssl is missing (apt-get install openssl)');
  let dir: string;
  let rsaCa: CertificateAuthority;
  let eccCa: CertificateAuthority;
  const file = (name: string, text: string) => {
    const p = join(dir, name);
    writeFileSync(p, text);
    return p;
  };

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'vtpmd-credentials-'));
    rsaCa = createManufacturerCa({ manufacturer: MANUFACTURER, keyType: 'rsa' });
    eccCa = createManufacturerCa({ manufacturer: MANUFACTURER, keyType: 'ecc' });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const [caName, getCa] of [
    ['RSA', () => rsaCa],
    ['ECC', () => eccCa],
  ] as const) {
    for (const [ekName, makeEk] of [
      ['RSA-2048', rsaEk],
      ['ECC P-256', () => eccEk('prime256v1')],
      ['ECC P-384', () => eccEk('secp384r1')],
    ] as const) {
      test(`openssl verify -x509_strict accepts an ${ekName} EK certificate up to the ${caName} manufacturer root`, { skip }, async () => {
        const ca = file(`ca-${caName}.pem`, getCa().certificatePem);
        const ek = file(`ek-${caName}-${ekName}.pem`, issue(getCa(), makeEk()).pem);
        const r = await openssl(['verify', '-x509_strict', '-CAfile', ca, ek]);
        assert.equal(r.code, 0, r.out);
        assert.match(r.out, /: OK/);
      });
    }
  }

  test('openssl shows the TCG identity, purpose and key usage of an RSA EK certificate', { skip }, async () => {
    const ek = file('ek-rsa-text.pem', issue(rsaCa, rsaEk()).pem);
    const { code, out } = await openssl(['x509', '-in', ek, '-noout', '-text']);
    assert.equal(code, 0, out);
    assert.match(out, /Subject: *\n/, 'the subject is empty');
    assert.match(out, /Issuer: O = vtpmd Simulated TPMs, CN = vtpmd Simulated TPMs TPM Root CA/);
    assert.match(out, /X509v3 Subject Alternative Name: critical\s+DirName:\/2\.23\.133\.2\.1=id:56545044\/2\.23\.133\.2\.2=vtpmd hw\/2\.23\.133\.2\.3=id:00010002/);
    assert.match(out, /X509v3 Extended Key Usage: *\n\s+2\.23\.133\.8\.1/);
    assert.match(out, /X509v3 Basic Constraints: critical\s+CA:FALSE/);
    assert.match(out, /X509v3 Key Usage: critical\s+Key Encipherment\n/);
    assert.match(out, /X509v3 Authority Key Identifier: *\n\s+[0-9A-F:]+/);
    assert.match(out, /Version: 3/);
    assert.match(out, /Signature Algorithm: sha256WithRSAEncryption/);
  });

  test('an ECC EK certificate is for key agreement and signed with ECDSA by an ECC root', { skip }, async () => {
    const ek = file('ek-ecc-text.pem', issue(eccCa, eccEk()).pem);
    const { out } = await openssl(['x509', '-in', ek, '-noout', '-text']);
    assert.match(out, /X509v3 Key Usage: critical\s+Key Agreement\n/);
    assert.match(out, /Signature Algorithm: ecdsa-with-SHA256/);
    assert.match(out, /NIST CURVE: P-256/);
  });

  test('subjectDirectoryAttributes carries tcg-at-tpmSpecification family 2.0, level and revision, as openssl parses it', { skip }, async () => {
    const cert = parseCertificate(issue(eccCa, eccEk()).der);
    const sda = findExtension(cert, OID.subjectDirectoryAttributes);
    assert.ok(sda && !sda.critical);
    const { code, out } = await openssl(['asn1parse', '-inform', 'DER'], sda.value);
    assert.equal(code, 0, out);
    assert.match(out, /OBJECT\s+:2\.23\.133\.2\.16\n/);
    assert.match(out, /UTF8STRING\s+:2\.0\n/);
    assert.match(out, /INTEGER\s+:00\n[^\n]*INTEGER\s+:A4\n/, 'level 0, revision 164');
  });

  test('the manufacturer root is a self-signed CA with critical basicConstraints and keyUsage and a key identifier', { skip }, async () => {
    const ca = file('ca-text.pem', eccCa.certificatePem);
    const { out } = await openssl(['x509', '-in', ca, '-noout', '-text']);
    assert.match(out, /X509v3 Basic Constraints: critical\s+CA:TRUE/);
    assert.match(out, /X509v3 Key Usage: critical\s+Certificate Sign, CRL Sign\n/);
    assert.match(out, /X509v3 Subject Key Identifier: *\n\s+[0-9A-F:]{59}\n/);
    assert.match(out, /Subject: O = vtpmd Simulated TPMs, CN = vtpmd Simulated TPMs TPM Root CA/);
    const v = await openssl(['verify', '-x509_strict', '-CAfile', ca, ca]);
    assert.equal(v.code, 0, v.out);
  });

  test('an EK certificate does not verify against another manufacturer root', { skip }, async () => {
    const other = createManufacturerCa({ manufacturer: MANUFACTURER, keyType: 'ecc' });
    const otherPem = file('other-ca.pem', other.certificatePem);
    const ek = issue(eccCa, eccEk());
    const r = await openssl(['verify', '-CAfile', otherPem, file('ek-other.pem', ek.pem)]);
    assert.notEqual(r.code, 0, 'same name, different key: the signature must not verify');
    assert.match(r.out, /signature failure|unable to get local issuer|certificate signature/i);
    assert.equal(new X509Certificate(ek.der).verify(new X509Certificate(other.certificatePem).publicKey), false);
    assert.equal(new X509Certificate(ek.der).verify(new X509Certificate(eccCa.certificatePem).publicKey), true);
  });

  test('PEM: every certificate of a bundle comes back in order, and fromPem takes the first', () => {
    const a = Buffer.from('first certificate bytes');
    const b = Buffer.from('second, longer certificate bytes '.repeat(4));
    const bundle = `a comment\n${toPem(a)}${toPem(b)}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n`;
    assert.deepEqual(allFromPem(bundle), [a, b]);
    assert.deepEqual(fromPem(bundle), a);
    assert.deepEqual(allFromPem('no PEM here'), []);
    assert.equal(fromPem('no PEM here'), undefined);
  });

  test('the public key in an EK certificate is the EK public key given', () => {
    for (const ek of [rsaEk(), eccEk('prime256v1'), eccEk('secp384r1')]) {
      const cert = new X509Certificate(issue(rsaCa, ek).pem);
      assert.ok(cert.publicKey.equals(ek));
    }
  });

  test('serial numbers are positive, at most 20 bytes, and differ between certificates', () => {
    const ek = eccEk();
    const a = parseCertificate(issue(eccCa, ek).der).serial;
    const b = parseCertificate(issue(eccCa, ek).der).serial;
    for (const s of [a, b]) {
      assert.ok(s.length <= 20 && (s[0]! & 0x80) === 0 && s.some((x) => x !== 0));
    }
    assert.ok(!a.equals(b));
  });

  test('vendor ids and firmware versions are written in the profile\u2019s "id:" form', () => {
    assert.equal(tpmIdString('VTPD'), 'id:56545044');
    assert.equal(tpmIdString('IBM'), 'id:49424D00');
    assert.equal(tpmIdString(0x00010002), 'id:00010002');
    assert.throws(() => tpmIdString('TOOLONG'), CredentialError);
  });

  test('an RSA EK shorter than 2048 bits or a key of another type is refused', () => {
    const small = createPublicKey(generatePrivateKey('rsa', { modulusLength: 1024, publicExponent: 65537 }));
    assert.throws(() => issue(rsaCa, small), CredentialError);
    assert.throws(() => issue(rsaCa, generateKeyPairSync('ed25519').publicKey), CredentialError);
  });
});

describe('certificate decoder', () => {
  const onlyResultOrCredentialError = (bytes: Uint8Array): void => {
    try {
      parseCertificate(bytes);
    } catch (e) {
      assert.ok(e instanceof CredentialError, `threw ${String(e)}`);
    }
  };

  test('random bytes yield a parsed certificate or a CredentialError, nothing else', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), onlyResultOrCredentialError), { numRuns: 2000 });
  });

  test('mutated and truncated EK certificates yield a parsed certificate or a CredentialError, nothing else', () => {
    const ca = createManufacturerCa({ manufacturer: MANUFACTURER });
    const der = issue(ca, eccEk()).der;
    const mutation = fc.record({ flips: fc.array(fc.tuple(fc.nat(der.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), cut: fc.nat(der.length) });
    fc.assert(
      fc.property(mutation, ({ flips, cut }) => {
        const b = Buffer.from(der);
        for (const [at, v] of flips) b[at] = v;
        onlyResultOrCredentialError(b);
        onlyResultOrCredentialError(b.subarray(0, cut));
      }),
      { numRuns: 2000 },
    );
  });
});

describe('manufacturer CA persistence', () => {
  let dir: string;
  const paths = () => ({ cert: join(dir, MANUFACTURER_CA_FILES.certificate), key: join(dir, MANUFACTURER_CA_FILES.key) });

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'vtpmd-ca-store-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const fresh = () => {
    rmSync(dir, { recursive: true, force: true });
    dir = mkdtempSync(join(tmpdir(), 'vtpmd-ca-store-'));
  };

  test('opening an empty directory creates the CA; opening it again loads the same key and certificate', async () => {
    fresh();
    const created = await openManufacturerCa(dir, { manufacturer: MANUFACTURER });
    const reopened = await openManufacturerCa(dir, { manufacturer: 'ignored when the CA exists' });
    assert.ok(reopened.certificate.der.equals(created.certificate.der));
    assert.ok(reopened.privateKey.equals(created.privateKey));
    assert.ok(reopened.keyId.equals(created.keyId));
    assert.equal(readFileSync(paths().cert, 'utf8'), created.certificatePem);
  });

  test('the key file is readable by its owner only, and no temporary file is left behind', async () => {
    fresh();
    await saveManufacturerCa(dir, createManufacturerCa({ manufacturer: MANUFACTURER, keyType: 'rsa' }));
    assert.equal(statSync(paths().key).mode & 0o777, 0o600);
    assert.deepEqual(readdirSync(dir).sort(), [MANUFACTURER_CA_FILES.key, MANUFACTURER_CA_FILES.certificate].sort());
  });

  async function expectReported(mangle: () => void | Promise<void>, pattern: RegExp): Promise<void> {
    fresh();
    await openManufacturerCa(dir, { manufacturer: MANUFACTURER });
    const keyPem = readFileSync(paths().key, 'utf8');
    await mangle();
    const certBefore = readFileSync(paths().cert, 'utf8');
    for (const open of [() => loadManufacturerCa(dir), () => openManufacturerCa(dir, { manufacturer: MANUFACTURER })]) {
      await assert.rejects(open(), (e: unknown) => {
        assert.ok(e instanceof CredentialError, String(e));
        assert.match(e.message, pattern);
        const keyBody = keyPem.split('\n').filter((l) => /^[A-Za-z0-9+/=]{20,}$/.test(l));
        assert.ok(keyBody.length > 0 && keyBody.every((l) => !e.message.includes(l)), 'the message carries no key material');
        return true;
      });
    }
    assert.equal(readFileSync(paths().cert, 'utf8'), certBefore, 'a corrupt CA is never silently replaced');
  }

  test('a truncated certificate file is reported, naming the file', async () => {
    await expectReported(() => writeFileSync(paths().cert, readFileSync(paths().cert, 'utf8').slice(0, 200)), /manufacturer-ca\.pem is corrupt/);
  });

  test('a certificate with damaged DER is reported as not well-formed', async () => {
    await expectReported(() => {
      const pem = readFileSync(paths().cert, 'utf8');
      const der = Buffer.from(pem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
      der[1] = 0x00;
      writeFileSync(paths().cert, `-----BEGIN CERTIFICATE-----\n${der.toString('base64')}\n-----END CERTIFICATE-----\n`);
    }, /not a well-formed X\.509 certificate/);
  });

  test('a garbled key file is reported without echoing it', async () => {
    await expectReported(() => {
      const text = readFileSync(paths().key, 'utf8');
      writeFileSync(paths().key, text.replace(/\n[A-Za-z0-9+/]{10}/, '\n!!!!!!!!!!'));
    }, /manufacturer-ca\.key is corrupt/);
  });

  test('a key that does not belong to the certificate is reported', async () => {
    await expectReported(
      () => saveManufacturerCa(dir, { ...createManufacturerCa({ manufacturer: MANUFACTURER }), certificatePem: readFileSync(paths().cert, 'utf8') }),
      /does not belong to the CA key/,
    );
  });

  test('a certificate without its key is reported rather than replaced by a new CA', async () => {
    await expectReported(() => unlinkSync(paths().key), /cannot read the manufacturer CA key .*ENOENT/);
  });

  test('a key file in an unknown format version is reported', async () => {
    await expectReported(() => writeFileSync(paths().key, readFileSync(paths().key, 'utf8').replace('format 1', 'format 9')), /not in a format this version reads/);
  });
});
