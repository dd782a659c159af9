/**
 * The key and session manager's work on the chip for hardware-backed vTPMs. Many vTPMs' keys share
 * a chip with three object slots: a key is swapped in for one operation (ContextLoad of the
 * context saved last time, or Load of its blob under the hwSRK the first time) and swapped out
 * again (ContextSave, FlushContext) before the chip serves anyone else. Keys sign, decrypt
 * (RSA_Decrypt) and derive ECDH secrets (ECDH_ZGen) there.
 */
import { createHash } from 'node:crypto';
import type { Chip } from '../hwtpm/chip.ts';
import { Tpm2Client, Tpm2CommandError } from '../hwtpm/tpm2-client.ts';
import { HANDLES } from '../hwtpm/tpm2-templates.ts';
import { CC, RH, ST } from '../tpm/tpm2/constants.ts';
import type { ChipRefused, ExternalRequest, KeyUse } from '../tpm/tpm2/hardware-keys.ts';
import { unnumbered } from '../tpm/tpm2/rc.ts';
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
        return await use(tpm, handle, request);
      } catch (e) {
        // The guest's input can make the chip refuse (a bad padding, a point off the curve).
        if (e instanceof Tpm2CommandError && request.kind !== 'sign') return { refused: unnumbered(e.rc) } satisfies ChipRefused;
        throw e;
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


async function use(tpm: Tpm2Client, handle: number, u: KeyUse): Promise<unknown> {
  switch (u.kind) {
    case 'sign':
      return (
        await tpm.call(CC.Sign, [handle], [{}], {
          digest: u.digest,
          inScheme: u.scheme,
          validation: { tag: ST.HASHCHECK, hierarchy: RH.NULL, digest: Buffer.alloc(0) },
        })
      ).params.signature;
    case 'rsa-decrypt':
      return (await tpm.call(CC.RSA_Decrypt, [handle], [{}], { cipherText: u.cipherText, inScheme: u.scheme, label: u.label })).params.message;
    case 'ecdh-zgen':
      return (await tpm.call(CC.ECDH_ZGen, [handle], [{}], { inPoint: u.point })).params.outPoint;
  }
}
