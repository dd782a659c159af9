import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CRB_REG, CTRL_REQ, CTRL_STS, LOC_CTRL } from '../../src/hypervisor/crb.ts';
import { Hypervisor } from '../../src/hypervisor/hypervisor.ts';
import { GatedDevice, settle, tagOf, taggedCommand } from './helpers.ts';

describe('partition queues', () => {
  test('a partition’s commands are served and answered in the order its guest started them', async () => {
    const device = new GatedDevice();
    const hv = await Hypervisor.start();
    await hv.createPartition('vm', { device }, 'destroy', { channels: 4 });
    await hv.startPartition('vm');
    const answers: number[] = [];
    const sent = [1, 2, 3, 4].map((t) => hv.guest('vm').transmit(taggedCommand(t)).then((r) => answers.push(tagOf(r))));
    await settle();
    assert.equal(device.started.length, 1, 'one command of a partition at its vTPM at a time');
    for (let i = 0; i < 4; i++) {
      device.releaseNext();
      await settle();
    }
    await Promise.all(sent);
    assert.deepEqual(device.started.map((s) => tagOf(s.command)), [1, 2, 3, 4]);
    assert.deepEqual(answers, [1, 2, 3, 4]);
  });

  test('with the input queue full, cmdReady stays pending (device busy) until the vTPM takes a command', async () => {
    const device = new GatedDevice();
    const hv = await Hypervisor.start();
    await hv.createPartition('vm', { device }, 'destroy', { channels: 4, queueDepth: 2 });
    await hv.startPartition('vm');
    const g = hv.guest('vm');
    // One command at the vTPM, two filling the queue.
    const sent = [1, 2, 3].map((t) => g.channel(t - 1).transmit(taggedCommand(t)));
    await settle();
    assert.equal(hv.partition('vm').input.length, 2);
    const ch = g.channel(3);
    const backpressured = hv.partition('vm').counters.backpressured;
    ch.mmioWrite(CRB_REG.LOC_CTRL, LOC_CTRL.requestAccess);
    ch.mmioWrite(CRB_REG.CTRL_REQ, CTRL_REQ.cmdReady);
    assert.equal(ch.mmioRead(CRB_REG.CTRL_REQ) & CTRL_REQ.cmdReady, CTRL_REQ.cmdReady);
    assert.equal(ch.mmioRead(CRB_REG.CTRL_STS) & CTRL_STS.tpmIdle, CTRL_STS.tpmIdle);
    assert.equal(hv.partition('vm').counters.backpressured, backpressured + 1);
    device.releaseNext();
    await settle();
    assert.equal(ch.mmioRead(CRB_REG.CTRL_REQ) & CTRL_REQ.cmdReady, 0, 'a place freed: the device is ready');
    assert.equal(ch.mmioRead(CRB_REG.CTRL_STS) & CTRL_STS.tpmIdle, 0);
    while (device.started.some((s) => !(s as { done?: boolean }).done)) {
      device.releaseNext();
      await settle();
    }
    assert.deepEqual((await Promise.all(sent)).map(tagOf), [1, 2, 3]);
  });

  test('a guest transmitting through a full queue waits and loses nothing', async () => {
    const device = new GatedDevice();
    const hv = await Hypervisor.start();
    await hv.createPartition('vm', { device }, 'destroy', { channels: 6, queueDepth: 2 });
    await hv.startPartition('vm');
    const sent = [1, 2, 3, 4, 5, 6].map((t) => hv.guest('vm').transmit(taggedCommand(t)));
    for (let released = 0; released < 6; released++) {
      await settle();
      assert.ok(hv.partition('vm').occupancy <= 2, 'the queue never holds more than its depth');
      device.releaseNext();
    }
    assert.deepEqual((await Promise.all(sent)).map(tagOf), [1, 2, 3, 4, 5, 6]);
  });
});

