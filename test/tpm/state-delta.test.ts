/** NVM deltas: they rebuild exactly the image they were made from, and bad ones are refused, never thrown. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { applyDelta, encodeDelta } from '../../src/tpm/state-delta.ts';

describe('NVM deltas', () => {
  test('applying a delta to the image it was made against gives the new image', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 3000 }), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 40 }), (bytes, edits) => {
        const before = Buffer.from(bytes);
        const after = Buffer.from(bytes);
        for (const [at, v] of edits) after[at % after.length] = v;
        const delta = encodeDelta(before, after, Number.POSITIVE_INFINITY)!;
        assert.ok(delta);
        assert.deepEqual(applyDelta(before, delta), after);
      }),
    );
  });

  test('a PCR-sized change to a 13 KB image is a few dozen bytes; images of different lengths or mostly changed have none', () => {
    const before = Buffer.alloc(13000, 1);
    const after = Buffer.from(before);
    after.fill(7, 5000, 5032);
    after.writeUInt32BE(12, 6);
    assert.ok(encodeDelta(before, after)!.length <= 4 + 6 + 4 + 6 + 32);
    assert.equal(encodeDelta(before, Buffer.alloc(13001, 1)), undefined);
    assert.equal(encodeDelta(before, Buffer.alloc(13000, 2)), undefined);
  });

  test('a delta that does not fit its base is undefined, whatever its bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.uint8Array({ maxLength: 100 }), (base, delta) => {
        const out = applyDelta(base, delta);
        assert.ok(out === undefined || out.length === base.length);
      }),
    );
    const base = Buffer.alloc(10);
    const run = (offset: number, length: number, bytes = length) => {
      const d = Buffer.alloc(4 + 6 + bytes);
      d.writeUInt32BE(10, 0);
      d.writeUInt32BE(offset, 4);
      d.writeUInt16BE(length, 8);
      return d;
    };
    assert.equal(applyDelta(base, run(8, 4)), undefined, 'past the end of the image');
    assert.equal(applyDelta(base, run(0, 4, 2)), undefined, 'shorter than its length');
    assert.equal(applyDelta(base, run(0, 0)), undefined, 'an empty run');
    assert.equal(applyDelta(Buffer.alloc(11), run(0, 1)), undefined, 'made for an image of another length');
    assert.deepEqual(applyDelta(base, run(2, 3)), base);
  });
});
