import { RedisUnavailableError } from '../errors.js';
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from '../log.js';
import { redactUrl } from '../recipe/secrets.js';

export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';

/** The Redis URL, from REDIS_URL (redis:// or rediss://, password allowed). Never logged unredacted. */
export function redisUrl(): string {
  return process.env.REDIS_URL || DEFAULT_REDIS_URL;
}

/** Longest wait between reconnection attempts of long-running connections. */
const RETRY_CAP_MS = 5000;

/** `host:port` of a Redis URL, saying "(password hidden)" when it carries one: what messages show of it. */
export function redisWhere(url = redisUrl()): string {
  try {
    const u = new URL(url);
    return `${u.hostname}:${u.port || 6379}${u.password ? ' (password hidden)' : ''}`;
  } catch {
    return redactUrl(url);
  }
}

const UNREACHABLE = /ECONNREFUSED|ETIMEDOUT|ENOTFOUND|EHOSTUNREACH|ECONNRESET|EAI_AGAIN|Connection is closed|connect ETIMEDOUT/;

/**
 * Turns the connection errors of every client and BullMQ object of a process into one line when Redis becomes
 * unreachable ("cannot reach Redis at host:port, retrying every 5s"), and one when it is back; the retries in
 * between are quiet (debug). Other errors are logged as they come.
 */
export class RedisWatch {
  private down = false;

  constructor(
    private readonly log: Logger,
    private readonly url = redisUrl(),
  ) {}

  /** Listens to an ioredis client or a BullMQ Queue / Worker / QueueEvents. */
  watch<T extends { on(event: 'error', listener: (err: Error) => void): unknown }>(emitter: T, what = 'redis'): T {
    emitter.on('error', (err: Error) => {
      if (!UNREACHABLE.test(`${(err as NodeJS.ErrnoException).code ?? ''} ${err.message}`)) {
        this.log.error({ err: err.message, what }, 'Redis error');
      } else if (this.down) {
        this.log.debug({ err: err.message, what }, 'Redis still unreachable');
      } else {
        this.down = true;
        this.log.warn(`cannot reach Redis at ${redisWhere(this.url)}, retrying every ${RETRY_CAP_MS / 1000}s at most (${err.message})`);
      }
    });
    return emitter;
  }

  /** Called when a client is ready again. */
  reachable(): void {
    if (!this.down) return;
    this.down = false;
    this.log.info(`Redis at ${redisWhere(this.url)} is reachable again`);
  }
}

/**
 * A connection for long-running workers: commands wait through reconnects (`maxRetriesPerRequest: null`, as
 * BullMQ requires for workers), reconnecting with a capped backoff. With a watch, its errors are reported there.
 */
export function workerConnection(url = redisUrl(), watch?: RedisWatch): Redis {
  const redis = new Redis(url, {
    maxRetriesPerRequest: null,
    enableReadyCheck: true,
    retryStrategy: (times) => Math.min(200 * 2 ** Math.min(times, 6), RETRY_CAP_MS),
  });
  if (watch) {
    watch.watch(redis);
    redis.on('ready', () => watch.reachable());
  }
  return redis;
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
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      redis.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
    await redis.ping();
  } catch (e) {
    redis.disconnect();
    throw new RedisUnavailableError(
      `cannot reach Redis at ${redisWhere(url)}: ${(e as Error).message.replace(/\.+$/, '')}. Start one (redis-server) or set REDIS_URL=redis[s]://[:password@]host:port`,
    );
  } finally {
    clearTimeout(timer); // a pending timer would keep a short command (bsft status) alive for the whole timeout
  }
  return redis;
}
