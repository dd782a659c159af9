/**
 * EncryptDecrypt and EncryptDecrypt2 (Part 3, 15.2 and 15.3) with SYMCIPHER keys: every mode,
 * IV in and out, and the attribute, mode and size checks with their numbered response codes. The
 * expected outputs come from a block-by-block model of each mode over AES-ECB (node:crypto).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHash } from 'node:crypto';
import { ALG, CC } from '../../src/tpm/tpm2/constants.ts';
import type { Tpm2Engine } from '../../src/tpm/tpm2/engine.ts';
import { OBJECT_ATTR as A } from '../../src/tpm/tpm2/types/public.ts';
import { buildCommand, params, pw, responseParams, tpm2b, u16b } from '../helpers/tpm2-commands.ts';
import { fails, ok, startedEngine } from '../helpers/tpm2-engine.ts';
import { maxBuffer } from '../../src/tpm/tpm2/types/basic.ts';
import { ivBuf } from '../../src/tpm/tpm2/types/secret.ts';
import { aesKey, createLoaded, createPrimary, eccStorage, flush, loadExternal, rsaDecryptKey, type Loaded } from '../helpers/tpm2-objects.ts';

const RC = {
  ATTRIBUTES_H1: 0x182,
  KEY_H1: 0x19c,
  SIZE_P1: 0x1d5,
  MODE_P2: 0x2c9,
  MODE_P3: 0x3c9,
  SIZE_P3: 0x3d5,
  SIZE_P4: 0x4d5,
  VALUE_P1: 0x1c4,
};

const MODE_NAMES: Record<number, string> = { [ALG.CFB]: 'CFB', [ALG.CBC]: 'CBC', [ALG.CTR]: 'CTR', [ALG.OFB]: 'OFB', [ALG.ECB]: 'ECB' };

/** The mode of operation computed block by block from the AES block function. */
function model(mode: number, key: Buffer, ivIn: Buffer, data: Buffer, decrypt: boolean): { out: Buffer; ivOut: Buffer } {
  const E = (block: Buffer) => {
    const c = createCipheriv(`aes-${key.length * 8}-ecb`, key, null);
    c.setAutoPadding(false);
    return Buffer.concat([c.update(block), c.final()]);
  };
  const D = (block: Buffer) => {
    const c = createDecipheriv(`aes-${key.length * 8}-ecb`, key, null);
    c.setAutoPadding(false);
    return Buffer.concat([c.update(block), c.final()]);
  };
  const out = Buffer.alloc(data.length);
  let iv = Buffer.from(ivIn);
  for (let off = 0; off < data.length; off += 16) {
    const chunk = data.subarray(off, off + 16);
    switch (mode) {
      case ALG.ECB:
        (decrypt ? D(chunk) : E(chunk)).copy(out, off);
        break;
      case ALG.CBC: {
        if (decrypt) {
          const p = D(chunk);
          for (let i = 0; i < 16; i++) out[off + i] = p[i]! ^ iv[i]!;
          iv = Buffer.from(chunk);
        } else {
          const x = Buffer.alloc(16);
          for (let i = 0; i < 16; i++) x[i] = chunk[i]! ^ iv[i]!;
          iv = E(x);
          iv.copy(out, off);
        }
        break;
      }
      case ALG.CFB: {
        const ks = E(iv);
        const next = Buffer.alloc(16);
        for (let i = 0; i < chunk.length; i++) {
          out[off + i] = chunk[i]! ^ ks[i]!;
          next[i] = decrypt ? chunk[i]! : out[off + i]!;
        }
        iv = next;
        break;
      }
      case ALG.OFB: {
        iv = E(iv);
        for (let i = 0; i < chunk.length; i++) out[off + i] = chunk[i]! ^ iv[i]!;
        break;
      }
      case ALG.CTR: {
        const ks = E(iv);
        for (let i = 0; i < chunk.length; i++) out[off + i] = chunk[i]! ^ ks[i]!;
        iv = Buffer.from(iv);
        for (let i = 15; i >= 0; i--) {
          iv[i] = (iv[i]! + 1) & 0xff;
          if (iv[i] !== 0) break;
        }
        break;
      }
    }
  }
  return { out, ivOut: iv };
}

