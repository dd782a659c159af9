import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CRB_INT, CRB_INTF_ID_VALUE, CRB_REG, CTRL_REQ, CTRL_STS, LOC_CTRL, LOC_STATE, LOC_STS } from '../../src/hypervisor/crb.ts';
import { Hypervisor } from '../../src/hypervisor/hypervisor.ts';
import { GatedDevice, readBuffer, ready, settle, start, tagOf, taggedCommand, writeCommand } from './helpers.ts';

async function oneGuest(device = new GatedDevice()) {
  const hv = await Hypervisor.start();
  await hv.createPartition('vm', { device });
  await hv.startPartition('vm');
  const g = hv.guest('vm').channel(0);
  const crb = { read: (o: number) => g.mmioRead(o), write: (o: number, v: number) => g.mmioWrite(o, v) };
  return { hv, device, crb, partition: hv.partition('vm') };
}

const W = (loc: number, reg: number) => loc * 0x1000 + reg;

describe('CRB identity and reset state', () => {
  test('INTF_ID reports an active CRB interface with five localities and 64-byte transfers', async () => {
    const { crb } = await oneGuest();
    const id = crb.read(CRB_REG.INTF_ID);
    assert.equal(id, CRB_INTF_ID_VALUE);
    assert.equal(id & 0xf, 1, 'InterfaceType: CRB active');
    assert.equal((id >> 4) & 0xf, 1, 'InterfaceVersion: CRB');
    assert.equal((id >> 8) & 1, 1, 'CapLocality: five localities');
    assert.equal((id >> 11) & 3, 3, 'CapDataXferSizeSupport: 64 bytes');
    assert.equal((id >> 14) & 1, 1, 'CapCRB');
    assert.equal((id >> 17) & 3, 1, 'InterfaceSelector: CRB');
  });

  test('after reset no locality is assigned, the registers are valid and the TPM is idle', async () => {
    const { crb } = await oneGuest();
    const state = crb.read(CRB_REG.LOC_STATE);
    assert.equal(state & LOC_STATE.locAssigned, 0);
    assert.equal(state & LOC_STATE.tpmRegValidSts, LOC_STATE.tpmRegValidSts);
    assert.equal(state & LOC_STATE.tpmEstablished, LOC_STATE.tpmEstablished, 'established flag clear reads 1');
    assert.equal(crb.read(CRB_REG.LOC_STS), 0);
    assert.equal(crb.read(CRB_REG.CMD_SIZE), 0x1000 - 0x80);
    assert.equal(crb.read(CRB_REG.CMD_LADDR), 0xfed40080);
    assert.equal(crb.read(W(2, CRB_REG.RSP_LADDR)), 0xfed42080, 'each window reports its own alias of the buffer');
  });
});

