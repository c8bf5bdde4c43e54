import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Queue } from 'bullmq';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { bsft, ROOT } from './helpers/cli.js';
import { queueEnv, startWorkerProc, stop, submitRun, trainStep, testRecipeArgs, waitForRun, withRunQueues, type WorkerProc } from './helpers/queue.js';
import { freePort, OwnRedis } from './helpers/redis-server.js';
import { limit } from './helpers/time-scale.js';

// Fault-safe runs (issue 13) with the fixture trainers, which implement the lease and fencing like bsft_trainer
// (the real trainer's lease, fencing and atomic base/ are tested in trainer-python/tests/test_faults.py).

const workers: WorkerProc[] = [];
const frozen: number[] = [];
afterEach(async () => {
  for (const pid of frozen.splice(0)) {
    try {
      process.kill(pid, 'SIGCONT');
    } catch {
      // already gone
    }
  }
  await Promise.all(workers.splice(0).map((w) => stop(w, 'SIGKILL')));
});

function worker(...args: Parameters<typeof startWorkerProc>): WorkerProc {
  const w = startWorkerProc(...args);
  workers.push(w);
  return w;
}

interface Record_ { t: number; pid: string; run: string; what: string; n: number }
function records(logFile: string): Record_[] {
  return readFileSync(logFile, 'utf8').trim().split('\n').filter(Boolean).map((line) => {
    const [t, pid, run, what, n] = line.split(' ');
    return { t: Number(t), pid: pid!, run: run!, what: what!, n: Number(n) };
  });
}

