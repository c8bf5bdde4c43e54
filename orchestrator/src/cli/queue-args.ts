import type { Redis } from 'ioredis';
import { producerConnection } from '../queue/connection.js';
import { RunQueues } from '../queue/runs.js';

/** Opens a fail-fast connection and the run queues for a one-shot command, and closes both afterwards. */
export async function withQueues<T>(fn: (q: RunQueues, redis: Redis) => Promise<T>): Promise<T> {
  const redis = await producerConnection();
  const q = new RunQueues(redis);
  try {
    return await fn(q, redis);
  } finally {
    await q.close();
    redis.disconnect();
  }
}