describe('CRB localities', () => {
  test('requestAccess grants a free locality and relinquish releases it', async () => {
    const { crb } = await oneGuest();
    crb.write(W(2, CRB_REG.LOC_CTRL), LOC_CTRL.requestAccess);
    const state = crb.read(CRB_REG.LOC_STATE);
    assert.equal(state & LOC_STATE.locAssigned, LOC_STATE.locAssigned);
    assert.equal((state & LOC_STATE.activeLocalityMask) >> LOC_STATE.activeLocalityShift, 2);
    assert.equal(crb.read(W(2, CRB_REG.LOC_STS)) & LOC_STS.granted, LOC_STS.granted);
    assert.equal(crb.read(W(0, CRB_REG.LOC_STS)) & LOC_STS.granted, 0);
    crb.write(W(2, CRB_REG.LOC_CTRL), LOC_CTRL.relinquish);
    assert.equal(crb.read(CRB_REG.LOC_STATE) & LOC_STATE.locAssigned, 0);
  });

  test('a request while another locality is active waits and is granted when that locality relinquishes', async () => {
    const { crb } = await oneGuest();
    crb.write(W(0, CRB_REG.LOC_CTRL), LOC_CTRL.requestAccess);
    crb.write(W(1, CRB_REG.LOC_CTRL), LOC_CTRL.requestAccess);
    assert.equal(crb.read(W(1, CRB_REG.LOC_STS)) & LOC_STS.granted, 0);
    crb.write(W(0, CRB_REG.LOC_CTRL), LOC_CTRL.relinquish);
    assert.equal(crb.read(W(1, CRB_REG.LOC_STS)) & LOC_STS.granted, LOC_STS.granted);
  });

  test('a higher locality seizes a lower one, which then reads beenSeized until it relinquishes', async () => {
    const { crb, partition } = await oneGuest();
    crb.write(W(0, CRB_REG.LOC_CTRL), LOC_CTRL.requestAccess);
    crb.write(W(3, CRB_REG.LOC_CTRL), LOC_CTRL.seize);
    assert.equal(crb.read(W(3, CRB_REG.LOC_STS)) & LOC_STS.granted, LOC_STS.granted);
    assert.equal(crb.read(W(0, CRB_REG.LOC_STS)), LOC_STS.beenSeized);
    crb.write(W(1, CRB_REG.LOC_CTRL), LOC_CTRL.seize);
    assert.equal(crb.read(W(3, CRB_REG.LOC_STS)) & LOC_STS.granted, LOC_STS.granted, 'a lower locality cannot seize');
    assert.equal(partition.crbs[0]!.violations.get('seize-refused'), 1);
    crb.write(W(0, CRB_REG.LOC_CTRL), LOC_CTRL.relinquish);
    assert.equal(crb.read(W(0, CRB_REG.LOC_STS)), 0);
  });

  test('a seize drops the seized locality’s command and never shows its response to the seizer', async () => {
    const { crb, device } = await oneGuest();
    ready(crb, 0);
    writeCommand(crb, 0, taggedCommand(7));
    start(crb, 0);
    await settle();
    assert.equal(device.started.length, 1);
    crb.write(W(4, CRB_REG.LOC_CTRL), LOC_CTRL.seize);
    device.releaseNext();
    await settle();
    assert.deepEqual([...readBuffer(crb, 4, 14)], new Array(14).fill(0));
    assert.equal(crb.read(W(4, CRB_REG.CTRL_START)), 0);
    assert.equal(crb.read(W(4, CRB_REG.CTRL_STS)) & CTRL_STS.tpmIdle, CTRL_STS.tpmIdle);
  });

  test('only localities 3 and 4 may reset the established flag', async () => {
    const device = new GatedDevice();
    device.established = true;
    const { crb, partition } = await oneGuest(device);
    assert.equal(crb.read(CRB_REG.LOC_STATE) & LOC_STATE.tpmEstablished, 0);
    crb.write(W(0, CRB_REG.LOC_CTRL), LOC_CTRL.resetEstablishment);
    assert.equal(device.established, true);
    assert.equal(partition.crbs[0]!.violations.get('reset-establishment-refused'), 1);
    crb.write(W(3, CRB_REG.LOC_CTRL), LOC_CTRL.resetEstablishment);
    assert.equal(device.established, false);
    assert.equal(crb.read(CRB_REG.LOC_STATE) & LOC_STATE.tpmEstablished, LOC_STATE.tpmEstablished);
  });

  test('control registers and the buffer of a locality that is not active float and ignore writes', async () => {
    const { crb, device, partition } = await oneGuest();
    ready(crb, 0);
    writeCommand(crb, 0, taggedCommand(1));
    assert.equal(crb.read(W(1, CRB_REG.CTRL_STS)), 0xffffffff);
    assert.equal(crb.read(W(1, CRB_REG.DATA_BUFFER)), 0xffffffff);
    start(crb, 1);
    await settle();
    assert.equal(device.started.length, 0, 'START from the wrong locality does not reach the vTPM');
    assert.ok(partition.crbs[0]!.violations.get('inactive-locality')! >= 3);
    assert.equal(crb.read(W(0, CRB_REG.CTRL_START)), 0);
  });

  test('unaligned and out-of-window accesses read all ones and change nothing', async () => {
    const { crb, partition } = await oneGuest();
    assert.equal(crb.read(2), 0xffffffff);
    assert.equal(crb.read(5 * 0x1000), 0xffffffff);
    crb.write(W(0, CRB_REG.LOC_CTRL) + 1, LOC_CTRL.requestAccess);
    assert.equal(crb.read(CRB_REG.LOC_STATE) & LOC_STATE.locAssigned, 0);
    assert.equal(partition.crbs[0]!.violations.get('bad-access'), 3);
  });
});

