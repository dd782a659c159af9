/** A steady scenario's setup on N vTPMs: each is prepared and gets its measured command once. */
import { mapLimit, type Exchange } from './exchange.ts';
import type { Prepared, SteadyScenario } from './scenarios.ts';

/** Setup commands in flight at once across the vTPMs: enough to keep N swtpm processes busy on every core. */
const SETUP_PARALLEL = 8;

export interface Setup {
  prepared: Prepared[];
  /** The first response to each vTPM's measured command. */
  firsts: Buffer[];
}

export async function setUp(exchanges: readonly Exchange[], scenario: SteadyScenario): Promise<Setup> {
  const firsts: Buffer[] = [];
  const prepared = await mapLimit(exchanges, SETUP_PARALLEL, async (exchange, i) => {
    const p = await scenario.prepare(exchange);
    firsts[i] = await exchange(p.command, 'the measured command (first, before warm-up)');
    return p;
  });
  return { prepared, firsts };
}
