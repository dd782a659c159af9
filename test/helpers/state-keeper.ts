/**
 * A persist function that keeps a vTPM model's state as a PSS would: whole images as given,
 * changes patched into the image they follow (checked against the model's whole image each time),
 * and the model's whole image when it hands a change to a state this keeper never got.
 */
import assert from 'node:assert/strict';
import { handedId, patchInPlace, type StateChange } from '../../src/tpm/state-delta.ts';
import type { Persist } from '../../src/vtpm/persisted-model.ts';

export interface StateKeeper {
  readonly persist: Persist;
  /** The state after every save, oldest first. */
  readonly saved: Buffer[];
  /** How many saves came as changes patched in. */
  readonly changes: () => number;
  last(): Buffer;
}

export function stateKeeper(): StateKeeper {
  const saved: Buffer[] = [];
  let held: Buffer | undefined;
  let handed: object | undefined;
  let changes = 0;
  const persist = async (s: Buffer | StateChange) => {
    if (Buffer.isBuffer(s)) held = Buffer.from(s);
    else if (held && handed === s.after) {
      assert.ok(patchInPlace(held, s.delta), 'the change does not fit the state it follows');
      assert.ok(held.equals(s.image()), 'the change does not give the model its state');
      changes++;
    } else held = Buffer.from(s.image());
    handed = handedId(s);
    saved.push(Buffer.from(held));
  };
  return { persist, saved, changes: () => changes, last: () => saved[saved.length - 1]! };
}
