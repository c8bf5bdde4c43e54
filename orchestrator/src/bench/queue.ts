/**
 * npm run bench:queue — needs Redis (REDIS_URL, default 127.0.0.1:6379).
 *  1. 1,000 submitted runs (flows build -> train -> score) drained by two `bsft worker` processes whose trainer is a
 *     no-op fixture: the CPU the worker processes themselves spend per job — bsft's machinery (BullMQ, Redis calls,
 *     job checks, staging, events, the offload children's IPC), apart from the work done in the trainer and offload
 *     child processes (target < 50 ms) — beside a plain BullMQ worker's CPU per no-op job; and the time inside the
 *     processors, with the work itself (the builds' and scorings' own time, reported by the children) apart.
 *  2. Dead-worker detection: a worker holding a train job is killed with SIGKILL; time until another worker runs
 *     the job (target < 30 s), beside BullMQ's default lock settings measured the same way.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Queue, Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { producerConnection, redisUrl } from '../queue/connection.js';
import { RunQueues } from '../queue/runs.js';
import { submitRun } from '../queue/submit.js';
import { resolveRecipe } from '../recipe/resolve.js';
import { redactUrl } from '../recipe/secrets.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const BSFT = path.join(ROOT, 'bin', 'bsft.js');
const NOOP = path.join(ROOT, 'orchestrator', 'test', 'fixtures', 'trainers', 'ok.mjs');
const RUNS = Number(process.env.BENCH_RUNS ?? 1000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Workers this benchmark started: killed when it ends, whether it succeeded or not. */
const started: ChildProcess[] = [];
process.on('exit', () => started.forEach((w) => w.kill('SIGKILL')));

