import { hostname } from 'node:os';
import path from 'node:path';
import type { MinimalJob } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger, LogLevel } from '../log.js';
import { RedisWatch, workerConnection } from '../queue/connection.js';
import type { RunJobData } from '../queue/job-data.js';
import { keys, queueName, queuePrefix, type Stage } from '../queue/names.js';
import type { StopReason } from '../run/host.js';
import { backoffDelay } from './backoff.js';
import { GpuPool } from './gpu-pool.js';
import { OffloadPool } from './offload.js';
import { workerJobPolicy } from './job-policy.js';
import { processJob, type JobContext } from './process-job.js';
import { RunWorker } from '../queue/run-job.js';

export interface WorkerOptions {
  queues: Stage[];
  log: Logger;
  /**
   * GPUs this worker owns, e.g. "0,1,2,3": it runs as many train jobs at once as they allow (gpu-pool.ts), each
   * with its own CUDA_VISIBLE_DEVICES. Without it, one train job at a time sees every GPU of the machine.
   */
  gpus?: string;
  /** How long a train job waiting for GPUs is delayed before it is tried again (default 2 s). */
  gpuWaitMs?: number;
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
  /** Roots besides the workspace (cwd) that jobs may read and write (BSFT_ALLOW_PATHS adds more). */
  allow?: string[];
  /** Hub endpoints besides HF_ENDPOINT (default huggingface.co) that this worker's HF_TOKEN may be sent to. */
  hubEndpoints?: string[];
  /** Judge endpoints besides BSFT_JUDGE_ENDPOINTS that this worker's BSFT_JUDGE_API_KEY may be sent to. */
  judgeEndpoints?: string[];
  /** How long the worker takes no new job after one found this machine's disk full (default 5 minutes). */
  diskFullPauseMs?: number;
  /** How long machine 0 of a run across machines waits for its other machines (default BSFT_GANG_FORM_MS, 10 minutes). */
  gangFormMs?: number;
}

/** Build jobs, and score jobs, a worker runs at once. */
const OFFLOAD_CONCURRENCY = 2;

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
  const active: JobContext['active'] = new Map();
  let shuttingDown = false;
  let resumeTimer: NodeJS.Timeout | undefined;
  // As many warm children as build and score jobs can run at once: none is started afresh in the steady state.
  const offload = new OffloadPool(OFFLOAD_CONCURRENCY * opts.queues.filter((q) => q !== 'train').length, log.level as LogLevel);

  const isCancelled = async (runId: string) => (await connection.exists(keys.cancelled(runId))) === 1;
  await subscriber.subscribe(keys.cancelChannel());
  subscriber.on('message', (_channel, runId: string) => {
    // The run's job, and a machine's job of a run across machines (gang.ts), when this worker runs one.
    for (const [jobId, now] of active) {
      if (now.runId !== runId) continue;
      log.info({ run_id: runId, job: jobId }, `cancel requested: stopping ${now.doing}`);
      now.stop('cancel');
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
  const pool = opts.gpus !== undefined ? new GpuPool(opts.gpus.split(',').filter((g) => g !== '')) : undefined;
  const jobs: JobContext = {
    connection,
    log,
    policy: workerJobPolicy([...(opts.allow ?? []), workdir], opts.hubEndpoints, opts.judgeEndpoints),
    workdir,
    lockMs: lockDuration,
    silenceMs: opts.silenceMs ?? Number(process.env.BSFT_TRAINER_SILENCE_MS ?? 30 * 60_000),
    ...(opts.trainer ? { trainer: opts.trainer } : {}),
    ...(pool ? { pool } : {}),
    workerName: name,
    gpuWaitMs: opts.gpuWaitMs ?? Number(process.env.BSFT_GPU_WAIT_MS ?? 2000),
    gangFormMs: opts.gangFormMs ?? Number(process.env.BSFT_GANG_FORM_MS ?? 10 * 60_000),
    isCancelled,
    offload,
    diskFull: (message) => {
      if (resumeTimer) return; // already paused
      const ms = opts.diskFullPauseMs ?? Number(process.env.BSFT_DISK_FULL_PAUSE_MS ?? 5 * 60_000);
      log.warn({ err: message, pause_s: ms / 1000 }, `this machine's disk is full: taking no new job for ${ms / 1000} s (the job goes back to the queue for another worker)`);
      for (const w of workers) void w.pause(true);
      resumeTimer = setTimeout(() => {
        resumeTimer = undefined;
        if (shuttingDown) return;
        log.info('taking jobs again after the disk-full pause');
        for (const w of workers) w.resume();
      }, ms);
    },
    active,
    shuttingDown: () => shuttingDown,
  };

  const workers = opts.queues.map((stage) => {
    const w = new RunWorker<RunJobData>(queueName(stage), (job, token) => processJob(jobs, stage, job, token), {
      ...common,
      // Train: one job per GPU at most (a job takes the GPUs it needs from the pool), one without --gpus. Builds and
      // scores work in the warm offload children, OFFLOAD_CONCURRENCY each (they are CPU-bound: more only contend).
      concurrency: stage === 'train' ? Math.max(1, pool?.size ?? 1) : OFFLOAD_CONCURRENCY,
    });
    w.on('failed', (job, err) => log.warn({ stage, run_id: job?.id, attempts: job?.attemptsMade, err: err.message }, `${stage} failed`));
    w.on('completed', (job) => log.info({ stage, run_id: job.id }, `${stage} completed`));
    redis.watch(w, stage);
    // We no longer own the job: another worker may take it, so this one's trainer must stop training it.
    w.on('lockRenewalFailed', (jobIds) => {
      for (const id of jobIds) {
        log.warn({ stage, run_id: id }, 'lost the job lock: stopping its trainer');
        active.get(id)?.stop('lost-lock');
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
      clearTimeout(resumeTimer);
      log.info({ active: [...active.keys()] }, 'shutting down: stopping trainers after a checkpoint');
      for (const now of active.values()) now.stop('shutdown');
      await Promise.all(workers.map((w) => w.close()));
      offload.close();
      await subscriber.quit().catch(() => undefined);
      await (connection as Redis).quit().catch(() => undefined);
    },
  };
}
