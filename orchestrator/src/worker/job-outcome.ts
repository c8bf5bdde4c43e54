import { UnrecoverableError, WaitingError, type Job } from 'bullmq';
import { BsftError, CancelledError, DiskFullError, PreemptedError, StoreAccessError } from '../errors.js';
import { MAX_DISK_FULL, MAX_PREEMPTIONS, type RunJobData } from '../queue/job-data.js';
import { logJobEvent } from './job-log.js';

/**
 * A failure that ends the job at once, said in the user's words: without a stack, so that the queue (and the
 * dashboard, which shows a stack before the reason) records the reason alone.
 */
export function finalFailure(message: string): UnrecoverableError {
  const e = new UnrecoverableError(message);
  e.stack = '';
  return e;
}

/**
 * What a failed step means for its BullMQ job, the queue side of the one outcome mapping (run/trainer-outcome.ts):
 * cancelled or bad input (exit code 2) or a store that refuses us -> failed at once, never retried; preempted or
 * worker shutdown, or a full disk on this worker -> back to waiting without using an attempt (capped); anything else
 * -> a retryable failure.
 */
export async function settleJob(job: Job<RunJobData>, token: string | undefined, e: unknown): Promise<never> {
  if (e instanceof CancelledError) throw finalFailure(e.message);
  if (e instanceof DiskFullError) {
    // This machine's fault, not the run's: back to waiting without using an attempt (the worker pauses meanwhile).
    const times = (job.data.disk_full ?? 0) + 1;
    if (times > MAX_DISK_FULL) throw finalFailure(`${e.message} (the job was put back ${MAX_DISK_FULL} times for full disks; giving up)`);
    await job.updateData({ ...job.data, disk_full: times });
    await logJobEvent(job, { event: 'requeued', reason: 'disk full', message: e.message, disk_full: times });
    await job.moveToWait(token);
    throw new WaitingError();
  }
  if (e instanceof PreemptedError) {
    const preemptions = (job.data.preemptions ?? 0) + 1;
    if (preemptions > MAX_PREEMPTIONS) throw finalFailure(`preempted ${preemptions} times; giving up`);
    await job.updateData({ ...job.data, preemptions });
    await logJobEvent(job, { event: 'requeued', reason: e.reason, preemptions, ...(e.reason === 'node lost' ? { message: e.message } : {}) });
    await job.moveToWait(token);
    throw new WaitingError();
  }
  if (e instanceof StoreAccessError || (e instanceof BsftError && e.exitCode === 2)) throw finalFailure(e.message);
  throw e;
}
