import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readGang } from '../src/queue/gang-record.js';
import type { RunJobData } from '../src/queue/job-data.js';
import { keys, nodeJobId } from '../src/queue/names.js';
import { formGang, GangNode, gathering, joinGang, joinRecord, pledge, type GangProblem } from '../src/worker/gang.js';
import { GpuPool } from '../src/worker/gpu-pool.js';
import { stepBatches, worldGpus } from '../src/recipe/gpu-counts.js';
import { checkFits, planRow } from '../src/recipe/memory-plan.js';
import { resolveRecipe } from '../src/recipe/resolve.js';
import { trainerConfig } from '../src/run/trainer-config.js';
import { bsft, FIXTURES, ROOT } from './helpers/cli.js';
import { queueEnv, REDIS_URL, startWorkerProc, stop, submitRun, trainStep, waitForRun, withRunQueues, type WorkerProc } from './helpers/queue.js';
import { pythonThatRuns } from './helpers/python.js';
import { limit } from './helpers/time-scale.js';

const shardedPy = pythonThatRuns('from torch.distributed.fsdp import fully_shard');
const TOY = path.join(FIXTURES, 'recipes', 'toy-run.yaml');

describe('resources.nodes: a run across machines in the recipe', () => {
  it('trains grad_accum x gpus x nodes batches a step on gpus x nodes ranks; refused with a hub store, an elastic range or no GPUs', async () => {
    const toy = (set: string[]) => resolveRecipe(TOY, { policy: { workspace: ROOT, allow: [] }, set });
    const r = await toy(['resources.gpus=2', 'resources.nodes=3', 'train.grad_accum=2']);
    expect(worldGpus(r)).toBe(6);
    expect(stepBatches(r)).toBe(12);
    const config = trainerConfig(r, '/tmp/x');
    expect(config.step_batches).toBe(12);
    const refused = async (set: string[]) => {
      try {
        await toy(['resources.nodes=2', 'resources.gpus=1', ...set]);
        return '';
      } catch (e) {
        return (e as Error).message;
      }
    };
    expect(await refused([])).toBe('');
    expect(await refused(['store.kind=hub', 'store.repo=me/runs'])).toMatch(/resources\.nodes: a run across machines needs a folder all of them share: store\.kind local/);
    expect(await refused(['resources.gpus=4', 'resources.min_gpus=2'])).toMatch(/resources\.min_gpus: an elastic run stays on one machine/);
    expect(await refused(['resources.gpus=0'])).toMatch(/resources\.nodes: a run across machines trains on GPUs/);
  });

  it('at scale: full fine-tuning of Qwen2.5-32B fits 2 machines of 8 GPUs of 80 GiB, not one; its train.json plans for 16 ranks', () => {
    const paper = (set: string[]) => resolveRecipe(path.join(ROOT, 'recipes', 'paper', 'behaviorsft-full.yaml'),
      { policy: { workspace: ROOT, allow: [] }, set: ['model.name_or_path=Qwen/Qwen2.5-32B-Instruct', 'resources.gpu_memory_gb=80', ...set], allowMissing: true });
    const one = paper(['resources.gpus=8']);
    expect(() => checkFits(one)).toThrow(/resources\.gpus: .*on 8 GPU\(s\).*set resources\.gpus: 16/);
    const two = paper(['resources.gpus=8', 'resources.nodes=2']);
    expect(() => checkFits(two)).not.toThrow();
    const config = trainerConfig(two, '/tmp/run');
    expect(config.step_batches).toBe(16 * two.train.grad_accum);
    expect(config.memory_plan?.gpus).toBe(16); // what the trainer's ranks compare with their world size
    expect(planRow(two)[1]).toBe('16 (2 machines x 8)');
    // Short of that, the refusal counts every machine's GPUs.
    expect(() => checkFits(paper(['resources.gpus=4', 'resources.nodes=2']))).toThrow(/on 8 GPU\(s\).*give it 16 GPUs in all \(resources\.gpus x resources\.nodes\)/);
  });
});

