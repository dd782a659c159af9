/**
 * The key and session manager's work on the chip for hardware-backed vTPMs. Many vTPMs' keys share
 * a chip with three object slots: a key is swapped in for one operation (ContextLoad of the
 * context saved last time, or Load of its blob under the hwSRK the first time) and swapped out
 * again (ContextSave, FlushContext) before the chip serves anyone else.
 */
import { createHash } from 'node:crypto';
import type { Chip } from '../hwtpm/chip.ts';
import { Tpm2Client, Tpm2CommandError } from '../hwtpm/tpm2-client.ts';
import { HANDLES } from '../hwtpm/tpm2-templates.ts';
import { CC, RH, ST } from '../tpm/tpm2/constants.ts';
import type { ExternalRequest } from '../tpm/tpm2/hardware-keys.ts';
import type { Public } from '../tpm/tpm2/types/public.ts';

export class HardwareKeyService {
  /** Saved chip contexts by key, least recently used first. */
  private readonly contexts = new Map<string, unknown>();

  constructor(
    private readonly chip: Chip,
    private readonly maxContexts = 4096,
  ) {}

  perform(request: ExternalRequest): Promise<unknown> {
    return this.chip.exclusive(async (exec) => {
      const tpm = new Tpm2Client(exec);
      if (request.kind === 'create') return tpm.create(HANDLES.SRK, request.template);
      const id = createHash('sha256').update(request.innerPrivate).digest('hex');
      const handle = await this.swapIn(tpm, id, request.innerPrivate, request.innerPublic);
      try {
        const r = await tpm.call(CC.Sign, [handle], [{}], {
          digest: request.digest,
          inScheme: request.scheme,
          validation: { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: Buffer.alloc(0) },
        });
        return r.params.signature;
      } finally {
        await this.swapOut(tpm, id, handle);
      }
    });
  }

  /** Keys whose chip context is kept (for metrics and tests). */
  get savedContexts(): number {
    return this.contexts.size;
  }

  private async swapIn(tpm: Tpm2Client, id: string, inPrivate: Buffer, inPublic: Public): Promise<number> {
    const saved = this.contexts.get(id);
    if (saved) {
      this.contexts.delete(id);
      try {
        return (await tpm.call(CC.ContextLoad, [], [], { context: saved })).handle!;
      } catch (e) {
        // A chip reset since the save voids the context; the blob still loads.
        if (!(e instanceof Tpm2CommandError)) throw e;
      }
    }
    return (await tpm.load(HANDLES.SRK, inPrivate, inPublic)).handle;
  }

  private async swapOut(tpm: Tpm2Client, id: string, handle: number): Promise<void> {
    try {
      const saved: unknown = (await tpm.call(CC.ContextSave, [handle], [])).params.context;
      this.contexts.set(id, saved);
      if (this.contexts.size > this.maxContexts) this.contexts.delete(this.contexts.keys().next().value!);
    } finally {
      await tpm.flushContext(handle);
    }
  }
}

