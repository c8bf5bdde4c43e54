import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { gpuCounts, stepBatches } from '../src/recipe/gpu-counts.js';
import { resolveRecipe } from '../src/recipe/resolve.js';
import { trainerConfig } from '../src/run/trainer-config.js';
import { GpuPool } from '../src/worker/gpu-pool.js';
import { bsft, FIXTURES, ROOT } from './helpers/cli.js';
import { queueEnv, startWorkerProc, stop, submitRun, trainStep, waitForRun, type WorkerProc } from './helpers/queue.js';
import { pythonThatRuns } from './helpers/python.js';
import { limit } from './helpers/time-scale.js';

const shardedPy = pythonThatRuns('from torch.distributed.fsdp import fully_shard');
const TOY = path.join(FIXTURES, 'recipes', 'toy-run.yaml');

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

describe('elastic runs (resources.min_gpus): the most GPUs free from the minimum up, the same global batch on each', () => {
  it('takes the largest allowed count that is free and leaves a reservation covered; waits and reserves for its minimum', () => {
    const pool = new GpuPool(['0', '1', '2', '3'], 10_000);
    const t = 1000;
    expect(pool.take('one', 1, t)).toEqual({ gpus: ['0'] });
    // 3 free; allowed 1, 2 or 4 (the divisors of its step's batches): 2, not 3.
    expect(pool.take('elastic', [1, 2, 4], t)).toEqual({ gpus: ['1', '2'] });
    expect(pool.take('wide', [2, 4], t)).toEqual({ wait: '2 free GPUs (1 of 4 free)' }); // reserves its minimum, 2
    expect(pool.reserved(t)).toMatchObject({ jobId: 'wide', need: 2 });
    expect(pool.take('small', 1, t + 1)).toEqual({ wait: '1 GPU: 2 held for wide (1 of 4 free)' });
    pool.release(['0']);
    // 2 free, 2 held for wide: an elastic job that could use 1 or 2 leaves them.
    expect(pool.take('other', [1, 2], t + 2)).toEqual({ wait: '1 GPU: 2 held for wide (2 of 4 free)' });
    expect(pool.take('wide', [2, 4], t + 3)).toEqual({ gpus: ['0', '3'] });
    pool.release(['1', '2', '0', '3']);
    expect(pool.take('wide-again', [2, 4], t + 4)).toEqual({ gpus: ['0', '1', '2', '3'] });
    expect(() => pool.take('huge', [8, 16], t + 5)).toThrow(/needing 8 GPUs cannot run on a worker with 4/);
  });

  it('a recipe: counts from min_gpus to gpus dividing grad_accum x gpus; refused when min_gpus cannot share the step, exceeds gpus or does not fit', async () => {
    const smoke = (set: string[]) => resolveRecipe(path.join(ROOT, 'recipes', 'smoke.yaml'), { policy: { workspace: ROOT, allow: [] }, set });
    const r = smoke(['resources.gpus=8', 'resources.min_gpus=2', 'train.grad_accum=3']);
    expect(stepBatches(r)).toBe(24);
    expect(gpuCounts(r)).toEqual([2, 3, 4, 6, 8]);
    expect(trainerConfig(r, '/tmp/run').step_batches).toBe(24); // the trainer's ranks take 24 / N batches each
    expect(gpuCounts(smoke(['resources.gpus=4']))).toEqual([4]);
    const bad = await bsft(['run', 'recipes/smoke.yaml', '--set', 'resources.gpus=4', '--set', 'resources.min_gpus=3', '--dry-run']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('resources.min_gpus: 3 GPUs cannot share a step of 4 batches (train.grad_accum 1 x resources.gpus 4) equally; counts that can: 1, 2, 4');
    const over = await bsft(['run', 'recipes/smoke.yaml', '--set', 'resources.gpus=2', '--set', 'resources.min_gpus=4', '--dry-run']);
    expect(over.stderr).toContain('resources.min_gpus: more than resources.gpus (2)');
    // Full fine-tuning of the 7B shape: fits 4 cards of 80 GiB, not 1; the smallest of its counts that fits is named.
    const big = await bsft(['run', 'recipes/paper/behaviorsft-full.yaml', '--set', 'resources.gpus=4', '--set', 'resources.min_gpus=1',
      '--set', 'train.grad_accum=1', '--dry-run']);
    expect(big.code).toBe(2);
    expect(big.stderr).toMatch(/resources\.min_gpus: .* per GPU on 1 GPU\(s\) .* the fewest of its counts \(1, 2, 4\) that fit: [24]/);
    // The plan of an elastic run: a row per count, the same batches over all GPUs, steps faster with more of them.
    const plan = await bsft(['run', 'recipes/smoke.yaml', '--set', 'resources.gpus=4', '--set', 'resources.min_gpus=1', '--dry-run']);
    expect(plan.code, plan.stderr).toBe(0);
    const lines = plan.stdout.split('\n');
    const rows = lines.slice(lines.findIndex((l) => l.startsWith('elastic runs'))).filter((l) => /^smoke-\S+ +\d/.test(l)).map((l) => l.trim().split(/ {2,}/));
    expect(rows.map((row) => [row[1], row[2]])).toEqual([['1', '4'], ['2', '2'], ['4', '1']]);
    const seconds = rows.map((row) => Number.parseFloat(row[5]!));
    expect(seconds[0]! / seconds[1]!).toBeCloseTo(2, 1);
    expect(seconds[1]! / seconds[2]!).toBeCloseTo(2, 1);
  }, limit(120_000));
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

describe.skipIf(!shardedPy)('an elastic run through the queue with the real trainer (gloo ranks on the CPU)', () => {
  let workers: WorkerProc[] = [];
  afterEach(async () => {
    await Promise.all(workers.map((w) => stop(w, 'SIGKILL')));
    workers = [];
  });

  it('starts on the 2 GPUs a worker has, is stopped, resumes on a worker with 1 and trains the steps of a straight run of its global batch', async () => {
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-elastic-'));
    const straight = mkdtempSync(path.join(tmpdir(), 'bsft-elastic-straight-'));
    const env = queueEnv({ BSFT_PYTHON: shardedPy!, BSFT_GPU_WAIT_MS: '200' });
    // grad_accum 1 on 2 GPUs: 2 batches a step (the toy model's steps take long enough to stop the worker mid-run).
    const sets = ['resources.gpus=2', 'resources.min_gpus=1', 'train.max_steps=16', 'train.checkpoint_every=100', 'eval.splits=[val]'].flatMap((x) => ['--set', x]);
    const submitted = await bsft(['submit', TOY, '--allow', runs, '--set', `store.path=${runs}`, ...sets], { env });
    const runId = /submitted run (\S+)/.exec(submitted.stdout)?.[1];
    expect(runId, submitted.stdout + submitted.stderr).toBeDefined();
    const two = startWorkerProc('', env, ['--gpus', '0,1', '--name', 'two']);
    workers.push(two);
    await two.ready;
    await waitForRun(env, runId!, (v) => v.state === 'training' && trainStep(v) >= 3, 180_000);
    await stop(two); // graceful: the trainer checkpoints at the step it is in, the job goes back to waiting
    const one = startWorkerProc('', env, ['--gpus', '0', '--name', 'one']);
    workers.push(one);
    const done = await waitForRun(env, runId!, (v) => ['completed', 'failed'].includes(v.state), 300_000);
    expect(done.state).toBe('completed');
    const logs = (await bsft(['logs', runId!], { env })).stdout;
    const starts = logs.split('\n').filter((l) => l.includes('"event":"start"'))
      .map((l) => ({ world_size: Number(/"world_size":(\d+)/.exec(l)?.[1]), resumed_from_step: Number(/"resumed_from_step":(\d+)/.exec(l)?.[1]) }));
    expect(starts.map((e) => e.world_size)).toEqual([2, 1]);
    expect(starts[1].resumed_from_step).toBeGreaterThanOrEqual(3); // measured: stopped at step 6 (asked at 4)
    expect(starts[1].resumed_from_step).toBeLessThan(16);

    // The same train.json trained straight by one process (step_batches 2: both batches of a step on it): the same loss
    // at every step, within float reduction order.
    const config = JSON.parse(readFileSync(path.join(runs, runId!, 'train.json'), 'utf8'));
    expect(config.step_batches).toBe(2);
    const straightDir = path.join(straight, runId!);
    mkdirSync(straightDir, { recursive: true });
    writeFileSync(path.join(straightDir, 'train.json'), JSON.stringify({ ...config, output_dir: straightDir, predictions_dir: path.join(straightDir, 'predictions') }));
    execFileSync(shardedPy!, ['-m', 'bsft_trainer', 'train', '--config', path.join(straightDir, 'train.json')], { stdio: ['ignore', 'ignore', 'pipe'], timeout: limit(300_000) });
    const losses = (dir: string) => new Map(readFileSync(path.join(dir, runId!, 'metrics.jsonl'), 'utf8').trim().split('\n')
      .map((l) => JSON.parse(l)).filter((r) => r.kind === 'step').map((r) => [r.step as number, r.loss as number]));
    const [a, b] = [losses(runs), losses(straight)];
    expect([...a.keys()].sort((x, y) => x - y)).toEqual(Array.from({ length: 16 }, (_, i) => i + 1));
    for (const [step, loss] of b) expect(Math.abs(a.get(step)! - loss) / loss, `step ${step}`).toBeLessThan(1e-4);
  }, limit(600_000));
});
