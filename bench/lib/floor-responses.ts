/**
 * The node-floor calibration server's canned responses: what a fresh in-memory engine answers to
 * every command of the selected scenarios (setup, measured, teardown, cleanup), one per command
 * code — so where two scenarios share a command code (the two Quotes) the floor answers both
 * with the last one built.
 */
import type { Exchange } from './exchange.ts';
import { engineExchange, startedEngine } from './in-process.ts';
import type { Scenario } from './scenarios.ts';

export async function floorResponses(scenarios: readonly Scenario[]): Promise<Map<number, Buffer>> {
  const out = new Map<number, Buffer>();
  for (const s of scenarios) {
    const inner = engineExchange(startedEngine());
    const record: Exchange = async (command, what) => {
      const response = await inner(command, `${what} (building the calibration responses)`);
      out.set(command.readUInt32BE(6), response);
      return response;
    };
    if (s.kind === 'steady') {
      const prepared = await s.prepare(record);
      await record(prepared.command, s.title);
      for (const cmd of prepared.teardown) await record(cmd, 'a teardown command');
    } else if (s.kind === 'one-shot') {
      await record(s.cleanup(await record(s.command('calibration', 0), s.title)), 'the cleanup command');
    } else {
      await record(s.seed, 'the seed command');
      await record(s.command, s.title);
    }
  }
  return out;
}