describe('gathering a gang (gang.ts, real Redis)', () => {
  let redis: Redis;
  const oldPrefix = process.env.BSFT_QUEUE_PREFIX;
  beforeEach(() => {
    process.env.BSFT_QUEUE_PREFIX = queueEnv().BSFT_QUEUE_PREFIX;
    redis = new Redis(REDIS_URL, { maxRetriesPerRequest: 3 });
  });
  afterEach(async () => {
    await redis.quit();
    process.env.BSFT_QUEUE_PREFIX = oldPrefix;
  });

  async function runData(name: string): Promise<RunJobData> {
    const recipe = await resolveRecipe(TOY, { policy: { workspace: ROOT, allow: [] }, set: [`name=${name}`, 'resources.gpus=1', 'resources.nodes=2'] });
    return { run_id: recipe.run_id, recipe, run_dir: path.join(recipe.runs_dir, recipe.run_id), submitted_at: new Date().toISOString() };
  }
  const form = (data: RunJobData, epoch: number, formMs: number) => formGang({ redis, data, epoch, worker: 'w0', aliveMs: 1000, formMs, stopped: async () => undefined, log: async () => undefined });
  const memberJob = (id: string) => withRunQueues({ REDIS_URL, BSFT_QUEUE_PREFIX: process.env.BSFT_QUEUE_PREFIX! }, (q) => q.queues.train.getJob(id).then((j) => j?.data));

  it('machine 0 adds a member job per other machine; both get torchrun options for one rendezvous; a stale member job does nothing', async () => {
    const data = await runData('gather');
    const forming = form(data, 7, 30_000);
    await expect.poll(() => memberJob(nodeJobId(data.run_id, 7, 1)), { timeout: limit(5000) }).toMatchObject({ node: 1, gang_epoch: 7, run_id: data.run_id });
    expect(await joinGang({ redis, data: { ...data, node: 1, gang_epoch: 6 }, worker: 'w-old', aliveMs: 1000, stopped: async () => false })).toBeUndefined();
    const member = await joinGang({ redis, data: { ...data, node: 1, gang_epoch: 7 }, worker: 'w1', aliveMs: 1000, stopped: async () => false });
    const leader = await forming;
    if (!member || 'wait' in leader) throw new Error(`not gathered: ${JSON.stringify(leader)}`);
    const endpoint = /--rdzv-endpoint (\S+)/.exec(leader.args)![1];
    expect(leader.args).toBe(`--nnodes 2 --rdzv-backend c10d --rdzv-endpoint ${endpoint} --rdzv-id ${data.run_id}-g7 --rdzv-conf is_host=1`);
    expect(member.args).toBe(leader.args.replace('is_host=1', 'is_host=0'));
    expect(await readGang(redis, data.run_id)).toMatchObject({ epoch: 7, nodes: 2, state: 'running', joined: { 0: 'w0', 1: 'w1' } });
    expect(await redis.exists(keys.gangForming())).toBe(0); // the next run across machines may gather
  });

  it('a machine is never seen joined without its alive key: machine 0 does not call one that just joined lost', async () => {
    const data = await runData('join-window');
    const forming = form(data, 3, 30_000);
    await expect.poll(async () => (await readGang(redis, data.run_id))?.state, { timeout: limit(5000) }).toBe('forming');
    expect(await redis.get(keys.gangAlive(data.run_id, 3, 0))).toBe('w0'); // machine 0's key came with its record
    // Machine 1's worker joins, then stalls (a loaded machine) before its first renewal: its key is there already.
    expect(await joinRecord(redis, data.run_id, 3, 1, 'w1', 1000)).toBe(true);
    expect(await redis.get(keys.gangAlive(data.run_id, 3, 1))).toBe('w1');
    const leader = await forming;
    expect(leader).toMatchObject({ args: expect.stringContaining('--nnodes 2') }); // gathered, not dissolved as "lost"
    if ('gang' in leader) await leader.gang.end('ended');
  });

  it('gangs gather one at a time; one that does not gather in time dissolves, removing its member jobs', async () => {
    const [a, b] = [await runData('first'), await runData('second')];
    const first = form(a, 1, 1500);
    await expect.poll(() => redis.get(keys.gangForming()), { timeout: limit(5000) }).toBe(a.run_id);
    expect(await form(b, 1, 1500)).toEqual({ wait: `its machines: another run across machines (${a.run_id}) is gathering its own` });
    expect(await first).toEqual({ wait: '1 more machine(s) with 1 free GPU(s): 1 of 2 joined within 2 s' });
    expect(await memberJob(nodeJobId(a.run_id, 1, 1))).toBeUndefined();
    expect(await readGang(redis, a.run_id)).toMatchObject({ state: 'dissolved', why: '1 of 2 machines joined within 2 s' });
    expect(await redis.exists(keys.gangForming())).toBe(0);
    // A machine 0 that died while gathering (its slot no longer renewed) holds it up one lock duration at most.
    await redis.set(keys.gangForming(), 'dead-run-00000000', 'PX', 1000);
    expect(await form(b, 2, 100)).toEqual({ wait: 'its machines: another run across machines (dead-run-00000000) is gathering its own' });
    await new Promise((r) => setTimeout(r, 1100));
    expect(await form(b, 3, 100)).toMatchObject({ wait: expect.stringMatching(/^1 more machine\(s\)/) });
    // A member that comes after its gang dissolved does nothing.
    expect(await joinGang({ redis, data: { ...a, node: 1, gang_epoch: 1 }, worker: 'late', aliveMs: 1000, stopped: async () => false })).toBeUndefined();
  });

  it('while a gang gathers, as many workers as it still needs pledge to hold GPUs back for it, and a pledged pool does', async () => {
    const data = await runData('pledge');
    await redis.set(keys.gangForming(), data.run_id);
    await redis.hset(keys.gang(data.run_id), { epoch: '5', nodes: '3', gpus: '2', endpoint: 'h:1', state: 'forming', 'joined:0': 'w0' });
    const g = await gathering(redis);
    expect(g).toEqual({ runId: data.run_id, epoch: 5, gpus: 2, missing: 2, workers: ['w0'] });
    expect([await pledge(redis, g!, 'w1', 5000), await pledge(redis, g!, 'w2', 5000), await pledge(redis, g!, 'w3', 5000), await pledge(redis, g!, 'w1', 5000)])
      .toEqual([true, true, false, true]);
    await redis.hset(keys.gang(data.run_id), { state: 'running' });
    expect(await gathering(redis)).toBeUndefined();
    // A pledged worker's pool: a 1-GPU run may not take a GPU that would leave fewer than 2 free for the gang.
    const pool = new GpuPool(['0', '1', '2'], 60_000);
    pool.reserve(data.run_id, 2, 1000, 0);
    expect(pool.take('small', 1, 10)).toMatchObject({ gpus: ['0'] });
    expect('wait' in pool.take('small-2', 1, 10)).toBe(true);
    expect(pool.take(data.run_id, 2, 10)).toEqual({ gpus: ['1', '2'] }); // the gang's machine, when it comes
    // It never replaces another job's reservation, and lapses unless renewed.
    const other = new GpuPool(['0', '1'], 60_000);
    other.take('a', 1, 0);
    expect('wait' in other.take('big', 2, 0)).toBe(true);
    other.reserve('gang', 2, 1000, 0);
    expect(other.reserved(0)?.jobId).toBe('big');
    const lapsing = new GpuPool(['0', '1'], 60_000);
    lapsing.reserve('gang', 2, 1000, 0);
    expect(lapsing.reserved(500)?.jobId).toBe('gang');
    expect(lapsing.reserved(1500)).toBeUndefined();
  });

  it('a machine whose key lapses without a report is lost to the others, which mark the gang broken; a reported end is not a loss', async () => {
    const data = await runData('lapse');
    await redis.hset(keys.gang(data.run_id), { epoch: '3', nodes: '3', endpoint: 'h:1', state: 'running', 'joined:0': 'w0', 'joined:1': 'w1', 'joined:2': 'w2' });
    const node = (n: number) => new GangNode({ redis, runId: data.run_id, epoch: 3, node: n, worker: `w${n}`, aliveMs: 600 });
    const [n0, n1, n2] = [node(0), node(1), node(2)];
    await Promise.all([n0.beat(), n1.beat(), n2.beat()]);
    await n2.report({ exitCode: 0, outcome: 'done' }); // ended, reported: not lost
    const lost: GangProblem[] = [];
    n0.start();
    const unwatch = n0.watch((why) => lost.push(why));
    // n1 stops renewing (its worker was killed): within its time to live, machine 0 calls it lost.
    await expect.poll(() => lost, { timeout: limit(5000) }).toEqual([{ why: 'machine 1 of the run (worker w1) was lost: its worker stopped renewing its place in the gang for 0.6 s', cause: 'lost' }]);
    unwatch();
    expect(n0.current).toBe(false);
    expect(await readGang(redis, data.run_id)).toMatchObject({ state: 'broken', ...lost[0] });
    expect(await n1.problem()).toEqual(lost[0]); // a machine that comes back learns the gang broke
  });

  it('a machine whose trainer failed stops the others; one that stopped after the common checkpoint (75) does not', async () => {
    const data = await runData('failed');
    await redis.hset(keys.gang(data.run_id), { epoch: '4', nodes: '3', endpoint: 'h:1', state: 'running', 'joined:0': 'w0', 'joined:1': 'w1', 'joined:2': 'w2' });
    const node = (n: number) => new GangNode({ redis, runId: data.run_id, epoch: 4, node: n, worker: `w${n}`, aliveMs: 5000 });
    const [n0, n1, n2] = [node(0), node(1), node(2)];
    await Promise.all([n0.beat(), n1.beat(), n2.beat()]);
    await n1.report({ exitCode: 75, outcome: 'preempted' });
    expect(await n0.problem()).toBeUndefined();
    await n2.report({ exitCode: 2, outcome: 'invalid', error: { event: 'error', kind: 'data', message: 'train.jsonl:3 bad' } });
    expect(await n0.problem()).toEqual({ why: 'machine 2 of the run (worker w2) ended: data: train.jsonl:3 bad', cause: 'failed' });
  });
});