function trainerLog(extra: Record<string, string> = {}) {
  const log = path.join(mkdtempSync(path.join(tmpdir(), 'bsft-faults-')), 'trainers.log');
  writeFileSync(log, '');
  return { log, env: queueEnv({ FIXTURE_LOG: log, ...extra }) };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the lease: a trainer runs only while its worker holds the job', () => {
  it('a frozen worker (SIGSTOP) loses its trainer within the lease, before another worker takes the job', async () => {
    const { log, env } = trainerLog({ FIXTURE_STEP_MS: '100' });
    const { runId } = await submitRun(env, ['train.max_steps=40', 'train.checkpoint_every=4']);
    const a = worker('ok', env, ['--name', 'worker-a']);
    const b = worker('ok', env, ['--name', 'worker-b']);
    await Promise.all([a.ready, b.ready]);
    const training = await waitForRun(env, runId, (v) => v.state === 'training' && trainStep(v) >= 6);
    const victim = training.worker === 'worker-a' ? a : b;
    const frozenAt = Date.now();
    victim.proc.kill('SIGSTOP');
    frozen.push(victim.proc.pid!);
    const done = await waitForRun(env, runId, (v) => ['completed', 'failed'].includes(v.state), 90_000);
    expect(done.state).toBe('completed');

    const mine = records(log).filter((r) => r.run === runId);
    const pids = [...new Set(mine.map((r) => r.pid))];
    expect(pids.length).toBe(2);
    const [first, second] = pids.map((p) => mine.filter((r) => r.pid === p));
    const firstEnd = Math.max(...first!.map((r) => r.t));
    const secondBegin = Math.min(...second!.map((r) => r.t));
    // lease = 0.35 x the 2 s lock: the trainer stopped within it (plus one step), never overlapping the next one
    expect(firstEnd - frozenAt).toBeLessThan(700 + 500);
    expect(firstEnd).toBeLessThan(secondBegin);
    const steps = mine.filter((r) => r.what === 'step').map((r) => r.n);
    expect(new Set(steps)).toEqual(new Set(Array.from({ length: 40 }, (_, i) => i + 1)));
  });

  it('a frozen machine (worker and trainer stopped, then woken): the stale trainer publishes nothing; the newest epoch wins', async () => {
    const { log, env } = trainerLog({ FIXTURE_STEP_MS: '100' });
    const { runId, runs } = await submitRun(env, ['train.max_steps=40', 'train.checkpoint_every=2', 'train.keep_checkpoints=30']);
    const a = worker('ok', env, ['--name', 'worker-a']);
    const b = worker('ok', env, ['--name', 'worker-b']);
    await Promise.all([a.ready, b.ready]);
    const training = await waitForRun(env, runId, (v) => v.state === 'training' && trainStep(v) >= 5);
    const victim = training.worker === 'worker-a' ? a : b;
    const oldTrainer = Number(records(log).filter((r) => r.run === runId).at(-1)!.pid);
    for (const pid of [oldTrainer, victim.proc.pid!]) {
      process.kill(pid, 'SIGSTOP');
      frozen.push(pid);
    }
    // The other worker takes the job and trains (epoch 2); then the frozen machine wakes up mid-run.
    const survivor = victim === a ? 'worker-b' : 'worker-a';
    await waitForRun(env, runId, (v) => v.state === 'training' && v.worker === survivor && trainStep(v) >= 12, 60_000);
    const wokeAt = Date.now();
    for (const pid of [oldTrainer, victim.proc.pid!]) process.kill(pid, 'SIGCONT');
    const done = await waitForRun(env, runId, (v) => ['completed', 'failed'].includes(v.state), 90_000);
    expect(done.state).toBe('completed');

    const late = records(log).filter((r) => r.pid === String(oldTrainer) && r.t >= wokeAt);
    expect(late.filter((r) => r.what === 'step').length).toBeLessThanOrEqual(1); // at most the step it was sleeping in
    const runDir = path.join(runs, runId);
    const epochOf = (dir: string) => (JSON.parse(readFileSync(path.join(dir, 'COMPLETE'), 'utf8')) as { epoch: number }).epoch;
    expect(epochOf(path.join(runDir, 'final'))).toBe(2);
    const ckpts = readdirSync(path.join(runDir, 'checkpoints')).filter((n) => /^step-\d+$/.test(n));
    // checkpoints after the resume point are all the new attempt's
    const resumedFrom = Math.min(...records(log).filter((r) => r.run === runId && r.pid !== String(oldTrainer) && r.what === 'begin').map((r) => r.n));
    for (const c of ckpts) if (Number(c.slice(5)) > resumedFrom) expect(epochOf(path.join(runDir, 'checkpoints', c))).toBe(2);
  });
});

