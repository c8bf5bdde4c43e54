import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bsft, FIXTURES } from './helpers/cli.js';
import { torchPython } from './helpers/python.js';
import { queueEnv, startWorkerProc, stop, submitRun, trainStep, waitForRun, type WorkerProc } from './helpers/queue.js';
import { freePort, OwnRedis } from './helpers/redis-server.js';
import { limit } from './helpers/time-scale.js';

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

/** Live (not zombie) processes whose command line holds every one of `parts`, by pid. */
function processesWith(parts: string[]): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (!parts.every((p) => cmdline.includes(p))) continue;
      if (/\nState:\tZ/.test(readFileSync(`/proc/${entry}/status`, 'utf8'))) continue;
      found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

const until = async (pred: () => boolean, timeoutMs: number, what: string): Promise<void> => {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};

const py = torchPython();
const SLOW_IMPORT = path.join(FIXTURES, 'slow-import');

describe.skipIf(!py)('chaos: the real trainer (toy model) while its worker is killed during its start-up', () => {
  it('kill -9 of the worker at 0.2 s, 1 s, 3 s and during model load: each trainer is gone within 2 s; two trainers of the run never coexist for over 1 s', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-chaos-real-'));
    const importLog = path.join(runs, 'slow-import.log');
    // Every trainer process holds the interpreter lock 4 s in `import torch` and 3 s in the model's import (its load),
    // so that the lease's watchdog thread cannot run there: only the kernel (lifeline.py) can end it in time.
    const env = queueEnv({
      REDIS_URL: redis.url, BSFT_PYTHON: py!, PYTHONPATH: SLOW_IMPORT, BSFT_SLOW_IMPORT: 'torch:4,bsft_trainer.modeling.toy:3',
      BSFT_SLOW_IMPORT_LOG: importLog,
    });
    const sub = await bsft(['submit', path.join(FIXTURES, 'recipes', 'toy-run.yaml'), '--allow', runs, '--set', `store.path=${runs}`,
      '--set', 'train.max_steps=4', '--set', 'queue.attempts=1', '--set', 'eval.bootstrap=20'], { env });
    const runId = /submitted run (\S+)/.exec(sub.stdout)?.[1];
    expect(runId, sub.stdout + sub.stderr).toBeDefined();
    const trainerParts = ['bsft_trainer', path.join(runs, runId!)];

    // The process table every 100 ms: how long two of the run's trainer processes (train, predict) were alive at once.
    let overlapSince: number | undefined;
    let longestOverlap = 0;
    const sampler = setInterval(() => {
      const n = processesWith(trainerParts).length;
      if (n >= 2) {
        overlapSince ??= Date.now();
        longestOverlap = Math.max(longestOverlap, Date.now() - overlapSince);
      } else overlapSince = undefined;
    }, 100);

    const inModelLoad = (pid: number) => existsSync(importLog) && readFileSync(importLog, 'utf8').includes(` ${pid} bsft_trainer.modeling.toy `);
    try {
      for (const [i, killAt] of [200, 1000, 3000, 'model load'].entries()) {
        const w = startWorkerProc('', env, ['--name', `real-${i}`]);
        workers.push(w);
        await w.ready;
        let pid = 0;
        await until(() => (pid = processesWith([...trainerParts, ' train ']).at(0) ?? 0) > 0, 120_000, `round ${i}: no trainer started`);
        const seen = Date.now();
        if (killAt === 'model load') await until(() => inModelLoad(pid), 30_000, 'the trainer never loaded its model');
        else await new Promise((r) => setTimeout(r, killAt - (Date.now() - seen)));
        w.proc.kill('SIGKILL');
        const killed = Date.now();
        await until(() => !processesWith(trainerParts).includes(pid), 10_000, `round ${i}: trainer ${pid} still alive`);
        console.log(`round ${i}: worker killed ${killAt === 'model load' ? 'during model load' : `${killAt} ms after its trainer started`}; trainer gone after ${Date.now() - killed} ms`);
        expect(Date.now() - killed, `round ${i} (kill at ${killAt})`).toBeLessThan(2000);
        await w.exited;
      }
      // The run then completes on a worker whose trainers import at their own pace (the kills are over).
      const last = startWorkerProc('', { ...env, BSFT_SLOW_IMPORT: '' }, ['--name', 'real-last']);
      workers.push(last);
      const done = await waitForRun(env, runId!, (v) => ['completed', 'failed'].includes(v.state), 240_000);
      expect(done.state, done.failedReason).toBe('completed');
    } finally {
      clearInterval(sampler);
    }
    expect(longestOverlap).toBeLessThanOrEqual(1000);
  }, limit(400_000));
});
