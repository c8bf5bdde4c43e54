import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { GpuPool } from '../src/worker/gpu-pool.js';
import { bsft } from './helpers/cli.js';
import { queueEnv, startWorkerProc, stop, submitRun, waitForRun, type WorkerProc } from './helpers/queue.js';
import { limit } from './helpers/time-scale.js';

describe('GpuPool: GPUs for train jobs, never given twice, big jobs not starved', () => {
  it('hands out free GPUs in order and takes them back', () => {
    const pool = new GpuPool(['0', '1', '2', '3']);
    expect(pool.take('a', 1)).toEqual({ gpus: ['0'] });
    expect(pool.take('b', 2)).toEqual({ gpus: ['1', '2'] });
    expect(pool.take('c', 2)).toEqual({ wait: '2 free GPUs (1 of 4 free)' });
    pool.release(['1', '2']);
    expect(pool.take('c', 2)).toEqual({ gpus: ['1', '2'] });
    expect(() => pool.take('d', 5)).toThrow(/cannot run on a worker with 4/);
    expect(() => new GpuPool(['0', '0'])).toThrow(/twice/);
  });

  it('a job that waits holds a reservation: smaller jobs start only on GPUs it cannot use, until it fits', () => {
    const pool = new GpuPool(['0', '1', '2', '3'], 10_000);
    const t = 1000;
    for (const id of ['a', 'b', 'c']) expect('gpus' in pool.take(id, 1, t)).toBe(true);
    expect(pool.take('big', 4, t)).toEqual({ wait: '4 free GPUs (1 of 4 free)' });
    // One GPU is free, but taking it would delay the 4-GPU job: the 1-GPU job waits behind it.
    expect(pool.take('e', 1, t + 1)).toEqual({ wait: '1 GPU: 4 held for big (1 of 4 free)' });
    pool.release(['0']);
    pool.release(['1']);
    expect('wait' in pool.take('e', 1, t + 2)).toBe(true);
    pool.release(['2']);
    expect(pool.take('big', 4, t + 3)).toEqual({ gpus: ['0', '1', '2', '3'] });
    expect(pool.reserved(t + 3)).toBeUndefined();
  });

  it('smaller jobs keep flowing on GPUs the reserved job leaves over, and a lapsed reservation frees the rest', () => {
    const pool = new GpuPool(['0', '1', '2', '3', '4', '5', '6', '7'], 10_000);
    const t = 1000;
    expect('gpus' in pool.take('a', 6, t)).toBe(true);
    expect('wait' in pool.take('big', 4, t)).toBe(true); // 2 free: reserved for 4
    expect('wait' in pool.take('small', 1, t)).toBe(true); // 2 - 1 < 4
    pool.release(['0', '1', '2', '3', '4', '5']);
    expect(pool.take('small', 1, t + 1)).toEqual({ gpus: ['0'] }); // 8 - 1 >= 4: backfill does not delay it
    expect(pool.take('big', 4, t + 2)).toEqual({ gpus: ['1', '2', '3', '4'] });
    expect('wait' in pool.take('x', 4, t + 3)).toBe(true); // 3 free: x now holds the reservation
    expect('wait' in pool.take('y', 2, t + 4)).toBe(true);
    expect(pool.take('y', 2, t + 20_000)).toEqual({ gpus: ['5', '6'] }); // x never came back: lapsed
  });
});

describe('bsft worker --gpus: several train jobs at once, each on its own GPUs (fixture trainers, real Redis)', () => {
  let workers: WorkerProc[] = [];
  afterEach(async () => {
    await Promise.all(workers.map((w) => stop(w)));
    workers = [];
  });

  it('packs 1-GPU runs onto 4 GPUs, runs a 4-GPU run on all of them, never oversubscribes, and leaves an 8-GPU run waiting', async () => {
    const log = path.join(mkdtempSync(path.join(tmpdir(), 'bsft-gpus-')), 'trainers.log');
    writeFileSync(log, '');
    const env = queueEnv({ FIXTURE_LOG: log, FIXTURE_STEP_MS: '150', BSFT_GPU_WAIT_MS: '200' });
    const w = startWorkerProc('ok', env, ['--gpus', '0,1,2,3', '--queues', 'build,train,score']);
    workers.push(w);
    await w.ready;
    const sets = (gpus: number, seed: number) => [`resources.gpus=${gpus}`, `train.seed=${seed}`];
    const small = await Promise.all([1, 2].map((s) => submitRun(env, sets(1, s))));
    const big = await submitRun(env, sets(4, 3));
    const later = await Promise.all([4, 5, 6].map((s) => submitRun(env, sets(1, s))));
    const huge = await submitRun(env, sets(8, 7));
    for (const r of [...small, big, ...later]) expect((await waitForRun(env, r.runId, (v) => ['completed', 'failed'].includes(v.state), 120_000)).state).toBe('completed');
    const waiting = await waitForRun(env, huge.runId, (v) => v.waitingFor !== undefined);
    expect(waiting.state).toBe('waiting');
    expect(waiting.waitingFor).toMatch(/a worker with 8 GPUs \(.* has 4\)/);
    const status = await bsft(['status'], { env });
    expect(status.stdout).toMatch(new RegExp(`${huge.runId}.*waiting for a worker with 8 GPUs`));

    // From the trainers' log: each trainer's GPUs and the time it held them (first record .. done).
    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(' '));
    const spans = new Map<string, { gpus: string[]; nproc: string; from: number; to: number }>();
    for (const [t, pid, , what, a, b] of lines) {
      if (what === 'gpus') spans.set(pid!, { gpus: a!.split(','), nproc: b!, from: Number(t), to: Infinity });
      if (what === 'done' && spans.has(pid!)) spans.get(pid!)!.to = Number(t);
    }
    const all = [...spans.values()];
    expect(all.length).toBe(6);
    expect(all.filter((s) => s.gpus.length === 4)).toEqual([expect.objectContaining({ gpus: ['0', '1', '2', '3'], nproc: '4' })]);
    expect(all.filter((s) => s.gpus.length === 1).every((s) => s.nproc === '1')).toBe(true);
    for (const a of all) {
      for (const b of all) {
        if (a === b || a.to <= b.from || b.to <= a.from) continue;
        expect(a.gpus.filter((g) => b.gpus.includes(g))).toEqual([]); // overlapping in time: never the same GPU
      }
    }
    const concurrent = Math.max(...all.map((a) => all.filter((b) => b.from <= a.from && a.from < b.to).length));
    expect(concurrent).toBeGreaterThan(1); // 1-GPU runs ran side by side
  }, limit(180_000));
});