/** A `bsft worker` with the no-op fixture trainer, allowed to use `dir` (where the benchmark's runs live). */
function startWorker(prefix: string, name: string, dir: string, env: Record<string, string> = {}): Promise<ChildProcess> {
  const proc = spawn(process.execPath, [BSFT, 'worker', '--name', name, '--allow', dir, '--trainer', `${process.execPath} ${NOOP}`], {
    env: { ...process.env, BSFT_QUEUE_PREFIX: prefix, BSFT_LOG_LEVEL: 'info', FIXTURE_STEP_MS: '0', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  started.push(proc);
  return new Promise((resolve, reject) => {
    proc.stderr!.on('data', (d: Buffer) => d.toString().includes('"worker ready"') && resolve(proc));
    proc.once('exit', (c) => reject(new Error(`worker exited ${c}`)));
  });
}

/** A valid run id (`<name>-<8 hex>`) for the i-th benchmark run. */
const runId = (i: number) => `bench-${i.toString(16).padStart(8, '0')}`;

function recipe(dir: string) {
  const tasks = path.join(dir, 'tasks.jsonl');
  const lines = ['c1', 'c2', 'c3', 'c4', 'c5', 'c6', 'c7', 'c8', 'c9', 'c10'].flatMap((c, i) => ['reactive', 'proactive', 'restraint'].map((b, j) => JSON.stringify({
    id: `${c}-${j}`, case_id: c, category: `k${j}`, behavior: b, context: [{ role: 'user', content: `Question ${i}.${j}` }], target: `Reply ${b}.`,
  })));
  writeFileSync(tasks, `${lines.join('\n')}\n`);
  return resolveRecipe(path.join(ROOT, 'recipes', 'smoke.yaml'), {
    policy: { workspace: ROOT, allow: [dir] },
    set: [`data.tasks=["${tasks}"]`, `store.path=${dir}/runs`, 'train.max_steps=1', 'eval.bootstrap=0', 'train.preempt_grace_s=5'],
  });
}

async function drain(): Promise<{ perJob: number; total: number; work: number; cpuPerJob: number }> {
  const prefix = `bench-${process.pid}-a`;
  process.env.BSFT_QUEUE_PREFIX = prefix;
  const dir = mkdtempSync(path.join(tmpdir(), 'bsft-bench-'));
  const base = recipe(dir);
  const redis = await producerConnection();
  const t0 = performance.now();
  for (let i = 0; i < RUNS; i++) await submitRun({ ...base, run_id: runId(i) }, redis);
  const submitMs = (performance.now() - t0) / RUNS;
  process.env.BENCH_LAST_RUN_DIR = path.join(dir, 'runs', runId(0));
  const workers = await Promise.all([startWorker(prefix, 'w1', dir), startWorker(prefix, 'w2', dir)]);
  const q = new RunQueues(redis);
  const startedAt = performance.now();
  for (;;) {
    const c = await q.queues.score.getJobCounts('completed', 'failed');
    const failed = [...(await q.queues.train.getFailed(0, 0)), ...(await q.queues.build.getFailed(0, 0)), ...(await q.queues.score.getFailed(0, 0))];
    if (failed.length) throw new Error(`jobs failed, e.g. ${failed[0]!.queueName} ${failed[0]!.id}: ${failed[0]!.failedReason}`);
    if (c.completed === RUNS) break;
    await sleep(200);
  }
  const wall = performance.now() - startedAt;
  const workerCpuMs = workers.reduce((a, w) => a + cpuMs(w.pid!), 0);
  workers.forEach((w) => w.kill('SIGTERM'));
  const inStage: Record<string, number> = {};
  const workIn: Record<string, number> = {};
  for (const stage of ['build', 'train', 'score'] as const) {
    const jobs = await q.queues[stage].getJobs(['completed'], 0, RUNS);
    inStage[stage] = jobs.reduce((a, j) => a + ((j.finishedOn ?? 0) - (j.processedOn ?? 0)), 0) / jobs.length;
    workIn[stage] = jobs.reduce((a, j) => a + Number((j.returnvalue as { work_ms?: number } | null)?.work_ms ?? 0), 0) / jobs.length;
  }
  await q.close();
  redis.disconnect();
  console.log(`  submit: ${submitMs.toFixed(1)} ms per run (flow of 3 jobs)`);
  console.log(`  time inside the processors per job: build ${inStage.build!.toFixed(1)} ms (of which the build itself ${workIn.build!.toFixed(1)} ms), ` +
    `train ${inStage.train!.toFixed(1)} ms (two trainer processes), score ${inStage.score!.toFixed(1)} ms (of which scoring ${workIn.score!.toFixed(1)} ms)`);
  console.log(`  bsft's own time per job (processor time less the work): build ${(inStage.build! - workIn.build!).toFixed(1)} ms, ` +
    `score ${(inStage.score! - workIn.score!).toFixed(1)} ms (on 2 busy cores: waiting for a core included)`);
  return { perJob: (wall * 2) / (RUNS * 3), total: wall / 1000, work: (workIn.build! + workIn.score!) / 3, cpuPerJob: workerCpuMs / (RUNS * 3) };
}

/** CPU time (user + system) a live process has used so far, in ms (Linux /proc). */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime, stime in clock ticks (USER_HZ = 100)
}

/** Wall time of one start-to-exit of the no-op fixture trainer, the part of a train job that is the trainer's own. */
async function trainerSpawnMs(configDir: string): Promise<number> {
  const n = 20;
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    await new Promise<void>((resolve) => spawn(process.execPath, [NOOP, 'train', '--config', path.join(configDir, 'train.json')], { stdio: 'ignore' }).once('exit', () => resolve()));
  }
  return (performance.now() - started) / n;
}

async function plainBullmq(): Promise<{ wall: number; cpu: number }> {
  const connection = new Redis(redisUrl(), { maxRetriesPerRequest: null });
  const prefix = `bench-${process.pid}-b`;
  const queue = new Queue('plain', { connection, prefix });
  await queue.addBulk(Array.from({ length: RUNS * 3 }, (_, i) => ({ name: 'noop', data: { i } })));
  let done = 0;
  const started = performance.now();
  const cpu0 = process.cpuUsage();
  const finished = new Promise<void>((resolve) => {
    const workers = [0, 1].map(() => new Worker('plain', async () => undefined, { connection, prefix, concurrency: 1 }));
    workers.forEach((w) => w.on('completed', () => {
      if (++done === RUNS * 3) {
        void Promise.all(workers.map((x) => x.close())).then(() => resolve());
      }
    }));
  });
  await finished;
  const wall = performance.now() - started;
  const cpu = process.cpuUsage(cpu0);
  await queue.obliterate({ force: true });
  await queue.close();
  connection.disconnect();
  return { wall: (wall * 2) / (RUNS * 3), cpu: (cpu.user + cpu.system) / 1000 / (RUNS * 3) };
}

async function detection(): Promise<number> {
  const prefix = `bench-${process.pid}-c`;
  process.env.BSFT_QUEUE_PREFIX = prefix;
  const dir = mkdtempSync(path.join(tmpdir(), 'bsft-bench-'));
  const r = { ...recipe(dir), run_id: 'dead-worker-0000dead' };
  r.train = { ...r.train, max_steps: 1000 };
  const redis = await producerConnection();
  await submitRun(r, redis);
  const env = { FIXTURE_STEP_MS: '200' };
  const a = await startWorker(prefix, 'victim', dir, env);
  const q = new RunQueues(redis);
  while ((await q.view(r.run_id))?.worker !== 'victim' || (await q.view(r.run_id))?.state !== 'training') await sleep(100);
  const b = await startWorker(prefix, 'survivor', dir, env);
  const killed = performance.now();
  a.kill('SIGKILL');
  while ((await q.view(r.run_id))?.worker !== 'survivor') await sleep(100);
  const seconds = (performance.now() - killed) / 1000;
  b.kill('SIGKILL');
  await q.close();
  redis.disconnect();
  return seconds;
}

async function detectionBullmqDefaults(): Promise<number> {
  const prefix = `bench-${process.pid}-d`;
  const connection = new Redis(redisUrl(), { maxRetriesPerRequest: null });
  const queue = new Queue('dead', { connection, prefix });
  await queue.add('long', {});
  const script = `import { Worker } from 'bullmq'; import { Redis } from 'ioredis';
new Worker('dead', () => new Promise(() => {}), { connection: new Redis(${JSON.stringify(redisUrl())}, { maxRetriesPerRequest: null }), prefix: ${JSON.stringify(prefix)} });`;
  const victim = spawn(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT, stdio: 'ignore' });
  while ((await queue.getJobCounts('active')).active === 0) await sleep(100);
  let picked = 0;
  const survivor = new Worker('dead', async () => {
    picked = performance.now();
  }, { connection, prefix });
  const killed = performance.now();
  victim.kill('SIGKILL');
  while (!picked) await sleep(100);
  await survivor.close();
  await queue.obliterate({ force: true });
  await queue.close();
  connection.disconnect();
  return (picked - killed) / 1000;
}