describe('a run across machines among smaller runs (fixture trainers, real Redis)', () => {
  let workers: WorkerProc[] = [];
  afterEach(async () => {
    await Promise.all(workers.map((w) => stop(w, 'SIGKILL')));
    workers = [];
  });

  it('a machine whose trainer fails stops the other: a crash is a retryable failure of the run (it uses an attempt), a config error fails it at once', async () => {
    for (const [code, attempts] of [[1, 2], [2, 1]] as const) {
      // The fixture's trainer on the machine other than the first exits `code` at step 3; the first runs on unharmed.
      const env = queueEnv({ FIXTURE_STEP_MS: '100', FIXTURE_MEMBER_FAIL: `3:${code}`, BSFT_GPU_WAIT_MS: '200', BSFT_NODE_ADDR: '127.0.0.1' });
      const both = ['machine-a', 'machine-b'].map((name) => startWorkerProc('ok', env, ['--gpus', '0', '--name', name, '--queues', 'build,train,score']));
      workers.push(...both);
      await Promise.all(both.map((w) => w.ready));
      const run = await submitRun(env, ['resources.gpus=1', 'resources.nodes=2', 'train.max_steps=200', `train.seed=${code}`]);
      const failed = await waitForRun(env, run.runId, (v) => ['completed', 'failed'].includes(v.state), 120_000);
      expect(failed.state).toBe('failed');
      expect(failed.attempts).toBe(attempts);
      expect(failed.failedReason).toMatch(code === 2
        ? /config error: machine 1 \(worker machine-[ab]\): config: fixture: bad setting on this machine/
        : /trainer train failed .*machine 1 of the run \(worker machine-[ab]\) ended: internal: fixture: crashing on this machine/);
      expect(trainStep(failed)).toBeLessThan(200); // machine 0's trainer was stopped, it did not run to the end
      await Promise.all(both.map((w) => stop(w, 'SIGKILL')));
    }
  }, limit(180_000));

  it('a gathering gang holds GPUs back on as many workers as it still needs: a smaller run submitted after it does not take the GPU left free', async () => {
    const log = path.join(mkdtempSync(path.join(tmpdir(), 'bsft-gang-pool-')), 'trainers.log');
    writeFileSync(log, '');
    const env = queueEnv({ FIXTURE_LOG: log, FIXTURE_STEP_MS: '100', BSFT_GPU_WAIT_MS: '200', BSFT_NODE_ADDR: '127.0.0.1' });
    const b = startWorkerProc('ok', env, ['--gpus', '0,1', '--name', 'machine-b', '--queues', 'build,train,score']);
    workers.push(b);
    await b.ready;
    // machine-b: one GPU busy with a 1-GPU run for a while, one free.
    const first = await submitRun(env, ['resources.gpus=1', 'train.max_steps=60', 'train.seed=1']);
    await waitForRun(env, first.runId, (v) => v.state === 'training' && trainStep(v) >= 1, 60_000);
    const a = startWorkerProc('ok', env, ['--gpus', '0,1', '--name', 'machine-a', '--queues', 'build,train,score']);
    workers.push(a);
    await a.ready;
    const gang = await submitRun(env, ['resources.gpus=2', 'resources.nodes=2', 'train.max_steps=20', 'train.seed=2']);
    await waitForRun(env, gang.runId, (v) => v.waitingFor?.startsWith('its machines: 1 of 2 joined') === true, 60_000);
    const later = await submitRun(env, ['resources.gpus=1', 'train.max_steps=5', 'train.seed=3']);
    for (const r of [first, gang, later]) expect((await waitForRun(env, r.runId, (v) => ['completed', 'failed'].includes(v.state), 120_000)).state).toBe('completed');

    const lines = readFileSync(log, 'utf8').trim().split('\n').map((l) => l.split(' '));
    const startOf = (runId: string, what: string) => lines.filter(([, , run, w]) => run === runId && w === what).map(([t, pid, , , x, y]) => ({ t: Number(t), pid, x, y }));
    const gangGpus = startOf(gang.runId, 'gpus');
    expect(gangGpus.map((g) => [g.x, g.y])).toEqual([['0,1', '2'], ['0,1', '2']]); // two machines of 2 GPUs each
    expect(startOf(gang.runId, 'machine').map((m) => m.x).sort()).toEqual(['first', 'member']);
    const firstDone = startOf(first.runId, 'done')[0]!.t;
    const laterStart = startOf(later.runId, 'gpus')[0]!.t;
    // machine-b pledged its GPUs to the gathering gang: the member waited there until the first run freed its GPU; the
    // later 1-GPU run, which fit the free GPU all along, started only after the gang did (fails without the hold: it
    // takes machine-b's free GPU at once, and the gang waits for it too).
    expect(Math.max(...gangGpus.map((g) => g.t))).toBeGreaterThanOrEqual(firstDone);
    // On failure: what each train job waited for, on which worker (how the smaller run got in).
    const waits = [a, b].flatMap((w) => w.stderr.filter((l) => l.includes('"train job waits"')))
      .map((l) => JSON.parse(l) as { time: number; worker: string; job: string; waiting_for: string }).sort((x, y) => x.time - y.time)
      .map((w) => `${w.time} ${w.worker} ${w.job}: ${w.waiting_for}`).join('\n');
    expect(laterStart, waits).toBeGreaterThan(Math.max(...gangGpus.map((g) => g.t)));
  }, limit(180_000));
});