describe('CRB command flow', () => {
  test('cmdReady leaves idle; goIdle returns to it', async () => {
    const { crb } = await oneGuest();
    crb.write(CRB_REG.LOC_CTRL, LOC_CTRL.requestAccess);
    assert.equal(crb.read(CRB_REG.CTRL_STS), CTRL_STS.tpmIdle);
    crb.write(CRB_REG.CTRL_REQ, CTRL_REQ.cmdReady);
    assert.equal(crb.read(CRB_REG.CTRL_REQ), 0);
    assert.equal(crb.read(CRB_REG.CTRL_STS), 0);
    crb.write(CRB_REG.CTRL_REQ, CTRL_REQ.goIdle);
    assert.equal(crb.read(CRB_REG.CTRL_STS), CTRL_STS.tpmIdle);
  });

  test('START reads 1 until the response is in the buffer, then 0 with the start interrupt pending', async () => {
    const { crb, device } = await oneGuest();
    ready(crb, 0);
    crb.write(CRB_REG.INT_ENABLE, CRB_INT.globalEnable | CRB_INT.start);
    crb.write(CRB_REG.INT_STS, 0xf);
    writeCommand(crb, 0, taggedCommand(0xabcd));
    start(crb, 0);
    await settle();
    assert.equal(crb.read(CRB_REG.CTRL_START), 1);
    assert.equal(device.started.length, 1);
    assert.equal(device.started[0]!.locality, 0);
    device.releaseNext();
    await settle();
    assert.equal(crb.read(CRB_REG.CTRL_START), 0);
    assert.equal(crb.read(CRB_REG.INT_STS) & CRB_INT.start, CRB_INT.start);
    assert.equal(tagOf(readBuffer(crb, 0, 14)), 0xabcd);
  });

  test('START while a command is outstanding is ignored', async () => {
    const { crb, device, partition } = await oneGuest();
    ready(crb, 0);
    writeCommand(crb, 0, taggedCommand(1));
    start(crb, 0);
    writeCommand(crb, 0, taggedCommand(2));
    start(crb, 0);
    await settle();
    assert.equal(device.started.length, 1);
    assert.equal(tagOf(device.started[0]!.command), 1);
    assert.equal(partition.crbs[0]!.violations.get('start-while-busy'), 1);
  });

  test('START without cmdReady is ignored', async () => {
    const { crb, device, partition } = await oneGuest();
    crb.write(CRB_REG.LOC_CTRL, LOC_CTRL.requestAccess);
    writeCommand(crb, 0, taggedCommand(1));
    start(crb, 0);
    await settle();
    assert.equal(device.started.length, 0);
    assert.equal(crb.read(CRB_REG.CTRL_START), 0);
    assert.equal(partition.crbs[0]!.violations.get('start-while-idle'), 1);
  });

  test('a header size beyond CMD_SIZE (or below 10) is answered TPM_RC_COMMAND_SIZE without reaching the vTPM', async () => {
    const { crb, device } = await oneGuest();
    ready(crb, 0);
    for (const size of [0x1000, 4]) {
      const cmd = Buffer.from(taggedCommand(1));
      cmd.writeUInt32BE(size, 2);
      writeCommand(crb, 0, cmd);
      start(crb, 0);
      assert.equal(crb.read(CRB_REG.CTRL_START), 0);
      const rsp = readBuffer(crb, 0, 10);
      assert.equal(rsp.readUInt32BE(2), 10);
      assert.equal(rsp.readUInt32BE(6), 0x142);
    }
    await settle();
    assert.equal(device.started.length, 0);
  });

  test('the guest driver refuses a command larger than the buffer before touching START', async () => {
    const { hv, device } = await oneGuest();
    const big = Buffer.alloc(4000);
    big.writeUInt16BE(0x8001, 0);
    big.writeUInt32BE(4000, 2);
    await assert.rejects(hv.guest('vm').transmit(big), { name: 'GuestError', code: 'command-too-large' });
    assert.equal(device.started.length, 0);
    assert.equal(hv.guest('vm').mmioRead(CRB_REG.LOC_STATE) & LOC_STATE.locAssigned, 0, 'the driver relinquished');
  });

  test('CANCEL of a queued command answers TPM_RC_CANCELED; a command the vTPM has runs to completion', async () => {
    const device = new GatedDevice();
    const hv = await Hypervisor.start({ scheduler: { maxInFlight: 1 } });
    await hv.createPartition('busy', { device: new GatedDevice('busy') });
    await hv.startPartition('busy');
    await hv.createPartition('vm', { device });
    await hv.startPartition('vm');
    // The only in-flight slot is taken by another partition, so vm's command stays queued.
    const hog = hv.guest('busy').transmit(taggedCommand(9));
    await settle();
    const g = hv.guest('vm').channel(0);
    const crb = { read: (o: number) => g.mmioRead(o), write: (o: number, v: number) => g.mmioWrite(o, v) };
    ready(crb, 0);
    writeCommand(crb, 0, taggedCommand(1));
    start(crb, 0);
    await settle();
    assert.equal(crb.read(CRB_REG.CTRL_START), 1);
    crb.write(CRB_REG.CTRL_CANCEL, 1);
    assert.equal(crb.read(CRB_REG.CTRL_START), 0);
    assert.equal(readBuffer(crb, 0, 10).readUInt32BE(6), 0x909);
    crb.write(CRB_REG.CTRL_CANCEL, 0);
    (hv.partition('busy').device as GatedDevice).releaseNext();
    await hog;

    crb.write(CRB_REG.CTRL_REQ, CTRL_REQ.cmdReady);
    writeCommand(crb, 0, taggedCommand(2));
    start(crb, 0);
    await settle();
    assert.equal(device.started.length, 1);
    crb.write(CRB_REG.CTRL_CANCEL, 1);
    assert.equal(crb.read(CRB_REG.CTRL_START), 1, 'a running command is not cut short');
    device.releaseNext();
    await settle();
    assert.equal(crb.read(CRB_REG.CTRL_START), 0);
    assert.equal(tagOf(readBuffer(crb, 0, 14)), 2);
  });

  test('a host-level fault of the vTPM sets tpmSts and the driver reports a device error', async () => {
    const { hv, device, crb } = await oneGuest();
    const sent = hv.guest('vm').transmit(taggedCommand(1));
    await settle();
    device.started[0]!.fail(new Error('disk gone'));
    await assert.rejects(sent, { name: 'GuestError', code: 'device-error' });
    crb.write(CRB_REG.LOC_CTRL, LOC_CTRL.requestAccess);
    assert.equal(crb.read(CRB_REG.CTRL_STS) & CTRL_STS.tpmSts, CTRL_STS.tpmSts);
  });
});
