import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { BSFT, bsft, ROOT } from './helpers/cli.js';
import { startWorkerProc, stop } from './helpers/queue.js';
import { freePort, OwnRedis } from './helpers/redis-server.js';
import { limit } from './helpers/time-scale.js';

/** Issue 18: an unreachable Redis gives one clear line, then quiet retries; one-shot commands fail with it. */

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const noise = (lines: string[]) => lines.filter((l) => /Unhandled error event|at TCPConnectWrap|^Error: /.test(l));

describe('Redis unreachable', () => {
  it('bsft worker: one line while Redis is down (password hidden), then ready when it comes up', async () => {
    const port = await freePort();
    const own = new OwnRedis(port, 's3cret');
    const w = startWorkerProc('ok', { REDIS_URL: own.url, BSFT_QUEUE_PREFIX: `down-${port}` });
    try {
      await sleep(4000);
      const down = w.stderr.filter((l) => l.includes('cannot reach Redis'));
      expect(down).toHaveLength(1);
      expect(down[0]).toContain(`cannot reach Redis at 127.0.0.1:${port} (password hidden), retrying every 5s`);
      expect(w.stderr.join('\n')).not.toContain('s3cret');
      expect(noise(w.stderr)).toEqual([]);
      await own.start();
      await w.ready;
      expect(w.stderr.some((l) => l.includes(`Redis at 127.0.0.1:${port} (password hidden) is reachable again`))).toBe(true);
    } finally {
      await stop(w);
      await own.stop();
    }
  }, limit(60_000));

  it('bsft dashboard: one line, no stack traces', async () => {
    const port = await freePort();
    const proc = spawn(process.execPath, [BSFT, 'dashboard', '--port', '0'], { cwd: ROOT, env: { ...process.env, REDIS_URL: `redis://127.0.0.1:${port}` } });
    const lines: string[] = [];
    proc.stderr.on('data', (d: Buffer) => lines.push(...d.toString().split('\n').filter(Boolean)));
    await sleep(4000);
    proc.kill('SIGTERM');
    await new Promise((r) => proc.once('exit', r));
    expect(lines.filter((l) => l.includes('cannot reach Redis'))).toHaveLength(1);
    expect(noise(lines)).toEqual([]);
  }, limit(30_000));

  it('bsft status and submit fail with exit 1 and the same line', async () => {
    const port = await freePort();
    const env = { REDIS_URL: `redis://:pw@127.0.0.1:${port}` };
    for (const args of [['status'], ['submit', 'recipes/smoke.yaml']]) {
      const res = await bsft(args, { env });
      expect(res.code, args.join(' ')).toBe(1);
      expect(res.stderr).toMatch(new RegExp(`cannot reach Redis at 127\\.0\\.0\\.1:${port} \\(password hidden\\): .*Start one \\(redis-server\\)`));
      expect(res.stderr).not.toContain('pw@');
    }
  }, limit(30_000));
});
