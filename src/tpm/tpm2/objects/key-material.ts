import { ALG } from '../constants.ts';
import { digest, digestSize } from '../../crypto/hash.ts';
import { curve, deriveEcc, generateEcc } from '../../crypto/ecc.ts';
import { DEFAULT_EXPONENT, type RsaKey } from '../../crypto/rsa.ts';
import type { SeededStream } from '../../crypto/drbg.ts';
import { OBJECT_ATTR as A, type Public, type Sensitive } from '../types/public.ts';

/**
 * Where an object's secrets come from: a seeded stream for primaries (the same seed and
 * template give the same key) or the RNG for ordinary objects.
 */
export type KeySource = ({ derive: SeededStream } | { random: (n: number) => Buffer }) & {
  /** An RSA key: drawn from `derive`'s stream where there is one, else fresh. */
  rsa: (bits: number, exponent: number) => RsaKey;
};

function bytesFrom(src: KeySource, n: number): Buffer {
  return 'derive' in src ? src.derive.next(n) : src.random(n);
}

/** Fills in the key material of a validated template: the sensitive area and the public unique field. */
export function makeKeyMaterial(template: Public, userAuth: Buffer, data: Buffer, src: KeySource): { pub: Public; sensitive: Sensitive } {
  const a = template.objectAttributes;
  const storage = (a & A.restricted) !== 0 && (a & A.decrypt) !== 0;
  const seedValue = storage ? bytesFrom(src, digestSize(template.nameAlg)) : Buffer.alloc(0);
  const p = template.parameters;
  switch (p.type) {
    case ALG.RSA: {
      const e = p.exponent || DEFAULT_EXPONENT;
      const k = src.rsa(p.keyBits, e);
      return { pub: { ...template, unique: { rsa: k.n } }, sensitive: { sensitiveType: ALG.RSA, authValue: userAuth, seedValue, sensitive: k.p } };
    }
    case ALG.ECC: {
      const c = curve(p.curveID);
      const k = 'derive' in src ? deriveEcc(c, src.derive) : generateEcc(c, src.random);
      return { pub: { ...template, unique: { ecc: { x: k.x, y: k.y } } }, sensitive: { sensitiveType: ALG.ECC, authValue: userAuth, seedValue, sensitive: k.d } };
    }
    case ALG.KEYEDHASH: {
      const key = (a & A.sensitiveDataOrigin) !== 0 ? bytesFrom(src, digestSize(p.scheme.hashAlg === ALG.NULL ? template.nameAlg : p.scheme.hashAlg)) : data;
      // The obfuscation value keeps unique from revealing low-entropy sealed data.
      const obfuscate = bytesFrom(src, digestSize(template.nameAlg));
      return {
        pub: { ...template, unique: { digest: digest(template.nameAlg, obfuscate, key) } },
        sensitive: { sensitiveType: ALG.KEYEDHASH, authValue: userAuth, seedValue: obfuscate, sensitive: key },
      };
    }
    case ALG.SYMCIPHER: {
      const key = (a & A.sensitiveDataOrigin) !== 0 ? bytesFrom(src, p.sym.keyBits / 8) : data;
      const obfuscate = bytesFrom(src, digestSize(template.nameAlg));
      return {
        pub: { ...template, unique: { digest: digest(template.nameAlg, obfuscate, key) } },
        sensitive: { sensitiveType: ALG.SYMCIPHER, authValue: userAuth, seedValue: obfuscate, sensitive: key },
      };
    }
  }
}