describe('no CPU work on the worker event loop', () => {
  it('a large dataset build in the same worker while a train job runs: no lock lost, nothing runs twice', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'bsft-big-'));
    const sample = readFileSync(path.join(ROOT, 'recipes/data/behaviorbench-sample.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: string; case_id: string });
    const big: string[] = [];
    for (let k = 0; k < 2; k++) for (const t of sample) big.push(JSON.stringify({ ...t, id: `${t.id}-x${k}`, case_id: `${t.case_id}-x${k}` }));
    writeFileSync(path.join(dir, 'tasks.jsonl'), `${big.join('\n')}\n`);

    const { log, env } = trainerLog({ FIXTURE_STEP_MS: '100' });
    const a = await submitRun(env, ['train.max_steps=80', 'train.checkpoint_every=10']);
    const w = worker('ok', env);
    await w.ready;
    await waitForRun(env, a.runId, (v) => v.state === 'training' && trainStep(v) >= 3);
    const { args } = testRecipeArgs(['train.max_steps=4']);
    const sub = await bsft(['submit', ...args, '--allow', dir, '--set', `data.tasks=["${path.join(dir, 'tasks.jsonl')}"]`], { env });
    const b = /submitted run (\S+)/.exec(sub.stdout)![1]!;
    const [doneA, doneB] = await Promise.all([
      waitForRun(env, a.runId, (v) => ['completed', 'failed'].includes(v.state), 120_000),
      waitForRun(env, b, (v) => ['completed', 'failed'].includes(v.state), 180_000),
    ]);
    expect([doneA.state, doneB.state]).toEqual(['completed', 'completed']);
    const stderr = w.stderr.join('\n');
    expect(stderr).not.toContain('lost the job lock');
    expect(stderr).not.toContain('job stalled');
    expect(records(log).filter((r) => r.run === a.runId && r.what === 'begin').length).toBe(1);
    const builds = await withRunQueues(env, async (q) => {
      const job = (await q.jobs(b)).build!;
      const trainA = (await q.jobs(a.runId)).train!;
      return { attempts: job.attemptsMade, started: job.processedOn!, trainEnd: trainA.finishedOn! };
    });
    expect(builds.attempts).toBe(1);
    expect(builds.started).toBeLessThan(builds.trainEnd); // the build really ran while A trained
    const logs = (await bsft(['logs', b], { env })).stdout;
    expect(logs.match(/"event":"dataset"/g)?.length).toBe(1);
  });

  it("the build step's up-to-date check (on the worker's loop) never holds the loop as loading the tokenizer does", async () => {
    const { resolveRecipe } = await import('../src/recipe/resolve.js');
    const { buildDataset, datasetUpToDate } = await import('../src/dataset/build.js');
    const { loadChatTokenizer } = await import('../src/dataset/tokenizer.js');
    const { pino } = await import('pino');
    const runs = mkdtempSync(path.join(tmpdir(), 'bsft-uptodate-'));
    const recipe = resolveRecipe(path.join(ROOT, 'recipes', 'smoke.yaml'), { policy: { workspace: ROOT, allow: [runs] } });
    const out = path.join(runs, 'dataset');
    await buildDataset(recipe, out, pino({ level: 'silent' }));
    /** The longest the event loop went without running a 5 ms timer while `work` ran. */
    async function longestHold(work: () => Promise<unknown>): Promise<number> {
      let last = performance.now();
      let longest = 0;
      const timer = setInterval(() => {
        const now = performance.now();
        longest = Math.max(longest, now - last);
        last = now;
      }, 5);
      await new Promise((r) => setTimeout(r, 20));
      last = performance.now();
      await work();
      longest = Math.max(longest, performance.now() - last);
      clearInterval(timer);
      return longest;
    }
    // Loading the tokenizer (what the check did before): one block of the loop, measured here as the baseline.
    const loading = await longestHold(async () => loadChatTokenizer(recipe.tokenizer, ['<|x:a|>', '<|x:b|>']));
    const check = await longestHold(async () => expect(await datasetUpToDate(recipe, out)).toBe(true));
    console.log(`longest hold of the loop: up-to-date check ${check.toFixed(0)} ms; loading the tokenizer ${loading.toFixed(0)} ms`);
    expect(check).toBeLessThan(loading / 3);
  });
});

describe('what a lost lock says', () => {
  it('that the queue runs the job again only while attempts remain', async () => {
    const { lostLockMessage } = await import('../src/worker/queue-host.js');
    expect(lostLockMessage({ id: 'r-1', attemptsMade: 0, opts: { attempts: 3 } }, 7000)).toMatch(/could not confirm its lock on the job for 7\.0 s .*; the queue runs the job again \(attempt 2 of 3\)$/);
    expect(lostLockMessage({ id: 'r-1', attemptsMade: 0, opts: { attempts: 1 } }, 7000)).toMatch(/that was its last attempt \(1 of 1\): the run fails; bsft retry r-1 runs it again$/);
  });
});

/** Live (not zombie) processes whose command line holds `part`. */
function processesWith(part: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(part)) continue;
      if (!/\nState:\tZ/.test(readFileSync(`/proc/${entry}/status`, 'utf8'))) found.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

async function until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(20);
  }
}

