import { Redis, type RedisOptions } from 'ioredis';
import { redactUrl } from '../recipe/secrets.js';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** The Redis URL, from REDIS_URL (redis:// or rediss://, password allowed). Never logged unredacted. */
export function redisUrl(): string {
  return process.env.REDIS_URL || DEFAULT_REDIS_URL;
}

export class RedisUnavailableError extends Error {
  override name = 'RedisUnavailableError';
  readonly exitCode = 1;
}

/**
 * A connection for long-running workers: commands wait through reconnects (`maxRetriesPerRequest: null`, as
 * BullMQ requires for workers), reconnecting with a capped backoff.
 */
export function workerConnection(url = redisUrl()): Redis {
  return new Redis(url, {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    retryStrategy: (times) => Math.min(200 * 2 ** Math.min(times, 6), 5000),
  });
}

/**
 * A connection for producers and one-shot commands (`submit`, `status`, ...): fails fast with a clear message when
 * Redis is unreachable instead of queueing commands forever.
 */
export async function producerConnection(url = redisUrl(), timeoutMs = 3000): Promise<Redis> {
  const options: RedisOptions = {
    maxRetriesPerRequest: 1,
    enableOfflineQueue: true,
    connectTimeout: timeoutMs,
    lazyConnect: true,
    retryStrategy: (times) => (times > 2 ? null : 200),
  };
  const redis = new Redis(url, options);
  redis.on('error', () => {
    // Reported through connect() below; keep ioredis from printing unhandled error events.
  });
  try {
    await Promise.race([
      redis.connect(),
      new Promise((_, reject) => setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)),
    ]);
    await redis.ping();
  } catch (e) {
    redis.disconnect();
    throw new RedisUnavailableError(
      `cannot reach Redis at ${redactUrl(url)}: ${(e as Error).message}. Start one (redis-server) or set REDIS_URL=redis[s]://[:password@]host:port`,
    );
  }
  return redis;
}
