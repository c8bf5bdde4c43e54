import { availableParallelism, loadavg } from 'node:os';

/**
 * One factor for every time limit of the suite, so that limits follow the machine: a busy CI machine runs several
 * times slower than an idle one. BSFT_TEST_TIME_SCALE sets it; otherwise it is measured when the suite starts, as
 * the one-minute load average per core (at least 1, at most 5). Limits are written for an idle 2-core machine with a
 * generous margin already; the factor only stretches them, it never shortens one.
 */
function measured(): number {
  const set = Number(process.env.BSFT_TEST_TIME_SCALE);
  if (Number.isFinite(set) && set > 0) return Math.max(1, set);
  return Math.min(5, Math.max(1, loadavg()[0]! / availableParallelism()));
}

export const TIME_SCALE = measured();

/** A time limit in milliseconds, stretched by the suite's factor. */
export const limit = (ms: number): number => Math.round(ms * TIME_SCALE);