console.log(`bench:queue — Redis ${redactUrl(redisUrl())}`);
const ours = await drain();
const plain = await plainBullmq();
const configDir = path.join(process.env.BENCH_LAST_RUN_DIR ?? '', '');
const spawnMs = configDir ? await trainerSpawnMs(configDir) : 0;
console.log(`${RUNS} runs (${RUNS * 3} jobs) drained by 2 workers with no-op fixture trainers in ${ours.total.toFixed(1)} s`);
console.log(`  wall per job, bsft worker (2 workers)                                     ${ours.perJob.toFixed(1)} ms`);
console.log(`    the no-op trainer processes (2 per run, ${spawnMs.toFixed(1)} ms each), per job              ${((2 * spawnMs) / 3).toFixed(1)} ms`);
console.log(`    the builds and scorings themselves (warm offload children), per job        ${ours.work.toFixed(1)} ms`);
console.log(`  CPU of the bsft worker processes per job (bsft's own machinery)          ${ours.cpuPerJob.toFixed(1)} ms   target < 50 ms: ${ours.cpuPerJob < 50 ? 'met' : 'NOT met'}`);
console.log(`  CPU per job of a plain BullMQ worker with an empty processor           ${plain.cpu.toFixed(1)} ms   (baseline; wall ${plain.wall.toFixed(1)} ms)`);
const dead = await detection();
const deadDefault = await detectionBullmqDefaults();
console.log('dead-worker detection (SIGKILL -> job running on another worker)');
console.log(`  bsft worker (lock 20 s, stalled check 10 s)   ${dead.toFixed(1)} s   target < 30 s: ${dead < 30 ? 'met' : 'NOT met'}`);
console.log(`  BullMQ defaults (lock 30 s, stalled check 30 s) ${deadDefault.toFixed(1)} s   (baseline)`);
process.exit(0);
