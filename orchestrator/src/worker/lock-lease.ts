import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Lease } from './lease.js';

/**
 * The trainer's lease (lease.py) as a share of the job's lock: a heartbeat is sent only when the lock has more than
 * LEASE + MARGIN of it left, so the trainer stops before the lock can expire and another worker take the job.
 * BullMQ renews the lock when half of it is left, so in normal operation every check passes.
 */
const LEASE_SHARE = 0.35;
const MARGIN_SHARE = 0.05;

/** A lease that holds while this worker owns `job`'s lock (BullMQ's `<queue>:<id>:lock` key holds our token). */
export function lockLease(connection: Redis, job: Job, token: string | undefined, lockMs: number): Lease {
  const ms = Math.round(lockMs * LEASE_SHARE);
  const lockKey = `${job.queueQualifiedName}:${job.id}:lock`;
  return {
    ms,
    async holds() {
      const res = await connection.multi().get(lockKey).pttl(lockKey).exec();
      const [owner, pttl] = (res ?? []).map(([, v]) => v);
      return owner === token && typeof pttl === 'number' && pttl > ms + lockMs * MARGIN_SHARE;
    },
  };
}
