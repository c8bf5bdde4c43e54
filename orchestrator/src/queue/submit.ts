import { FlowProducer, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import path from 'node:path';
import { checkFits } from '../recipe/memory-plan.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import type { RunJobData } from './job-data.js';
import { keys, queueName, queuePrefix } from './names.js';

/** BullMQ's lowest priority (its largest number). 1 is the most urgent; a run without a priority goes last. */
export const LOWEST_PRIORITY = 2_097_151;

/**
 * The BullMQ priority of a run. BullMQ takes jobs without a priority before every prioritized one, so "no
 * priority" must become the lowest priority for "1 is most urgent" to hold.
 */
export function bullPriority(priority: number | undefined): number {
  return priority && priority > 0 ? priority : LOWEST_PRIORITY;
}

export interface SubmitResult {
  runId: string;
  created: boolean;
  /** State of the existing run's final (score) job when it was already submitted. */
  existingState?: string;
}

/**
 * Submits a run as a BullMQ flow score <- train <- build. The run id is the job id in every queue, so a second
 * submit of the same run is a no-op; of concurrent submits of one run, exactly one (the one that takes the
 * `submitting` key) creates it and reports `created`. A failed stage does not fail its parent: the parent waits for
 * its children, so `bsft retry` of the failed stage lets the run carry on.
 */
export async function submitRun(recipe: ResolvedRecipe, connection: Redis, opts: { priority?: number } = {}): Promise<SubmitResult> {
  checkFits(recipe); // a recipe that cannot fit its GPUs is refused before anything is queued
  const runId = recipe.run_id;
  const prefix = queuePrefix();
  const scoreQueue = new Queue(queueName('score'), { connection, prefix });
  try {
    const existing = await scoreQueue.getJob(runId);
    if (existing) return { runId, created: false, existingState: await existing.getState() };
  } finally {
    await scoreQueue.close();
  }
  // Concurrent submits: one takes the key, the others answer "already submitted" (the key outlives the flow's
  // creation, then expires so that a run whose jobs were removed can be submitted again).
  const mine = await connection.set(keys.submitting(runId), new Date().toISOString(), 'PX', 60_000, 'NX');
  if (mine !== 'OK') return { runId, created: false, existingState: 'being submitted' };
  const data: RunJobData = {
    run_id: runId,
    recipe,
    run_dir: path.join(recipe.runs_dir, runId),
    submitted_at: new Date().toISOString(),
  };
  const priority = bullPriority(opts.priority ?? recipe.queue.priority);
  const common = { jobId: runId, priority, removeOnComplete: false, removeOnFail: false };
  const flow = new FlowProducer({ connection, prefix });
  try {
    await flow.add({
      name: 'score',
      queueName: queueName('score'),
      data,
      opts: { ...common, attempts: 3, backoff: { type: 'exponential', delay: 5000 } },
      children: [
        {
          name: 'train',
          queueName: queueName('train'),
          data,
          opts: { ...common, attempts: recipe.queue.attempts, backoff: { type: 'bsft', delay: recipe.queue.backoff_ms } },
          children: [
            {
              name: 'build',
              queueName: queueName('build'),
              data,
              opts: { ...common, attempts: 3, backoff: { type: 'exponential', delay: 5000 } },
            },
          ],
        },
      ],
    });
  } catch (e) {
    await connection.del(keys.submitting(runId)).catch(() => undefined);
    throw e;
  } finally {
    await flow.close();
  }
  return { runId, created: true };
}
