import path from 'node:path';
import { BsftError } from '../errors.js';
import { buildDataset } from '../dataset/build.js';
import { createLogger, LOG_LEVELS, type LogLevel } from '../log.js';
import { scoreRun } from '../score/run-scores.js';
import type { OffloadReply, OffloadTask, ScoreSummary } from './offload.js';

/** The child process of offload.ts: runs one task, sends one reply, exits. */
const level = (LOG_LEVELS as readonly string[]).includes(process.env.BSFT_LOG_LEVEL ?? '') ? (process.env.BSFT_LOG_LEVEL as LogLevel) : 'info';
const log = createLogger(level);

async function run(task: OffloadTask): Promise<unknown> {
  if (task.kind === 'build') {
    const res = await buildDataset(task.recipe, task.outDir, log, task.cacheDir);
    return {
      built: res.built,
      dataset_hash: res.manifest.dataset_hash,
      documents: Object.fromEntries(Object.entries(res.manifest.documents).map(([k, v]) => [k, v.length])),
    };
  }
  const out: ScoreSummary = {};
  for (const split of task.splits) {
    const s = await scoreRun(task.runDir, split);
    out[split] = { macro_f1: s.report.overall.macro_f1, accuracy: s.report.overall.accuracy, file: path.join(task.runDir, 'score', `${split}.json`) };
  }
  return out;
}

process.on('disconnect', () => process.exit(1)); // the worker is gone
process.once('message', (task: OffloadTask) => {
  run(task).then(
    (result) => send({ ok: true, result }),
    (e: Error) => send({ ok: false, message: e.message, exitCode: e instanceof BsftError ? e.exitCode : 1 }),
  );
});

function send(reply: OffloadReply): void {
  process.send!(reply, () => process.exit(0));
}
