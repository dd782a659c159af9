import { describe, test } from 'node:test';
import { ALG, ECC_CURVE } from '../../src/tpm/tpm2/constants.ts';
import { testParms, u16b, u32b } from '../helpers/tpm2-commands.ts';
import { fails, ok, startedEngine } from '../helpers/tpm2-engine.ts';

const RC = {
  VALUE_P1: 0x1c4,
  CURVE_P1: 0x1e6,
  TYPE_P1: 0x1ca,
  SYMMETRIC_P1: 0x1d6,
  MODE_P1: 0x1c9,
  SCHEME_P1: 0x1d2,
  HASH_P1: 0x1c3,
  KDF_P1: 0x1cc,
  INSUFFICIENT_P1: 0x1da,
  SIZE: 0x095,
};

const w = (...fields: number[]) => Buffer.concat(fields.map((f) => u16b(f)));
const NULL_SYM = w(ALG.NULL);
const AES128CFB = w(ALG.AES, 128, ALG.CFB);
const rsa = (sym: Buffer, scheme: Buffer, keyBits: number, exponent = 0) =>
  Buffer.concat([w(ALG.RSA), sym, scheme, w(keyBits), u32b(exponent)]);
const ecc = (sym: Buffer, scheme: Buffer, curve: number, kdf: Buffer = w(ALG.NULL)) => Buffer.concat([w(ALG.ECC), sym, scheme, w(curve), kdf]);

describe('TPM2_TestParms', () => {
  test('TestParms accepts RSA-2048 with no symmetric algorithm and no scheme', () => {
    ok(startedEngine(), testParms(rsa(NULL_SYM, w(ALG.NULL), 2048)));
  });

  test('TestParms accepts an RSA-2048 storage-key template (AES-128-CFB, NULL scheme, exponent 65537)', () => {
    ok(startedEngine(), testParms(rsa(AES128CFB, w(ALG.NULL), 2048, 65537)));
  });

  test('TestParms accepts RSA-2048 with RSASSA/SHA-256 and RSA-3072 with OAEP/SHA-384', () => {
    const tpm = startedEngine();
    ok(tpm, testParms(rsa(NULL_SYM, w(ALG.RSASSA, ALG.SHA256), 2048)));
    ok(tpm, testParms(rsa(NULL_SYM, w(ALG.OAEP, ALG.SHA384), 3072)));
  });

  test('TestParms accepts ECC NIST P-256 with ECDSA/SHA-256 and P-384 with ECDH/SHA-384', () => {
    const tpm = startedEngine();
    ok(tpm, testParms(ecc(NULL_SYM, w(ALG.ECDSA, ALG.SHA256), ECC_CURVE.NIST_P256)));
    ok(tpm, testParms(ecc(AES128CFB, w(ALG.ECDH, ALG.SHA384), ECC_CURVE.NIST_P384)));
  });

  test('TestParms accepts a SYMCIPHER AES-128-CFB and AES-256-CTR', () => {
    const tpm = startedEngine();
    ok(tpm, testParms(Buffer.concat([w(ALG.SYMCIPHER), AES128CFB])));
    ok(tpm, testParms(Buffer.concat([w(ALG.SYMCIPHER), w(ALG.AES, 256, ALG.CTR)])));
  });

  test('TestParms accepts a KEYEDHASH with HMAC/SHA-256 and with XOR/SHA-256/KDF1_SP800_108', () => {
    const tpm = startedEngine();
    ok(tpm, testParms(w(ALG.KEYEDHASH, ALG.HMAC, ALG.SHA256)));
    ok(tpm, testParms(w(ALG.KEYEDHASH, ALG.XOR, ALG.SHA256, ALG.KDF1_SP800_108)));
    ok(tpm, testParms(w(ALG.KEYEDHASH, ALG.NULL)));
  });

  test('TestParms rejects RSA-4096 with TPM_RC_VALUE + P1 (0x1C4)', () => {
    fails(startedEngine(), testParms(rsa(NULL_SYM, w(ALG.NULL), 4096)), RC.VALUE_P1);
  });

  test('TestParms rejects an unknown curve with TPM_RC_CURVE + P1 (0x1E6)', () => {
    const tpm = startedEngine();
    fails(tpm, testParms(ecc(NULL_SYM, w(ALG.ECDSA, ALG.SHA256), 0x0099)), RC.CURVE_P1);
    fails(tpm, testParms(ecc(NULL_SYM, w(ALG.ECDSA, ALG.SHA256), ECC_CURVE.BN_P256)), RC.CURVE_P1);
  });

  test('TestParms rejects an unknown object type with TPM_RC_TYPE + P1 (0x1CA)', () => {
    const tpm = startedEngine();
    fails(tpm, testParms(w(0x0099, 0, 0)), RC.TYPE_P1);
    fails(tpm, testParms(w(ALG.SHA256, 0, 0)), RC.TYPE_P1);
  });

  test('TestParms rejects an unimplemented symmetric algorithm with TPM_RC_SYMMETRIC + P1 (0x1D6)', () => {
    const tpm = startedEngine();
    fails(tpm, testParms(rsa(w(ALG.SM4, 128, ALG.CFB), w(ALG.NULL), 2048)), RC.SYMMETRIC_P1);
    fails(tpm, testParms(Buffer.concat([w(ALG.SYMCIPHER), NULL_SYM])), RC.SYMMETRIC_P1);
  });

  test('TestParms rejects an AES key size of 512 bits with TPM_RC_VALUE + P1 (0x1C4)', () => {
    fails(startedEngine(), testParms(rsa(w(ALG.AES, 512, ALG.CFB), w(ALG.NULL), 2048)), RC.VALUE_P1);
  });

  test('TestParms rejects an unimplemented block-cipher mode with TPM_RC_MODE + P1 (0x1C9)', () => {
    fails(startedEngine(), testParms(rsa(w(ALG.AES, 128, 0x003f), w(ALG.NULL), 2048)), RC.MODE_P1);
  });

  test('TestParms rejects an unimplemented ECC scheme (ECDAA) with TPM_RC_SCHEME + P1 (0x1D2)', () => {
    fails(startedEngine(), testParms(ecc(NULL_SYM, w(ALG.ECDAA, ALG.SHA256, 1), ECC_CURVE.NIST_P256)), RC.SCHEME_P1);
  });

  test('TestParms rejects an unimplemented KDF with TPM_RC_KDF + P1 (0x1CC)', () => {
    fails(startedEngine(), testParms(ecc(NULL_SYM, w(ALG.ECDSA, ALG.SHA256), ECC_CURVE.NIST_P256, w(0x0029, ALG.SHA256))), RC.KDF_P1);
  });

  test('TestParms rejects a signing scheme without a hash with TPM_RC_HASH + P1 (0x1C3)', () => {
    fails(startedEngine(), testParms(rsa(NULL_SYM, w(ALG.RSASSA, ALG.NULL), 2048)), RC.HASH_P1);
  });

  test('TestParms with parameters cut short returns TPM_RC_INSUFFICIENT + P1 (0x1DA)', () => {
    fails(startedEngine(), testParms(rsa(NULL_SYM, w(ALG.NULL), 2048).subarray(0, 9)), RC.INSUFFICIENT_P1);
  });

  test('TestParms with octets after the parameters returns TPM_RC_SIZE (0x095)', () => {
    fails(startedEngine(), testParms(Buffer.concat([rsa(NULL_SYM, w(ALG.NULL), 2048), Buffer.from([0])])), RC.SIZE);
  });
});
