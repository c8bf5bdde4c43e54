import { appendFileSync } from 'node:fs';
import type { SerializedError } from 'vitest';
import type { Reporter, TestModule } from 'vitest/node';

/** The first line of an error's message (a failure's reason, short enough for the end of a CI log). */
const firstLine = (e: { message?: string; name?: string } | undefined): string =>
  `${e?.name && !e.message?.startsWith(e.name) ? `${e.name}: ` : ''}${(e?.message ?? 'no message').split('\n')[0]!.slice(0, 300)}`;

/**
 * One line per failed test, file that could not load and error outside a test, with the first line of its error, at
 * the end of the run: appended to the file BSFT_TEST_FAILURES names (scripts/test-all.sh prints both suites' lines
 * last, where CI's tail shows them), or printed when it is not set.
 */
export default class FailuresReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>, unhandled: ReadonlyArray<SerializedError>): void {
    const lines: string[] = [];
    for (const mod of modules) {
      for (const e of mod.errors()) lines.push(`FAILED ${mod.relativeModuleId} (the file): ${firstLine(e)}`);
      for (const test of mod.children.allTests()) {
        const r = test.result();
        if (r.state === 'failed') lines.push(`FAILED ${mod.relativeModuleId} > ${test.fullName}: ${firstLine(r.errors[0])}`);
      }
    }
    for (const e of unhandled) lines.push(`ERROR outside any test: ${firstLine(e)}`);
    if (lines.length === 0) return;
    const out = process.env.BSFT_TEST_FAILURES;
    if (out) appendFileSync(out, lines.map((l) => `${l}\n`).join(''));
    else console.log(`\n${lines.length} failure(s):\n${lines.join('\n')}`);
  }
}
