import { UnrecoverableError } from 'bullmq';
import { OffloadError, StoreAccessError } from '../errors.js';
import type { RunJobData } from '../queue/job-data.js';
import type { Store } from '../store/store.js';

/** A job whose data the worker has checked (job-policy.ts), with its store and its run folder on this machine. */
export interface StagedJob {
  data: RunJobData;
  store: Store;
  runDir: string;
}

/** Errors that retrying cannot fix (bad token, no rights, repo gone, bad input) fail the job at once. */
export function unrecoverable(e: unknown): never {
  if (e instanceof StoreAccessError) throw new UnrecoverableError(e.message);
  if (e instanceof OffloadError && e.exitCode === 2) throw new UnrecoverableError(e.message);
  throw e;
}
