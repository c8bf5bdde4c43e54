import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['orchestrator/test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration tests share one Redis and spawn CLI subprocesses: keep files serial on a 2-core machine.
    fileParallelism: false,
  },
});