/** A task file of `copies` x the 630-task sample (new ids and cases): a build that tokenizes for a while. */
function bigTasks(copies: number): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'bsft-big-'));
  const sample = readFileSync(path.join(ROOT, 'recipes/data/behaviorbench-sample.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { id: string; case_id: string });
  const big: string[] = [];
  for (let k = 0; k < copies; k++) for (const t of sample) big.push(JSON.stringify({ ...t, id: `${t.id}-x${k}`, case_id: `${t.case_id}-x${k}` }));
  writeFileSync(path.join(dir, 'tasks.jsonl'), `${big.join('\n')}\n`);
  return path.join(dir, 'tasks.jsonl');
}

describe('a build or scoring child lives as long as its job', () => {
  const BUILD_CHILD = 'offload-child.js';
  let redis: OwnRedis;
  beforeAll(async () => {
    redis = new OwnRedis(await freePort());
    await redis.start();
  });
  afterAll(async () => {
    await redis.stop();
  });

  it('a worker killed with SIGKILL, bsft cancel and a Redis outage each stop the build child within 2 s; two never run at once', async () => {
    const tasks = bigTasks(60);
    const env = queueEnv({ REDIS_URL: redis.url });
    const submitted = async (name: string) => {
      const { args } = testRecipeArgs(['train.max_steps=4', `name=${name}`]);
      const sub = await bsft(['submit', ...args, '--allow', path.dirname(tasks), '--set', `data.tasks=["${tasks}"]`], { env });
      return /submitted run (\S+)/.exec(sub.stdout)![1]!;
    };
    let most = 0;
    const sampler = setInterval(() => (most = Math.max(most, processesWith(BUILD_CHILD).length)), 100);
    // A build child that has run for 2 s: it is reading or tokenizing the 37,800 tasks (about 15 s of work).
    const building = async () => {
      let child: number | undefined;
      await until(() => (child = processesWith(BUILD_CHILD)[0]) !== undefined, 60_000, 'no build child started');
      await sleep(2000);
      expect(processesWith(BUILD_CHILD)).toEqual([child]);
      return child!;
    };
    const goneWithin = async (pid: number, what: string) => {
      const t0 = Date.now();
      await until(() => !processesWith(BUILD_CHILD).includes(pid), 20_000, `${what}: build child ${pid} still running`);
      console.log(`${what}: the build child was gone ${Date.now() - t0} ms later`);
      expect(Date.now() - t0, what).toBeLessThan(2000);
    };
    try {
      // 1. The worker is killed: its build child dies with it (the kernel, setpriv --pdeathsig).
      const run = await submitted('killed');
      const w1 = worker('ok', env);
      const child1 = await building();
      w1.proc.kill('SIGKILL');
      await goneWithin(child1, 'worker killed');

      // 2. bsft cancel: the child is stopped at once and the run is cancelled.
      const w2 = worker('ok', env);
      const child2 = await building();
      await bsft(['cancel', run], { env });
      await goneWithin(child2, 'bsft cancel');
      const cancelled = await waitForRun(env, run, (v) => v.state === 'cancelled' || v.state === 'failed', 30_000);
      expect(cancelled.state).toBe('cancelled');
      expect(w2.stderr.join('\n')).toContain('cancel requested: stopping the dataset build (nothing of it is kept)'); // not "the trainer"

      // 3. Redis goes away for 6 s: the worker cannot confirm the job is still its own, so the child stops within
      // the lease (0.35 x the 2 s lock, + 1 s); the job runs again once Redis is back, and its build completes.
      const other = await submitted('outage');
      const child3 = await building(); // w2 takes it
      await redis.stop();
      await goneWithin(child3, 'Redis unreachable');
      await sleep(4000);
      await redis.start();
      const done = await waitForRun(env, other, (v) => ['completed', 'failed', 'cancelled'].includes(v.state), 240_000);
      expect(done.state, done.failedReason).toBe('completed');
    } finally {
      clearInterval(sampler);
    }
    expect(most).toBe(1);
  }, limit(420_000));

  it('a frozen worker (SIGSTOP, as a paused VM): its build child stops within the lease, publishing nothing, and another worker builds the run', async () => {
    const tasks = bigTasks(60);
    const env = queueEnv({ REDIS_URL: redis.url });
    const { args, runs } = testRecipeArgs(['train.max_steps=2', 'name=frozen']);
    const sub = await bsft(['submit', ...args, '--allow', path.dirname(tasks), '--set', `data.tasks=["${tasks}"]`], { env });
    const runId = /submitted run (\S+)/.exec(sub.stdout)![1]!;
    const w1 = worker('ok', env);
    let child: number | undefined;
    await until(() => (child = processesWith(BUILD_CHILD)[0]) !== undefined, limit(60_000), 'no build child started');
    await sleep(2000); // reading or tokenizing the 37,800 tasks
    w1.proc.kill('SIGSTOP');
    frozen.push(w1.proc.pid!);
    const t0 = Date.now();
    await until(() => !processesWith(BUILD_CHILD).includes(child!), limit(30_000), `build child ${child} still running with its worker frozen`);
    const took = Date.now() - t0;
    console.log(`worker frozen: its build child stopped ${took} ms later`);
    // The lease is 0.35 x the 2 s lock, and a second of grace: well before another worker may take the job.
    expect(took).toBeLessThan(limit(4000));
    const dataset = path.join(runs, runId, 'dataset');
    expect(existsSync(`${dataset}.tmp-${child}`)).toBe(false); // nothing half-written left
    expect(existsSync(`${dataset}.lock`)).toBe(false);
    expect(existsSync(path.join(dataset, 'manifest.json'))).toBe(false); // nothing published
    const w2 = worker('ok', env);
    const done = await waitForRun(env, runId, (v) => ['completed', 'failed', 'cancelled'].includes(v.state), 240_000);
    expect(done.state, done.failedReason).toBe('completed');
    expect(w2.stderr.join('\n')).not.toMatch(/waiting for the build of|took over/); // no lock of the frozen one's was left
  }, limit(360_000));

  it('keeps its children warm: one child process builds and scores run after run (no process start per job)', async () => {
    const env = queueEnv({ REDIS_URL: redis.url });
    const runs = [(await submitRun(env, ['train.max_steps=2', 'name=warm-a'])).runId, (await submitRun(env, ['train.max_steps=2', 'name=warm-b', 'data.seed=3'])).runId];
    const pids = new Set<number>();
    const sampler = setInterval(() => processesWith(BUILD_CHILD).forEach((p) => pids.add(p)), 20);
    try {
      worker('ok', env);
      for (const id of runs) expect((await waitForRun(env, id, (v) => ['completed', 'failed'].includes(v.state), 120_000)).state).toBe('completed');
    } finally {
      clearInterval(sampler);
    }
    // Two builds and two scorings (four jobs, concurrency 4): at most the pool's children, not one per job.
    expect(pids.size).toBeGreaterThan(0);
    expect(pids.size).toBeLessThanOrEqual(2);
  }, limit(240_000));

  it('two builds of one dataset folder at once: the second waits for the first and finds it up to date', async () => {
    const tasks = bigTasks(4);
    const out = path.join(mkdtempSync(path.join(tmpdir(), 'bsft-two-builds-')), 'dataset');
    const args = ['dataset', 'build', 'recipes/smoke.yaml', '--out', out, '--allow', path.dirname(tasks), '--allow', path.dirname(out),
      '--set', `data.tasks=["${tasks}"]`, '--log-level', 'info'];
    const first = bsft(args);
    await until(() => existsSync(`${out}.lock`), 60_000, 'the first build never took its lock');
    const second = await bsft(args);
    const one = await first;
    expect([one.code, second.code]).toEqual([0, 0]);
    expect(second.stderr).toMatch(/waiting for the build of [^:]+:\d+/);
    expect(second.stderr).toMatch(/dataset up to date/);
    expect(existsSync(`${out}.lock`)).toBe(false);
    expect(readdirSync(path.dirname(out)).sort()).toEqual(['dataset']);
  }, limit(240_000));
});

describe('workers trust no job data', () => {
  it('refuses paths outside its workspace, a Hub endpoint its owner did not allow, and malformed data, without echoing file contents', async () => {
    const { env } = trainerLog();
    const { runId } = await submitRun(env);
    const valid = await withRunQueues(env, async (q) => (await q.jobs(runId)).build!.data);

    let hits = 0;
    const server = createServer((req, res) => {
      hits++;
      res.writeHead(500).end();
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    const outside = path.join('/var/tmp', `bsft-evil-${process.pid}`);
    const hostile: Record<string, unknown> = {
      outside: { ...valid, recipe: { ...valid.recipe, runs_dir: outside }, run_dir: path.join(outside, runId) },
      passwd: { ...valid, recipe: { ...valid.recipe, task_files: ['/etc/passwd'] } },
      hub: { ...valid, recipe: { ...valid.recipe, store: { ...valid.recipe.store, kind: 'hub', repo: 'me/evil', hub_url: `http://127.0.0.1:${port}` } } },
      // A judge endpoint the worker's owner did not name: its judge key must not go there.
      judge: { ...valid, recipe: { ...valid.recipe, judge: { kind: 'openai', base_url: `http://127.0.0.1:${port}/v1`, model: 'm', max_concurrency: 1, timeout_s: 5, max_retries: 0, prompt_version: 'v1', also_token_runs: false } } },
      predict: { ...valid, recipe: { ...valid.recipe, eval: { ...valid.recipe.eval, engine: 'openai', endpoint: { base_url: `http://127.0.0.1:${port}/v1`, model: 'm', max_concurrency: 1, timeout_s: 5, max_retries: 0 } } } },
      garbage: { run_id: runId, recipe: { name: 'x' } },
    };
    const env2 = queueEnv({ HF_TOKEN: 'hf_secretTOKENabcdefghijklmnopqrstuv', BSFT_JUDGE_API_KEY: 'sk-judge-secret', BSFT_PREDICT_API_KEY: 'sk-predict-secret', BSFT_JUDGE_ENDPOINTS: 'https://judge.example.org/v1' });
    await withRunQueues(env2, async (q) => {
      const build = new Queue('bsft-build', { connection: q.connection, prefix: env2.BSFT_QUEUE_PREFIX! });
      for (const [id, data] of Object.entries(hostile)) await build.add('build', data, { jobId: id });
      // Data that is not JSON, as a broken client or a hand edit in Redis leaves it.
      await build.add('build', valid, { jobId: 'notjson', delay: 60_000 });
      await q.connection.hset(`${env2.BSFT_QUEUE_PREFIX}:bsft-build:notjson`, 'data', '{"run_id": "x", "recipe": {oops');
      await build.promoteJobs();
      await build.close();
    });
    hostile.notjson = undefined;
    const w = worker('ok', env2, ['--queues', 'build']);
    await w.ready;
    const reasons = await withRunQueues(env2, async (q) => {
      const until = Date.now() + 30_000;
      for (;;) {
        // Read from the job hashes themselves: BullMQ's getJob cannot parse the job whose data is not JSON.
        const jobs = await Promise.all(Object.keys(hostile).map(async (id) => {
          const [reason, attempts] = await q.connection.hmget(`${env2.BSFT_QUEUE_PREFIX}:bsft-build:${id}`, 'failedReason', 'atm');
          return { id, reason, attempts: Number(attempts) };
        }));
        if (jobs.every((j) => j.reason)) return Object.fromEntries(jobs.map((j) => [j.id, j]));
        if (Date.now() > until) throw new Error(`jobs not failed: ${JSON.stringify(jobs)}`);
        await sleep(200);
      }
    });
    server.close();
    expect(reasons.outside!.reason).toMatch(/^job data refused: run_dir: \/var\/tmp\/bsft-evil-\d+\/\S+ is outside this worker's workspace/);
    expect(reasons.passwd!.reason).toMatch(/recipe\.task_files\.0: \/etc\/passwd is outside this worker's workspace/);
    expect(reasons.passwd!.reason).not.toContain('root:');
    expect(reasons.hub!.reason).toMatch(/recipe\.store\.hub_url: http:\/\/127\.0\.0\.1:\d+ is not an endpoint this worker allows \(https:\/\/huggingface\.co\)/);
    expect(reasons.judge!.reason).toMatch(/recipe\.judge\.base_url: http:\/\/127\.0\.0\.1:\d+\/v1 is not an endpoint this worker sends its BSFT_JUDGE_API_KEY to \(https:\/\/judge\.example\.org\/v1\)/);
    expect(reasons.predict!.reason).toMatch(/recipe\.eval\.endpoint\.base_url: http:\/\/127\.0\.0\.1:\d+\/v1 is not an endpoint this worker sends its BSFT_PREDICT_API_KEY to \(https:\/\/judge\.example\.org\/v1\)/);
    expect(reasons.garbage!.reason).toMatch(/^job data refused: .*(run_dir|submitted_at)/);
    // Failed at once, unrecoverably, naming the problem without quoting the text.
    expect(reasons.notjson!.reason).toBe('job data refused: job data is not valid JSON (31 bytes, the error at character 27)');
    expect(w.stderr.join('\n')).not.toContain('oops');
    expect(w.stderr.join('\n')).not.toContain('job stalled');
    const status = await bsft(['status', '--json'], { env: env2 }); // readers show the job too, without its text
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).not.toContain('oops');
    for (const r of Object.values(reasons)) expect(r.attempts).toBe(1); // never retried
    expect(hits).toBe(0);
    expect(existsSync(outside)).toBe(false);
  });
});

describe('submitting', () => {
  it('priority 1 is the most urgent and a run without a priority goes last', async () => {
    const env = queueEnv();
    const none = await submitRun(env, ['data.seed=1']);
    const low = await bsft(['submit', ...testRecipeArgs(['data.seed=2']).args, '--priority', '5'], { env });
    const urgent = await bsft(['submit', ...testRecipeArgs(['data.seed=3']).args, '--priority', '1'], { env });
    const ids = [urgent, low].map((r) => /submitted run (\S+)/.exec(r.stdout)![1]!);
    const builder = worker('ok', env, ['--queues', 'build']);
    await builder.ready;
    for (const id of [none.runId, ...ids]) await waitForRun(env, id, (v) => v.stages.build === 'completed' && v.stages.train === 'waiting', 90_000);
    await stop(builder);
    const trainer = worker('ok', env, ['--queues', 'train']);
    await trainer.ready;
    for (const id of [none.runId, ...ids]) await waitForRun(env, id, (v) => v.stages.train === 'completed', 90_000);
    const order = await withRunQueues(env, async (q) => {
      const started = await Promise.all([...ids, none.runId].map(async (id) => [id, (await q.jobs(id)).train!.processedOn!] as const));
      return started.sort((x, y) => x[1] - y[1]).map(([id]) => id);
    });
    expect(order).toEqual([ids[0], ids[1], none.runId]);
  });

  it('five concurrent submits of one run: exactly one says "submitted run"', async () => {
    const env = queueEnv();
    const { args } = testRecipeArgs(['data.seed=11']);
    const results = await Promise.all(Array.from({ length: 5 }, () => bsft(['submit', ...args], { env })));
    expect(results.map((r) => r.code)).toEqual([0, 0, 0, 0, 0]);
    expect(results.filter((r) => r.stdout.includes('submitted run')).length).toBe(1);
    expect(results.filter((r) => r.stdout.includes('is already in the queue')).length).toBe(4);
  });
});
