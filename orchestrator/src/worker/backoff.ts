import type { MinimalJob } from 'bullmq';
import type { RunJobData } from '../queue/job-data.js';

/**
 * Retry delay of a failed train attempt: exponential from the recipe's queue.backoff_ms, capped at
 * queue.max_backoff_ms, with +-10% jitter so that a fleet does not retry in lockstep.
 */
export function backoffDelay(attemptsMade: number, job: Pick<MinimalJob<RunJobData>, 'data'> | undefined, random = Math.random): number {
  const q = job?.data?.recipe?.queue;
  const base = q?.backoff_ms ?? 30_000;
  const max = q?.max_backoff_ms ?? 15 * 60_000;
  const delay = Math.min(max, base * 2 ** Math.max(0, attemptsMade - 1));
  return Math.round(delay * (0.9 + 0.2 * random()));
}