/** Each step's loss in a run folder's metrics.jsonl (rank 0's; a step trained again after a resume: its last record). */
function losses(runDir: string): Map<number, number> {
  return new Map(readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n')
    .map((l) => JSON.parse(l) as { kind: string; step: number; loss: number }).filter((r) => r.kind === 'step').map((r) => [r.step, r.loss]));
}

/** The run's train.json trained straight by one process (step_batches: every batch of a step on it): its folder. */
function straightRun(runDir: string): string {
  const config = JSON.parse(readFileSync(path.join(runDir, 'train.json'), 'utf8'));
  const dir = path.join(mkdtempSync(path.join(tmpdir(), 'bsft-gang-straight-')), path.basename(runDir));
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'train.json'), JSON.stringify({ ...config, output_dir: dir, predictions_dir: path.join(dir, 'predictions') }));
  execFileSync(shardedPy!, ['-m', 'bsft_trainer', 'train', '--config', path.join(dir, 'train.json')], { stdio: ['ignore', 'ignore', 'pipe'], timeout: limit(300_000) });
  return dir;
}

/** The relative distance between two runs' final weights (the toy model's, fp32): |a - b| / |a| over the whole model. */
function weightDistance(a: string, b: string): number {
  const code = 'import sys, torch\n' +
    'x, y = (torch.load(f"{d}/final/toy_model.pt", map_location="cpu") for d in sys.argv[1:])\n' +
    'assert x.keys() == y.keys()\n' +
    'print(sum(float((y[k].double() - x[k].double()).norm()) ** 2 for k in x) ** 0.5 / sum(float(x[k].double().norm()) ** 2 for k in x) ** 0.5)';
  return Number(execFileSync(shardedPy!, ['-c', code, a, b], { encoding: 'utf8', timeout: limit(60_000) }).trim());
}

