import { existsSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { UnrecoverableError, Worker, type Job, type MinimalJob } from 'bullmq';
import type { Redis } from 'ioredis';
import { DataError } from '../dataset/data-error.js';
import { buildDataset } from '../dataset/build.js';
import type { Logger } from '../log.js';
import { RedisWatch, workerConnection } from '../queue/connection.js';
import type { RunJobData } from '../queue/job-data.js';
import { keys, queueName, queuePrefix, type Stage } from '../queue/names.js';
import { writeRunRecipe } from '../run/pipeline.js';
import { writeMeta } from '../store/meta.js';
import { datasetDir } from '../run/trainer-config.js';
import { scoreRun } from '../score/run-scores.js';
import { openStore, StoreAccessError } from '../store/store.js';
import { backoffDelay } from './backoff.js';
import { logJobEvent, processTrainJob, type StopReason } from './train-job.js';

export interface WorkerOptions {
  queues: Stage[];
  log: Logger;
  /** GPUs this worker owns (CUDA_VISIBLE_DEVICES), e.g. "0,1". */
  gpus?: string;
  /** Replaces `python -m bsft_trainer` (fixture trainers in tests). */
  trainer?: string[];
  name?: string;
  /**
   * Lock settings for hours-long jobs on preemptible machines: the lock is renewed every lockMs/2 by the worker's
   * event loop (the trainer is a child process), and a worker that dies has its job back in waiting within
   * lockMs + stalledMs.
   */
  lockMs?: number;
  stalledMs?: number;
  /** A job found stalled (its worker died) more often than this fails instead of looping forever. */
  maxStalled?: number;
  silenceMs?: number;
  /** Where runs of a hub store are staged on this machine (default ./runs). Local-store runs use the store folder. */
  workdir?: string;
}

export interface RunningWorker {
  name: string;
  /** Graceful stop: trainers get SIGTERM, checkpoint, their jobs go back to waiting; then the workers close. */
  close(): Promise<void>;
}

export async function startWorker(opts: WorkerOptions): Promise<RunningWorker> {
  const name = opts.name ?? `${hostname()}:${process.pid}${opts.gpus ? `:gpu${opts.gpus}` : ''}`;
  const log = opts.log.child({ worker: name });
  const redis = new RedisWatch(log);
  const connection = workerConnection(undefined, redis);
  const subscriber = workerConnection(undefined, redis);
  const active = new Map<string, (reason: StopReason) => void>();
  let shuttingDown = false;

  const isCancelled = async (runId: string) => (await connection.exists(keys.cancelled(runId))) === 1;
  await subscriber.subscribe(keys.cancelChannel());
  subscriber.on('message', (_channel, runId: string) => {
    const stop = active.get(runId);
    if (stop) {
      log.info({ run_id: runId }, 'cancel requested: stopping the trainer after a checkpoint');
      stop('cancel');
    }
  });

  const lockDuration = opts.lockMs ?? Number(process.env.BSFT_LOCK_MS ?? 20_000);
  const common = {
    connection,
    prefix: queuePrefix(),
    name,
    lockDuration,
    stalledInterval: opts.stalledMs ?? Math.round(lockDuration / 2),
    maxStalledCount: opts.maxStalled ?? 10,
    settings: { backoffStrategy: (attemptsMade: number, _type?: string, _err?: Error, job?: MinimalJob) => backoffDelay(attemptsMade, job as MinimalJob<RunJobData> | undefined) },
  };

  const workdir = path.resolve(opts.workdir ?? process.env.BSFT_WORKDIR ?? 'runs');
  const stage = async (job: Job<RunJobData>) => {
    const store = await openStore(job.data.recipe);
    const runDir = store.kind === 'hub' ? path.join(workdir, job.data.run_id) : job.data.run_dir;
    writeRunRecipe(runDir, job.data.recipe);
    return { store, runDir };
  };
  /** Store errors that retrying cannot fix (bad token, no rights, repo gone) fail the job at once. */
  const unrecoverable = (e: unknown): never => {
    if (e instanceof StoreAccessError) throw new UnrecoverableError(e.message);
    throw e;
  };

  const processors: Record<Stage, (job: Job<RunJobData>, token?: string) => Promise<unknown>> = {
    async build(job) {
      if (await isCancelled(job.data.run_id)) throw new UnrecoverableError('cancelled by bsft cancel');
      const { store, runDir } = await stage(job);
      try {
        // Runs of one submission that share their data section share one build (by dataset hash).
        const res = await buildDataset(job.data.recipe, datasetDir(runDir), log, path.join(path.dirname(runDir), '_datasets'));
        if (store.kind === 'hub') {
          await store.push(job.data.run_id, datasetDir(runDir), 'dataset').catch(unrecoverable);
          await store.push(job.data.run_id, writeMeta(runDir, job.data.recipe), 'meta').catch(unrecoverable);
        }
        await logJobEvent(job, { event: 'dataset', built: res.built, shared: !res.built, dataset_hash: res.manifest.dataset_hash, documents: Object.fromEntries(Object.entries(res.manifest.documents).map(([k, v]) => [k, v.length])) });
        return { dataset_hash: res.manifest.dataset_hash };
      } catch (e) {
        if (e instanceof DataError || (e as { exitCode?: number }).exitCode === 2) throw new UnrecoverableError((e as Error).message);
        throw e;
      }
    },
    async train(job, token) {
      const { store, runDir } = await stage(job);
      return processTrainJob(job, token, runDir, store, {
        log,
        ...(opts.trainer ? { trainer: opts.trainer } : {}),
        ...(opts.gpus !== undefined ? { gpus: opts.gpus } : {}),
        silenceMs: opts.silenceMs ?? Number(process.env.BSFT_TRAINER_SILENCE_MS ?? 30 * 60_000),
        onActive: (runId, stop) => (stop ? active.set(runId, stop) : active.delete(runId)),
        shuttingDown: () => shuttingDown,
        isCancelled,
      }).catch(unrecoverable);
    },
    async score(job) {
      const runId = job.data.run_id;
      if (await isCancelled(runId)) throw new UnrecoverableError('cancelled by bsft cancel');
      const { store, runDir } = await stage(job);
      for (const rel of ['dataset', 'predictions']) {
        if (store.kind === 'hub' && !existsSync(path.join(runDir, rel, 'COMPLETE'))) await store.pull(runId, rel, path.join(runDir, rel)).catch(unrecoverable);
      }
      const results: Record<string, unknown> = {};
      for (const split of job.data.recipe.eval.splits) {
        const s = await scoreRun(runDir, split);
        results[split] = { macro_f1: s.report.overall.macro_f1, accuracy: s.report.overall.accuracy };
        await logJobEvent(job, { event: 'score', split, ...(results[split] as object), file: path.join(runDir, 'score', `${split}.json`) });
      }
      if (store.kind === 'hub') await store.push(runId, path.join(runDir, 'score'), 'score').catch(unrecoverable);
      return results;
    },
  };

  const workers = opts.queues.map((stage) => {
    const w = new Worker<RunJobData>(queueName(stage), (job, token) => processors[stage](job, token), {
      ...common,
      // One trainer per worker process (it owns its GPUs); builds and scores are light.
      concurrency: stage === 'train' ? 1 : 4,
    });
    w.on('failed', (job, err) => log.warn({ stage, run_id: job?.id, attempts: job?.attemptsMade, err: err.message }, `${stage} failed`));
    w.on('completed', (job) => log.info({ stage, run_id: job.id }, `${stage} completed`));
    redis.watch(w, stage);
    // We no longer own the job: another worker may take it, so this one's trainer must stop training it.
    w.on('lockRenewalFailed', (jobIds) => {
      for (const id of jobIds) {
        log.warn({ stage, run_id: id }, 'lost the job lock: stopping its trainer');
        active.get(id)?.('lost-lock');
      }
    });
    w.on('stalled', (jobId) => log.warn({ stage, run_id: jobId }, 'job stalled (its worker died); back to waiting'));
    return w;
  });
  await Promise.all(workers.map((w) => w.waitUntilReady()));
  log.info({ queues: opts.queues.map(queueName), gpus: opts.gpus ?? null }, 'worker ready');

  return {
    name,
    async close() {
      if (shuttingDown) return;
      shuttingDown = true;
      log.info({ active: [...active.keys()] }, 'shutting down: stopping trainers after a checkpoint');
      for (const stop of active.values()) stop('shutdown');
      await Promise.all(workers.map((w) => w.close()));
      await subscriber.quit().catch(() => undefined);
      await (connection as Redis).quit().catch(() => undefined);
    },
  };
}
