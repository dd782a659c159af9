/** Strips trailing zeros, as the TPM does with every authValue before using it. */
export function trimAuth(a: Buffer): Buffer {
  let n = a.length;
  while (n > 0 && a[n - 1] === 0) n--;
  return n === a.length ? a : a.subarray(0, n);
}
