import path from 'node:path';
import type { Job } from 'bullmq';
import type { RunJobData } from '../queue/job-data.js';
import { datasetDir } from '../run/trainer-config.js';
import { writeMeta } from '../store/meta.js';
import { offload } from './offload.js';
import { unrecoverable, type StagedJob } from './staged-job.js';
import { logJobEvent } from './train-job.js';

/**
 * The build job: the dataset, built in a child process (offload.ts) so that this worker keeps renewing its locks;
 * runs of one submission that share their data section share one build (by dataset hash). A hub run pushes it.
 */
export async function processBuildJob(job: Job<RunJobData>, { data, store, runDir }: StagedJob): Promise<unknown> {
  const res = await offload({ kind: 'build', recipe: data.recipe, outDir: datasetDir(runDir), cacheDir: path.join(path.dirname(runDir), '_datasets') }).catch(unrecoverable);
  if (store.kind === 'hub') {
    await store.push(data.run_id, datasetDir(runDir), 'dataset').catch(unrecoverable);
    await store.push(data.run_id, writeMeta(runDir, data.recipe), 'meta').catch(unrecoverable);
  }
  await logJobEvent(job, { event: 'dataset', built: res.built, shared: !res.built, dataset_hash: res.dataset_hash, documents: res.documents });
  return { dataset_hash: res.dataset_hash };
}
