import { readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bsft } from './helpers/cli.js';
import { queueEnv, startWorkerProc, stop, submitRun, trainStep, waitForRun, type WorkerProc } from './helpers/queue.js';
import { freePort, OwnRedis } from './helpers/redis-server.js';

const workers: WorkerProc[] = [];
afterEach(async () => {
  await Promise.all(workers.splice(0).map((w) => stop(w, 'SIGKILL')));
});

let redis: OwnRedis;
beforeAll(async () => {
  redis = new OwnRedis(await freePort(), 'chaos-pass');
  await redis.start();
});
afterAll(async () => {
  await redis.stop();
});

/** Per process, the time span in which it trained a run (begin .. its last record), from the fixtures' log. */
function spans(logFile: string) {
  const byPid = new Map<string, { run: string; from: number; to: number; steps: number[] }>();
  for (const line of readFileSync(logFile, 'utf8').trim().split('\n')) {
    const [t, pid, run, what, n] = line.split(' ');
    const s = byPid.get(pid!) ?? { run: run!, from: Number(t), to: Number(t), steps: [] };
    s.to = Number(t);
    if (what === 'step') s.steps.push(Number(n));
    byPid.set(pid!, s);
  }
  return [...byPid.values()];
}

describe('chaos: dead workers and a Redis restart (own redis-server, AOF on)', () => {
  it('a worker killed with SIGKILL mid-training: the run completes on the other, resumed, never trained twice at once', async () => {
    const log = path.join(tmpdir(), `bsft-chaos-${process.pid}.log`);
    writeFileSync(log, '');
    const env = queueEnv({ REDIS_URL: redis.url, FIXTURE_STEP_MS: '150', FIXTURE_LOG: log });
    const { runId } = await submitRun(env, ['train.max_steps=30', 'train.checkpoint_every=3']);
    const a = startWorkerProc('ok', env, ['--name', 'worker-a']);
    const b = startWorkerProc('ok', env, ['--name', 'worker-b']);
    workers.push(a, b);
    await Promise.all([a.ready, b.ready]);
    const training = await waitForRun(env, runId, (v) => v.state === 'training' && trainStep(v) >= 7);
    const victim = training.worker === 'worker-a' ? a : b;
    const survivor = victim === a ? 'worker-b' : 'worker-a';
    const killedAt = Date.now();
    victim.proc.kill('SIGKILL');
    const back = await waitForRun(env, runId, (v) => v.state === 'training' && v.worker === survivor, 30_000);
    const detection = Date.now() - killedAt;
    expect(detection).toBeLessThan(30_000);
    expect(back.worker).toBe(survivor);
    const done = await waitForRun(env, runId, (v) => ['completed', 'failed'].includes(v.state), 60_000);
    expect(done.state).toBe('completed');

    const logs = (await bsft(['logs', runId], { env })).stdout;
    const starts = [...logs.matchAll(/"event":"start","total_steps":30,"resumed_from_step":(\d+)/g)].map((m) => Number(m[1]));
    expect(starts.length).toBe(2);
    expect(starts[1]).toBeGreaterThan(0);
    const s = spans(log).filter((x) => x.run === runId).sort((x, y) => x.from - y.from);
    expect(s.length).toBe(2);
    expect(s[0]!.to).toBeLessThan(s[1]!.from); // the killed worker's trainer stopped before the next one began
    expect(new Set([...s[0]!.steps, ...s[1]!.steps])).toEqual(new Set(Array.from({ length: 30 }, (_, i) => i + 1)));
  });

  it('restarting redis-server during runs loses no job', async () => {
    const env = queueEnv({ REDIS_URL: redis.url, FIXTURE_STEP_MS: '100' });
    const runs = [];
    for (let i = 0; i < 3; i++) runs.push((await submitRun(env, ['train.max_steps=25', `data.seed=${i}`])).runId);
    const w = startWorkerProc('ok', env);
    workers.push(w);
    await w.ready;
    await waitForRun(env, runs[0]!, (v) => v.state === 'training' && trainStep(v) >= 3);
    await redis.stop();
    await new Promise((r) => setTimeout(r, 1500));
    await redis.start();
    for (const id of runs) {
      const v = await waitForRun(env, id, (x) => ['completed', 'failed'].includes(x.state), 120_000);
      expect(v.state, `${id}: ${v.failedReason}`).toBe('completed');
    }
    const status = await bsft(['status', '--json'], { env });
    const counts = JSON.parse(status.stdout).queues;
    expect(counts.train.completed).toBe(3);
    expect(counts.score.completed).toBe(3);
  });
});
