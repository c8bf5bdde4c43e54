import { defineConfig } from 'vitest/config';
import FailuresReporter from './orchestrator/test/helpers/failures-reporter.js';
import SlowestReporter from './orchestrator/test/helpers/slowest-reporter.js';
import { limit, TIME_SCALE } from './orchestrator/test/helpers/time-scale.js';

// Every limit of the suite follows the machine (helpers/time-scale.ts); said once, so that a slow run is explained.
if (TIME_SCALE > 1) console.log(`bsft tests: time limits x${TIME_SCALE.toFixed(2)} (load average per core; BSFT_TEST_TIME_SCALE sets it)`);

export default defineConfig({
  test: {
    include: ['orchestrator/test/**/*.test.ts'],
    // Every temporary folder of the run under one, removed at its end.
    globalSetup: ['orchestrator/test/helpers/temp-root.ts'],
    testTimeout: limit(60_000),
    hookTimeout: limit(60_000),
    // Integration tests share one Redis and spawn CLI subprocesses: keep files serial on a 2-core machine.
    fileParallelism: false,
    // Each file and its slow tests as they finish; the slowest 15 and any test over the budget at the end; each
    // failure's first error line last (scripts/test-all.sh).
    reporters: ['default', new SlowestReporter(), new FailuresReporter()],
  },
});