/**
 * The steps of a run's metrics.jsonl in the order written. Each attempt drops the records past the checkpoint it resumed
 * from: one step after another, 1 .. N, means no two gangs trained (and wrote) at once.
 */
function stepsWritten(runDir: string): number[] {
  return readFileSync(path.join(runDir, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { kind: string; step: number })
    .filter((r) => r.kind === 'step').map((r) => r.step);
}

/** The run wrote each of its `steps` once, in order, with the losses of its train.json trained straight by one process. */
function expectStraightRun(runDir: string, steps: number): void {
  expect(stepsWritten(runDir)).toEqual(Array.from({ length: steps }, (_, i) => i + 1));
  const straight = straightRun(runDir);
  const [got, want] = [losses(runDir), losses(straight)];
  for (const [step, loss] of want) expect(Math.abs(got.get(step)! - loss) / loss, `step ${step}`).toBeLessThan(1e-4);
  // The final weights too (rank 0 wrote them on whichever machine it was): the same sums in another order.
  const distance = weightDistance(straight, runDir);
  console.log(`final weights: ${distance.toExponential(2)} of their norm from the straight run's`);
  expect(distance).toBeLessThan(1e-5);
}

describe.skipIf(!shardedPy)('a run across two machines through the queue: two workers as two machines (one gloo rank each)', () => {
  let workers: WorkerProc[] = [];
  afterEach(async () => {
    await Promise.all(workers.map((w) => stop(w, 'SIGKILL')));
    workers = [];
  });

  /** Workers as machines: each its own work folder (nothing shared but Redis and the store), one GPU each. */
  const byName = new Map<string, WorkerProc>();
  function machines(env: Record<string, string>, names: string[]): WorkerProc[] {
    const started = names.map((name) => startWorkerProc('', env, ['--gpus', '0', '--name', name, '--workdir', mkdtempSync(path.join(tmpdir(), `bsft-${name}-`))]));
    names.forEach((name, i) => byName.set(name, started[i]!));
    workers.push(...started);
    return started;
  }

  async function submit(env: Record<string, string>, sets: string[]): Promise<{ runId: string; runs: string }> {
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-gang-'));
    const all = ['resources.gpus=1', 'resources.nodes=2', 'eval.splits=[val]', ...sets].flatMap((x) => ['--set', x]);
    const submitted = await bsft(['submit', TOY, '--allow', runs, '--set', `store.path=${runs}`, ...all], { env });
    const runId = /submitted run (\S+)/.exec(submitted.stdout)?.[1];
    expect(runId, submitted.stdout + submitted.stderr).toBeDefined();
    return { runId: runId!, runs };
  }

  const env = () => queueEnv({ BSFT_PYTHON: shardedPy!, BSFT_GPU_WAIT_MS: '200', BSFT_NODE_ADDR: '127.0.0.1' });

  /** A 12-step run submitted to three machines (two train, one spare), once it trains past step 3. */
  async function trainingOnThree(e: Record<string, string>, checkpointEvery: number) {
    const { runId, runs } = await submit(e, ['train.max_steps=12', `train.checkpoint_every=${checkpointEvery}`]);
    const all = machines(e, ['machine-a', 'machine-b', 'machine-c']);
    await Promise.all(all.map((w) => w.ready));
    const training = await waitForRun(e, runId, (v) => v.state === 'training' && trainStep(v) >= 3, 240_000);
    return { runId, runs, training };
  }

  /** Waits until the run ended, expects it completed, and returns its job log. */
  async function completedLogs(e: Record<string, string>, runId: string): Promise<string> {
    const done = await waitForRun(e, runId, (v) => ['completed', 'failed'].includes(v.state), 300_000);
    expect(done.state, done.failedReason).toBe('completed');
    return (await bsft(['logs', runId], { env: e })).stdout;
  }

  /** The step each trainer start of the 12-step run on two machines resumed from, in order. */
  const resumedFrom = (logs: string) => [...logs.matchAll(/"event":"start","total_steps":12,"resumed_from_step":(\d+),"world_size":2/g)].map((m) => Number(m[1]));

  it('starts only when both machines joined, shows both, and trains the losses of one process over the same global batch', async () => {
    const e = env();
    const { runId, runs } = await submit(e, ['train.max_steps=12', 'train.checkpoint_every=4']);
    const [a] = machines(e, ['machine-a']);
    await a!.ready;
    // One machine alone: the gang gathers and waits; nothing trains.
    await new Promise((r) => setTimeout(r, limit(3000)));
    const alone = await waitForRun(e, runId, (v) => v.waitingFor !== undefined, 60_000);
    expect(alone.state).toBe('waiting');
    expect(alone.waitingFor).toBe('its machines: 1 of 2 joined (machine-a)');
    expect(trainStep(alone)).toBe(0);
    const [b] = machines(e, ['machine-b']);
    await b!.ready;
    const training = await waitForRun(e, runId, (v) => v.state === 'training' && trainStep(v) >= 1, 180_000);
    expect(training.nodes?.map((n) => [n.node, n.alive])).toEqual([[0, true], [1, true]]);
    expect(training.worker?.split(' + ').sort()).toEqual(['machine-a', 'machine-b']);
    const logs = await completedLogs(e, runId);
    expect(logs).toMatch(/"event":"node-joined","epoch":\d+,"node":1,"worker":"machine-[ab]"/);
    expect(logs).toMatch(/"event":"start","total_steps":12,"resumed_from_step":0,"world_size":2/);
    const config = JSON.parse(readFileSync(path.join(runs, runId, 'train.json'), 'utf8'));
    expect(config.step_batches).toBe(2);
    expectStraightRun(path.join(runs, runId), 12);
  }, limit(600_000));

  it('kill -9 of a machine\'s worker mid-run, then of machine 0\'s: each time the other stops, the run gathers again; it finishes with the straight run\'s losses', async () => {
    const e = env();
    const { runId, runs, training } = await trainingOnThree(e, 2);
    const names = training.nodes!.map((n) => n.worker);
    // The machine that is not the run's own job (node 1): machine 0 must notice and stop.
    const victim = byName.get(names[1]!)!;
    const killedAt = Date.now();
    victim.proc.kill('SIGKILL');
    const back = await waitForRun(e, runId, (v) => v.state === 'training' && (v.nodes ?? []).length === 2 && !v.worker!.includes(names[1]!) && trainStep(v) >= 1, 240_000);
    console.log(`machine killed at step ${trainStep(training)}; the run trains again on ${back.worker} after ${((Date.now() - killedAt) / 1000).toFixed(1)} s`);
    // Then machine 0's worker (the run's own job): its job is found stalled, the other machine stops; a fresh worker
    // joins the one left.
    const again = await waitForRun(e, runId, (v) => v.state === 'training' && trainStep(v) >= 8, 240_000);
    const leader = byName.get(again.nodes![0]!.worker)!;
    leader.proc.kill('SIGKILL');
    machines(e, ['machine-d']);
    const third = await waitForRun(e, runId, (v) => v.state === 'training' && (v.nodes ?? []).length === 2 && v.worker!.includes('machine-d') && trainStep(v) >= 1, 240_000);
    console.log(`machine 0 killed at step ${trainStep(again)}; the run trains again on ${third.worker}`);
    const logs = await completedLogs(e, runId);
    expect(logs).toMatch(/"event":"requeued","reason":"node lost"/);
    const starts = resumedFrom(logs);
    expect(starts.length).toBe(3);
    expect(starts[1]).toBeGreaterThan(0);
    expect(starts[2]).toBeGreaterThan(starts[1]!);
    expectStraightRun(path.join(runs, runId), 12);
  }, limit(600_000));

  it('a machine\'s worker shut down (a preemption notice): every machine stops after one common checkpoint, the run resumes on the machines that gather next', async () => {
    const e = env();
    const { runId, runs, training } = await trainingOnThree(e, 100);
    const member = training.nodes![1]!.worker;
    await stop(byName.get(member)!); // SIGTERM to that worker alone
    const logs = await completedLogs(e, runId);
    // Machine 0's ranks were never signalled: they stopped at the step the other machine's ranks asked for, after
    // the checkpoint of that step (checkpoint_every 100: the only one before the end), and the job went back to waiting.
    expect(logs).toMatch(/"event":"requeued","reason":"preempted"/);
    const starts = resumedFrom(logs);
    expect(starts.length).toBe(2);
    expect(starts[1]).toBeGreaterThanOrEqual(3);
    expectStraightRun(path.join(runs, runId), 12);
  }, limit(600_000));

  it('bsft cancel stops the trainers of both machines and both jobs end', async () => {
    const e = env();
    const { runId } = await submit(e, ['train.max_steps=400', 'train.checkpoint_every=100']);
    const both = machines(e, ['machine-a', 'machine-b']);
    await Promise.all(both.map((w) => w.ready));
    await waitForRun(e, runId, (v) => v.state === 'training' && trainStep(v) >= 2, 180_000);
    const res = await bsft(['cancel', runId], { env: e });
    expect(res.stdout).toMatch(/cancel sent for run .* \(2 worker\(s\) listening\)/);
    const ended = await waitForRun(e, runId, (v) => ['cancelled', 'failed', 'completed'].includes(v.state), 120_000);
    expect(ended.state).toBe('cancelled');
    // Both workers stopped their trainer for the cancel, and the member job ended (it never fails or retries).
    for (const w of both) await expect.poll(() => w.stderr.join('\n'), { timeout: limit(30_000) }).toMatch(/cancel requested: stopping the trainer/);
    const memberStates = () => withRunQueues(e, async (q) => {
      const jobs = await q.queues.train.getJobs(['completed', 'failed', 'active', 'waiting', 'prioritized', 'delayed']);
      return Promise.all(jobs.filter((j) => j.id?.startsWith(`${runId}@`)).map((j) => j.getState()));
    });
    await expect.poll(memberStates, { timeout: limit(30_000) }).toEqual(['completed']);
    expect((await withRunQueues(e, (q) => q.runIds())).filter((id) => id.includes('@'))).toEqual([]);
  }, limit(300_000));
});
