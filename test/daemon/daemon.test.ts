import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import pino from 'pino';
import { startDaemon } from '../../src/daemon/daemon.ts';
import { Tpm2Client } from '../../src/hwtpm/tpm2-client.ts';
import { ALG } from '../../src/tpm/tpm2/constants.ts';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
const logger = pino({ level: 'silent' });

describe('the daemon and its hypervisor', () => {
  test("a VM's guest reaches its vTPM through the CRB and queues, and keeps its PCRs across a daemon restart", async () => {
    const stateDir = mkdtempSync(join(tmpdir(), 'vtpmd-daemon-'));
    dirs.push(stateDir);
    const api = { type: 'unix' as const, path: join(stateDir, 'vtpmd.sock') };
    let daemon = await startDaemon({ stateDir, api, logger, hostId: 'hv-lab', idleUnloadMs: 0 });
    const vm = await daemon.service.create({ name: 'guest1' });
    assert.equal(vm.state, 'running');
    const partition = daemon.service.hypervisor.list().find((p) => p.name === 'guest1');
    assert.ok(partition && partition.id > 0, 'the VM has its own partition beside the reserved TPM partition');
    const viaCrb = new Tpm2Client((c) => daemon.service.hypervisor.guest('guest1').transmit(c));
    await viaCrb.pcrExtend(16, [{ hashAlg: ALG.SHA256, digest: Buffer.alloc(32, 5) }]);
    const value = (await viaCrb.pcrRead(ALG.SHA256, [16]))[0]!;
    const direct = new Tpm2Client(async (c) => (await daemon.service.host.manager.device('guest1')).execute(c, 0));
    assert.deepEqual((await direct.pcrRead(ALG.SHA256, [16]))[0], value, 'the endpoint and the CRB reach the same vTPM');
    await daemon.stop();

    daemon = await startDaemon({ stateDir, api, logger, hostId: 'hv-lab', idleUnloadMs: 0 });
    const again = new Tpm2Client((c) => daemon.service.hypervisor.guest('guest1').transmit(c));
    assert.deepEqual((await again.pcrRead(ALG.SHA256, [16]))[0], value, 'no reset across the restart');
    await daemon.service.stop('guest1');
    assert.equal(daemon.service.hypervisor.list().find((p) => p.name === 'guest1')?.state, 'terminated');
    await daemon.stop();
  });
});
