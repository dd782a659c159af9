import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { dmiPlatformIdentity, labPlatformIdentity, NOT_REPORTED } from '../../src/hwtpm/platform-identity.ts';

test("a real host's identity is its SMBIOS fields, and a field it does not report says so", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vtpmd-dmi-'));
  try {
    writeFileSync(join(dir, 'sys_vendor'), 'Acme Servers Inc.\n');
    writeFileSync(join(dir, 'product_name'), '  R740 \n');
    writeFileSync(join(dir, 'product_version'), '\n');
    assert.deepEqual(await dmiPlatformIdentity(dir), { manufacturer: 'Acme Servers Inc.', model: 'R740', version: NOT_REPORTED, serial: NOT_REPORTED });
    assert.deepEqual(await dmiPlatformIdentity(join(dir, 'absent')), { manufacturer: NOT_REPORTED, model: NOT_REPORTED, version: NOT_REPORTED, serial: NOT_REPORTED });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a lab host's identity is its simulated boot chain's, the same for the same host and another for another", () => {
  const a = labPlatformIdentity('lab-a');
  assert.deepEqual(labPlatformIdentity('lab-a'), a);
  assert.equal(a.model, 'vtpmd lab host');
  assert.match(a.version, /^Xen 4\.\d+\.\d$/);
  assert.notEqual(labPlatformIdentity('lab-b').serial, a.serial);
});