const encryptDecrypt = (h: number, decrypt: boolean, mode: number, ivIn: Buffer, inData: Buffer) =>
  buildCommand({ cc: CC.EncryptDecrypt, handles: [h], sessions: [pw('')], params: params(Buffer.from([decrypt ? 1 : 0]), u16b(mode), tpm2b(ivIn), tpm2b(inData)) });
const encryptDecrypt2 = (h: number, decrypt: boolean, mode: number, ivIn: Buffer, inData: Buffer) =>
  buildCommand({ cc: CC.EncryptDecrypt2, handles: [h], sessions: [pw('')], params: params(tpm2b(inData), Buffer.from([decrypt ? 1 : 0]), u16b(mode), tpm2b(ivIn)) });

function run(tpm: Tpm2Engine, which: 1 | 2, h: number, decrypt: boolean, mode: number, ivIn: Buffer, inData: Buffer) {
  const cmd = which === 1 ? encryptDecrypt(h, decrypt, mode, ivIn, inData) : encryptDecrypt2(h, decrypt, mode, ivIn, inData);
  return responseParams(ok(tpm, cmd), { outData: maxBuffer, ivOut: ivBuf });
}

const KEY = createHash('sha256').update('vtpmd aes key').digest();

/**
 * A SYMCIPHER key whose key bits the test knows, loaded with LoadExternal (unique = H(obfuscation
 * || key), as the binding check wants).
 */
function keyed(tpm: Tpm2Engine, mode: number = ALG.NULL, attributes = A.decrypt | A.sign, keyBits = 128): Loaded {
  const template = aesKey(mode, attributes, keyBits, true);
  template.objectAttributes &= ~(A.fixedTPM | A.fixedParent);
  const key = KEY.subarray(0, keyBits / 8);
  const seedValue = Buffer.alloc(32, 0x6f);
  template.unique = { digest: createHash('sha256').update(seedValue).update(key).digest() };
  return loadExternal(tpm, template, { sensitiveType: ALG.SYMCIPHER, authValue: Buffer.alloc(0), seedValue, sensitive: Buffer.from(key) });
}

const IV = Buffer.from('000102030405060708090a0b0c0d0eff', 'hex');
const DATA = Buffer.from(Array.from({ length: 100 }, (_, i) => (i * 7) & 0xff));

