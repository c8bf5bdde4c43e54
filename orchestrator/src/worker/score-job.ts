import { existsSync } from 'node:fs';
import path from 'node:path';
import type { Job } from 'bullmq';
import type { RunJobData } from '../queue/job-data.js';
import { offload } from './offload.js';
import { unrecoverable, type StagedJob } from './staged-job.js';
import { logJobEvent } from './train-job.js';

/** The score job: scores every eval split in a child process (offload.ts); a hub run pulls its inputs and pushes the scores. */
export async function processScoreJob(job: Job<RunJobData>, { data, store, runDir }: StagedJob): Promise<unknown> {
  const runId = data.run_id;
  for (const rel of ['dataset', 'predictions']) {
    if (store.kind === 'hub' && !existsSync(path.join(runDir, rel, 'COMPLETE'))) await store.pull(runId, rel, path.join(runDir, rel)).catch(unrecoverable);
  }
  const scores = await offload({ kind: 'score', runDir, splits: data.recipe.eval.splits }).catch(unrecoverable);
  const results: Record<string, unknown> = {};
  for (const [split, s] of Object.entries(scores)) {
    results[split] = { macro_f1: s.macro_f1, accuracy: s.accuracy };
    await logJobEvent(job, { event: 'score', split, ...s });
  }
  if (store.kind === 'hub') await store.push(runId, path.join(runDir, 'score'), 'score').catch(unrecoverable);
  return results;
}
