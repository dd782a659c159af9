import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { bootLabHost } from '../../src/hwtpm/lab-host.ts';
import { decodeEventLog, replay } from '../../src/hwtpm/event-log.ts';
import { certificateOfStored } from '../../src/hwtpm/manufacture-tpm12.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { Tpm12Client } from '../../src/tpm/tpm12/client/index.ts';
import { NV_INDEX } from '../../src/tpm/tpm12/constants.ts';
import { ALG } from '../../src/tpm/tpm2/constants.ts';
import { tempDirs } from '../helpers/temp-dirs.ts';

const tempDir = tempDirs('vtpmd-labhost-');

describe('lab host boot', () => {
  test('a TPM 1.2 lab host: certified EK in TPM_NV_INDEX_EKCert and a SHA-1 event log that replays to the chip', async () => {
    const dir = tempDir();
    const host = await bootLabHost({ stateDir: dir, personality: 'tpm12', hostId: 'lab-1' });
    const tpm = new Tpm12Client((c) => host.chip.execute(c, 0));
    const stored = await tpm.nvReadValue(NV_INDEX.EKCert, 0, host.eks[0]!.certificate.length + 7, null);
    const der = certificateOfStored(stored);
    assert.ok(der, 'stored in the PC Client TCG_PCCLIENT_STORED_CERT form');
    const cert = new X509Certificate(der);
    assert.ok(cert.verify(new X509Certificate(readFileSync(host.caPath)).publicKey), 'signed by the manufacturer root');
    assert.ok(cert.publicKey.equals(host.eks[0]!.publicKey));
    const replayed = replay(decodeEventLog(readFileSync(host.eventLogPath))).get(ALG.SHA1)!;
    for (const pcr of [0, 4, 8, 9, 11, 12, 13]) assert.deepEqual(await tpm.pcrRead(pcr), replayed[pcr], `PCR ${pcr}`);
  });

  test('the same TPM 2.0 host boots to the same PCRs every time; another host differs', async () => {
    const dir = tempDir();
    const read = async (hostId: string, stateDir: string) => {
      const host = await bootLabHost({ stateDir, hostId });
      const values = await new Tpm2Client((c) => host.chip.execute(c, 0)).pcrRead(ALG.SHA256, [0, 1, 11]);
      await host.chip.flush();
      return values;
    };
    const first = await read('lab-1', dir);
    assert.deepEqual(await read('lab-1', dir), first);
    const other = await read('lab-2', tempDir());
    assert.notDeepEqual(other[1], first[1], 'the platform configuration differs per host');
    assert.deepEqual(other[2], first[2], 'the GVTPM code is the same');
  });
});