describe('TPM2_EncryptDecrypt and TPM2_EncryptDecrypt2', () => {
  for (const mode of [ALG.CFB, ALG.CBC, ALG.CTR, ALG.OFB, ALG.ECB]) {
    const name = MODE_NAMES[mode]!;
    const whole = mode === ALG.CBC || mode === ALG.ECB;
    const data = whole ? DATA.subarray(0, 96) : DATA;
    const iv = mode === ALG.ECB ? Buffer.alloc(0) : IV;
    test(`${name}: output and ivOut match the mode computed block by block, both ways, with either command`, () => {
      const tpm = startedEngine();
      const k = keyed(tpm);
      for (const which of [1, 2] as const) {
        const enc = run(tpm, which, k.handle, false, mode, iv, data);
        const expected = model(mode, KEY.subarray(0, 16), iv, data, false);
        assert.deepEqual(enc.outData, expected.out, `EncryptDecrypt${which === 2 ? '2' : ''} ciphertext`);
        assert.deepEqual(enc.ivOut, mode === ALG.ECB ? Buffer.alloc(0) : expected.ivOut, 'ivOut');
        const dec = run(tpm, which, k.handle, true, mode, iv, enc.outData);
        assert.deepEqual(dec.outData, data);
        assert.deepEqual(dec.ivOut, mode === ALG.ECB ? Buffer.alloc(0) : model(mode, KEY.subarray(0, 16), iv, enc.outData, true).ivOut);
      }
    });

    if (mode !== ALG.ECB) {
      test(`${name}: encrypting in two calls chained by ivOut gives what one call gives`, () => {
        const tpm = startedEngine();
        const k = keyed(tpm, mode);
        const one = run(tpm, 2, k.handle, false, ALG.NULL, iv, data);
        const first = run(tpm, 2, k.handle, false, ALG.NULL, iv, data.subarray(0, 48));
        const second = run(tpm, 2, k.handle, false, ALG.NULL, first.ivOut, data.subarray(48));
        assert.deepEqual(Buffer.concat([first.outData, second.outData]), one.outData);
        assert.deepEqual(second.ivOut, one.ivOut);
      });
    }
  }

  test('CFB ending in a partial block: ivOut is that block of ciphertext, zero-filled', () => {
    const tpm = startedEngine();
    const k = keyed(tpm);
    const out = run(tpm, 2, k.handle, false, ALG.CFB, IV, DATA.subarray(0, 20));
    assert.deepEqual(out.ivOut, Buffer.concat([out.outData.subarray(16, 20), Buffer.alloc(12)]));
  });

  test('CTR: the 128-bit counter carries across bytes and wraps at 2^128', () => {
    const tpm = startedEngine();
    const k = keyed(tpm, ALG.CTR);
    for (const iv of [Buffer.from('000000000000000000000000fffffffe', 'hex'), Buffer.alloc(16, 0xff)]) {
      const out = run(tpm, 2, k.handle, false, ALG.NULL, iv, DATA.subarray(0, 40));
      const expected = model(ALG.CTR, KEY.subarray(0, 16), iv, DATA.subarray(0, 40), false);
      assert.deepEqual(out.outData, expected.out);
      assert.deepEqual(out.ivOut, expected.ivOut);
    }
  });

  test('AES-256 keys work; empty input gives empty output and ivOut = ivIn', () => {
    const tpm = startedEngine();
    const k = keyed(tpm, ALG.CTR, A.decrypt | A.sign, 256);
    const out = run(tpm, 1, k.handle, false, ALG.NULL, IV, DATA);
    assert.deepEqual(out.outData, model(ALG.CTR, KEY, IV, DATA, false).out);
    const empty = run(tpm, 1, k.handle, false, ALG.NULL, IV, Buffer.alloc(0));
    assert.deepEqual(empty.outData, Buffer.alloc(0));
    assert.deepEqual(empty.ivOut, IV);
  });

  test('a TPM-made key round-trips through encryption and decryption', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, eccStorage());
    const k = createLoaded(tpm, srk.handle, aesKey(ALG.CFB));
    const enc = run(tpm, 2, k.handle, false, ALG.NULL, IV, DATA);
    assert.notDeepEqual(enc.outData, DATA);
    assert.deepEqual(run(tpm, 2, k.handle, true, ALG.NULL, IV, enc.outData).outData, DATA);
  });

  test('decrypt needs the decrypt attribute and encrypt the sign attribute: TPM_RC_ATTRIBUTES + H1 (0x182)', () => {
    const tpm = startedEngine();
    const decOnly = keyed(tpm, ALG.CFB, A.decrypt);
    fails(tpm, encryptDecrypt(decOnly.handle, false, ALG.NULL, IV, DATA), RC.ATTRIBUTES_H1);
    run(tpm, 1, decOnly.handle, true, ALG.NULL, IV, DATA);
    flush(tpm, decOnly.handle);
    const encOnly = keyed(tpm, ALG.CFB, A.sign);
    fails(tpm, encryptDecrypt2(encOnly.handle, true, ALG.NULL, IV, DATA), RC.ATTRIBUTES_H1);
    run(tpm, 2, encOnly.handle, false, ALG.NULL, IV, DATA);
  });

  test('a restricted symmetric key is TPM_RC_ATTRIBUTES + H1; a key that is not SYMCIPHER TPM_RC_KEY + H1 (0x19C)', () => {
    const tpm = startedEngine();
    const srk = createPrimary(tpm, eccStorage());
    const restricted = createLoaded(tpm, srk.handle, aesKey(ALG.CFB, A.decrypt | A.restricted));
    fails(tpm, encryptDecrypt(restricted.handle, true, ALG.NULL, IV, DATA), RC.ATTRIBUTES_H1);
    flush(tpm, restricted.handle);
    const rsa = createLoaded(tpm, srk.handle, rsaDecryptKey());
    fails(tpm, encryptDecrypt(rsa.handle, true, ALG.CFB, IV, DATA), RC.KEY_H1);
    fails(tpm, encryptDecrypt2(rsa.handle, true, ALG.CFB, IV, DATA), RC.KEY_H1);
  });

  test('a mode other than the key mode, or NULL with a NULL-mode key, is TPM_RC_MODE + P2 / P3 (EncryptDecrypt2)', () => {
    const tpm = startedEngine();
    const cfb = keyed(tpm, ALG.CFB);
    fails(tpm, encryptDecrypt(cfb.handle, false, ALG.CBC, IV, DATA.subarray(0, 32)), RC.MODE_P2);
    fails(tpm, encryptDecrypt2(cfb.handle, false, ALG.CBC, IV, DATA.subarray(0, 32)), RC.MODE_P3);
    run(tpm, 1, cfb.handle, false, ALG.CFB, IV, DATA);
    flush(tpm, cfb.handle);
    const any = keyed(tpm);
    fails(tpm, encryptDecrypt(any.handle, false, ALG.NULL, IV, DATA), RC.MODE_P2);
    fails(tpm, encryptDecrypt2(any.handle, false, ALG.NULL, IV, DATA), RC.MODE_P3);
    // A value that is no cipher mode fails decoding with the same code.
    fails(tpm, encryptDecrypt(any.handle, false, ALG.AES, IV, DATA), RC.MODE_P2);
    fails(tpm, encryptDecrypt2(any.handle, false, ALG.SHA256, IV, DATA), RC.MODE_P3);
  });

  test('an IV that is not one block (or, for ECB, not empty) is TPM_RC_SIZE + P3 / P4 (EncryptDecrypt2)', () => {
    const tpm = startedEngine();
    const k = keyed(tpm);
    fails(tpm, encryptDecrypt(k.handle, false, ALG.CFB, IV.subarray(1), DATA), RC.SIZE_P3);
    fails(tpm, encryptDecrypt2(k.handle, false, ALG.CFB, Buffer.alloc(0), DATA), RC.SIZE_P4);
    fails(tpm, encryptDecrypt(k.handle, false, ALG.ECB, IV, DATA.subarray(0, 32)), RC.SIZE_P3);
    fails(tpm, encryptDecrypt2(k.handle, false, ALG.ECB, IV, DATA.subarray(0, 32)), RC.SIZE_P4);
    // More than a block does not even decode as a TPM2B_IV.
    fails(tpm, encryptDecrypt(k.handle, false, ALG.CFB, Buffer.alloc(17), DATA), RC.SIZE_P3);
  });

  test('CBC and ECB data that is not whole blocks is TPM_RC_SIZE + P4 / P1 (EncryptDecrypt2)', () => {
    const tpm = startedEngine();
    const k = keyed(tpm);
    fails(tpm, encryptDecrypt(k.handle, false, ALG.CBC, IV, DATA), RC.SIZE_P4);
    fails(tpm, encryptDecrypt2(k.handle, false, ALG.CBC, IV, DATA), RC.SIZE_P1);
    fails(tpm, encryptDecrypt2(k.handle, true, ALG.ECB, Buffer.alloc(0), DATA.subarray(0, 17)), RC.SIZE_P1);
  });

  test('decrypt values other than YES and NO are TPM_RC_VALUE + P1 for EncryptDecrypt', () => {
    const tpm = startedEngine();
    const k = keyed(tpm);
    const cmd = buildCommand({ cc: CC.EncryptDecrypt, handles: [k.handle], sessions: [pw('')], params: params(Buffer.from([2]), u16b(ALG.CFB), tpm2b(IV), tpm2b(DATA)) });
    fails(tpm, cmd, RC.VALUE_P1);
  });
});
