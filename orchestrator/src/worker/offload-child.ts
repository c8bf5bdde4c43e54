import { BsftError, DiskFullError } from '../errors.js';
import { buildDataset } from '../dataset/build.js';
import { createLogger, LOG_LEVELS, type LogLevel } from '../log.js';
import { scoreRun } from '../score/run-scores.js';
import { buildSummary, scoreSummaryOf, type ScoreSummary } from '../run/stage-summary.js';
import type { OffloadReply, OffloadTask } from './offload.js';

/** A child process of offload.ts: runs the tasks it is sent, one at a time, each answered by one reply. */
const level = (LOG_LEVELS as readonly string[]).includes(process.env.BSFT_LOG_LEVEL ?? '') ? (process.env.BSFT_LOG_LEVEL as LogLevel) : 'info';
const log = createLogger(level);

async function run(task: OffloadTask): Promise<unknown> {
  if (task.kind === 'build') return buildSummary(await buildDataset(task.recipe, task.outDir, log, task.cacheDir));
  const out: ScoreSummary = {};
  for (const split of task.splits) out[split] = scoreSummaryOf(task.runDir, split, await scoreRun(task.runDir, split));
  return out;
}

process.on('disconnect', () => process.exit(1)); // the worker is gone
process.on('message', (task: OffloadTask) => {
  const started = performance.now();
  run(task).then(
    (result) => process.send!({ ok: true, result, work_ms: performance.now() - started } satisfies OffloadReply),
    (e: Error) => process.send!({ ok: false, message: e.message, exitCode: e instanceof BsftError ? e.exitCode : 1, diskFull: e instanceof DiskFullError } satisfies OffloadReply),
  );
});