describe('scheduler', () => {
  test('a partition flooding its queue does not starve another: round-robin serves the other next', async () => {
    const order: string[] = [];
    const hv = await Hypervisor.start({ scheduler: { maxInFlight: 1, onDispatch: (p) => order.push(p.name) } });
    const flood = new GatedDevice('flood');
    const quiet = new GatedDevice('quiet');
    await hv.createPartition('flood', { device: flood }, 'destroy', { channels: 8, queueDepth: 8 });
    await hv.createPartition('quiet', { device: quiet });
    await hv.startPartition('flood');
    await hv.startPartition('quiet');
    const flooding = Array.from({ length: 8 }, (_, i) => hv.guest('flood').transmit(taggedCommand(i)));
    await settle();
    assert.equal(hv.partition('flood').input.length, 7, 'the flooder has a full queue behind its running command');
    const q1 = hv.guest('quiet').transmit(taggedCommand(100));
    const q2 = (async () => {
      await q1;
      return hv.guest('quiet').transmit(taggedCommand(101));
    })();
    await settle();
    flood.releaseNext(); // the flooder's first command finishes; the quiet guest is next in turn
    await settle();
    assert.deepEqual(order, ['flood', 'quiet']);
    quiet.releaseNext();
    await q1;
    await settle();
    // The quiet guest's second command waits at most one flooder turn.
    flood.releaseNext();
    await settle();
    assert.deepEqual(order, ['flood', 'quiet', 'flood', 'quiet']);
    quiet.releaseNext();
    assert.equal(tagOf(await q2), 101);
    while (order.filter((n) => n === 'flood').length < 8 || flood.started.some((s) => !(s as { done?: boolean }).done)) {
      if (flood.started.some((s) => !(s as { done?: boolean }).done)) flood.releaseNext();
      await settle();
    }
    assert.equal((await Promise.all(flooding)).length, 8);
  });

  test('different partitions’ vTPMs run concurrently up to the in-flight cap', async () => {
    const hv = await Hypervisor.start({ scheduler: { maxInFlight: 3 } });
    const devices = Array.from({ length: 5 }, (_, i) => new GatedDevice(`d${i}`));
    for (const [i, device] of devices.entries()) {
      await hv.createPartition(`vm${i}`, { device });
      await hv.startPartition(`vm${i}`);
    }
    const sent = devices.map((_, i) => hv.guest(`vm${i}`).transmit(taggedCommand(i)));
    await settle();
    assert.equal(hv.scheduler.inFlight, 3);
    assert.equal(devices.filter((d) => d.started.length === 1).length, 3);
    for (const d of devices.slice(0, 3)) d.releaseNext();
    await settle();
    assert.equal(devices.filter((d) => d.started.length === 1).length, 5);
    for (const d of devices.slice(3)) d.releaseNext();
    assert.deepEqual((await Promise.all(sent)).map(tagOf), [0, 1, 2, 3, 4]);
  });

  test('a busy TPM partition gives the event loop a turn every yieldEvery dispatches', async () => {
    const { Tpm2Device } = await import('../../src/tpm/tpm2/device.ts');
    const { Tpm2Engine } = await import('../../src/tpm/tpm2/engine.ts');
    const hv = await Hypervisor.start({ scheduler: { yieldEvery: 16 } });
    await hv.createPartition('vm', { device: new Tpm2Device(new Tpm2Engine()) });
    await hv.startPartition('vm');
    let ticks = 0;
    let stop = false;
    const ticker = (async () => {
      while (!stop) {
        await new Promise((r) => setImmediate(r));
        ticks++;
      }
    })();
    const getRandom = Buffer.from('80010000000c0000017b0008', 'hex');
    for (let i = 0; i < 160; i++) await hv.guest('vm').transmit(getRandom);
    stop = true;
    await ticker;
    assert.equal(hv.scheduler.dispatched, 160);
    assert.ok(hv.scheduler.yields >= 160 / 16 - 1, `yielded ${hv.scheduler.yields} times`);
    assert.ok(ticks >= hv.scheduler.yields - 1, 'other event-loop work ran between the batches');
  });
});
