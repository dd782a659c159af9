import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import pino from 'pino';
import { FailureLog } from '../../src/transport/failure-log.ts';

function capture(): { logger: pino.Logger; lines: () => { msg: string; omitted?: number; err: { message: string } }[] } {
  const out: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, done) {
      out.push(String(chunk));
      done();
    },
  });
  return { logger: pino(stream), lines: () => out.join('').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) };
}

describe('failure log', () => {
  test('the same failure again is counted for a while, not logged; the next line says how many were left out', () => {
    const { logger, lines } = capture();
    let now = 1_000;
    const log = new FailureLog(logger, 10_000, () => now);
    const down = new Error('a PSS commit failed (the disk is full)');
    for (let i = 0; i < 500; i++) log.commandFailed(down);
    assert.equal(lines().length, 1, 'one line for 500 failures alike');
    now += 10_000;
    log.commandFailed(down);
    assert.equal(lines().length, 2, 'logged again once the quiet time is over');
    assert.equal(lines()[1]!.omitted, 499);
    log.commandFailed(new Error('another failure'));
    assert.equal(lines().length, 3, 'a different failure is logged at once');
    assert.equal(lines()[2]!.omitted, undefined);
    assert.equal(lines()[2]!.err.message, 'another failure');
    assert.match(lines()[0]!.msg, /failed at host level/);
  });
});
