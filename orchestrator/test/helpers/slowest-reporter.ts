import type { Reporter, TestModule } from 'vitest/node';
import { TIME_SCALE } from './time-scale.js';

/** A test that takes longer than this on an idle 2-core machine (stretched by the suite's time scale) is named. */
export const TEST_BUDGET_MS = 60_000;

/**
 * Prints the 15 slowest tests of the run at its end (as pytest's --durations), and names every test over the
 * budget, so that a test that grows is seen in the output of the run that made it grow.
 */
export default class SlowestReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const times: Array<{ ms: number; name: string }> = [];
    for (const mod of modules) {
      for (const test of mod.children.allTests()) {
        const ms = test.diagnostic()?.duration;
        if (ms !== undefined) times.push({ ms, name: `${mod.relativeModuleId} > ${test.fullName}` });
      }
    }
    if (times.length === 0) return;
    times.sort((a, b) => b.ms - a.ms);
    const line = (t: { ms: number; name: string }) => `  ${(t.ms / 1000).toFixed(1).padStart(6)} s  ${t.name}`;
    console.log(`\nslowest ${Math.min(15, times.length)} of ${times.length} tests:`);
    for (const t of times.slice(0, 15)) console.log(line(t));
    const budget = TEST_BUDGET_MS * TIME_SCALE;
    const over = times.filter((t) => t.ms > budget);
    if (over.length > 0) {
      console.log(`\n${over.length} test(s) over the budget of ${(budget / 1000).toFixed(0)} s` +
        `${TIME_SCALE > 1 ? ` (60 s x time scale ${TIME_SCALE.toFixed(2)})` : ''}:`);
      for (const t of over) console.log(line(t));
    }
  }
}
