/** Sending one setup command and checking its response code, the same way on every path. */
import { hex, responseCodeOf } from './commands.ts';

/**
 * Sends one command to the TPM being prepared and resolves with its response; rejects (with the
 * response bytes in the message) unless the rc is 0. `what` names the command for that message.
 */
export type Exchange = (command: Buffer, what: string) => Promise<Buffer>;

/** Warning codes a TSS answers by sending the same command again (tpm2-tss's ESYS does). */
const RESEND_RCS: ReadonlyMap<number, string> = new Map([
  [0x908, 'TPM_RC_YIELDED'],
  [0x90a, 'TPM_RC_TESTING'],
  [0x922, 'TPM_RC_RETRY'],
]);
const MAX_RESENDS = 3;

/**
 * An Exchange over a raw send function. Outside the measured loops a TPM may answer a warning
 * that means "send it again" (swtpm 0.7.1 answers the first Quote after power-on with
 * TPM_RC_RETRY); like a TSS, this resends up to three times and logs each resend in `resent`.
 * Any other rc but 0 rejects with the response bytes.
 */
export function makeExchange(send: (command: Buffer) => Promise<Buffer>, who: string, resent: string[]): Exchange {
  return async (command, what) => {
    for (let attempt = 0; ; attempt++) {
      let response: Buffer;
      try {
        response = await send(command);
      } catch (err) {
        throw new Error(`sending ${what} to ${who}: ${(err as Error).message}`);
      }
      const rc = responseCodeOf(response);
      if (rc === 0) return response;
      const warning = RESEND_RCS.get(rc);
      if (warning === undefined || attempt >= MAX_RESENDS) {
        throw new Error(`${who} answered ${what} with rc ${hex(rc)} (response ${response.toString('hex')})`);
      }
      resent.push(`${what}: ${warning} (${hex(rc)}), sent again`);
    }
  };
}

/** Runs `fn` over `items` with at most `limit` calls pending at once, keeping the order of results. */
export async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T, index: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]!, i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}
