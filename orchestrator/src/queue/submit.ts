import { FlowProducer, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import path from 'node:path';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import type { RunJobData } from './job-data.js';
import { queueName, queuePrefix } from './names.js';

export interface SubmitResult {
  runId: string;
  created: boolean;
  /** State of the existing run's final (score) job when it was already submitted. */
  existingState?: string;
}

/**
 * Submits a run as a BullMQ flow score <- train <- build. The run id is the job id in every queue, so a second
 * submit of the same run is a no-op. A failed stage does not fail its parent: the parent waits for its children,
 * so `bsft retry` of the failed stage lets the run carry on.
 */
export async function submitRun(recipe: ResolvedRecipe, connection: Redis, opts: { priority?: number } = {}): Promise<SubmitResult> {
  const runId = recipe.run_id;
  const prefix = queuePrefix();
  const scoreQueue = new Queue(queueName('score'), { connection, prefix });
  try {
    const existing = await scoreQueue.getJob(runId);
    if (existing) return { runId, created: false, existingState: await existing.getState() };
  } finally {
    await scoreQueue.close();
  }
  const data: RunJobData = {
    run_id: runId,
    recipe,
    run_dir: path.join(recipe.runs_dir, runId),
    submitted_at: new Date().toISOString(),
  };
  const priority = opts.priority ?? recipe.queue.priority;
  const common = { jobId: runId, ...(priority > 0 ? { priority } : {}), removeOnComplete: false, removeOnFail: false };
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
  } finally {
    await flow.close();
  }
  return { runId, created: true };
}
