import { existsSync } from 'node:fs';
import path from 'node:path';
import { UnrecoverableError, WaitingError, type Job } from 'bullmq';
import type { Logger } from '../log.js';
import { MAX_PREEMPTIONS, type RunJobData, type TrainProgress } from '../queue/job-data.js';
import { predictArgs, writeTrainerConfig } from '../run/trainer-config.js';
import { type Store } from '../store/store.js';
import { BackgroundPusher, localCheckpoints, pruneRemote, pullNewestCheckpoint } from '../store/sync.js';
import type { TrainerEvent } from './trainer-events.js';
import { runTrainer, type Lease, type TrainerResult } from './trainer-process.js';

/** Why the worker stopped a trainer itself. */
export type StopReason = 'shutdown' | 'cancel' | 'silent' | 'lost-lock';

export interface TrainJobOptions {
  log: Logger;
  /** Replaces `python -m bsft_trainer` (fixture trainers in tests). */
  trainer?: string[];
  /** CUDA_VISIBLE_DEVICES for the trainer. */
  gpus?: string;
  /** A trainer that emits no event for this long is killed and the attempt fails (retryable). */
  silenceMs: number;
  /** Registers the trainer's stop function while it runs (for cancel and shutdown). */
  onActive(runId: string, stop: ((reason: StopReason) => void) | undefined): void;
  /** Called once the trainer is known to have stopped, to know the worker is shutting down. */
  shuttingDown(): boolean;
  isCancelled(runId: string): Promise<boolean>;
  /** The trainer runs only while this worker holds the job (heartbeats on its stdin). */
  lease: Lease;
  /** This attempt's fencing epoch, passed to the trainer. */
  epoch: number;
  /** Whether this attempt's epoch is still the run's newest: a stale attempt pushes nothing to the store. */
  ownsRun(): Promise<boolean>;
}

/** Job log lines are JSON (one event each) so `bsft logs` can print them and tools can parse them. */
export async function logJobEvent(job: Job, record: Record<string, unknown>): Promise<void> {
  await job.log(JSON.stringify({ t: new Date().toISOString(), ...record }));
}

interface Phase {
  job: Job<RunJobData>;
  data: RunJobData;
  runDir: string;
  command: 'train' | 'predict';
  args: string[];
  configPath: string;
  /** Called for every `checkpoint` event (pushes it to the store in the background). */
  onCheckpoint?: (step: number, dir: string) => void;
}

async function runPhase({ job, data, runDir, command, args, configPath, onCheckpoint }: Phase, opts: TrainJobOptions, stopRef: { reason?: StopReason }): Promise<TrainerResult> {
  const { recipe } = data;
  const controller = new AbortController();
  let lastEvent = Date.now();
  let total = 0;
  let resumed = 0;
  const stop = (reason: StopReason) => {
    stopRef.reason ??= reason;
    controller.abort();
  };
  opts.onActive(data.run_id, stop);
  const watchdog = setInterval(() => {
    if (Date.now() - lastEvent > opts.silenceMs) stop('silent');
  }, Math.min(5000, opts.silenceMs / 2));
  const pending: Promise<unknown>[] = [];
  const onEvent = (e: TrainerEvent) => {
    lastEvent = Date.now();
    if (e.event === 'start') {
      total = e.total_steps;
      resumed = e.resumed_from_step;
      pending.push(job.updateProgress({ phase: 'starting', step: resumed, total_steps: total, resumed_from_step: resumed } satisfies TrainProgress));
    }
    if (e.event === 'step') {
      const { event: _event, ...rest } = e;
      pending.push(job.updateProgress({ phase: 'training', total_steps: total, resumed_from_step: resumed, ...rest } satisfies TrainProgress));
    } else {
      pending.push(logJobEvent(job, { ...e, phase: command }));
    }
    if (e.event === 'checkpoint') onCheckpoint?.(e.step, e.path);
  };
  try {
    return await runTrainer({
      command,
      config: configPath,
      cwd: runDir,
      args,
      ...(opts.trainer ? { program: opts.trainer } : {}),
      signal: controller.signal,
      graceMs: recipe.train.preempt_grace_s * 1000,
      lease: opts.lease,
      epoch: opts.epoch,
      env: opts.gpus !== undefined ? { CUDA_VISIBLE_DEVICES: opts.gpus } : {},
      onEvent,
      onLog: (line) => {
        lastEvent = Date.now();
        opts.log.debug({ run_id: data.run_id, trainer: line });
      },
    });
  } finally {
    clearInterval(watchdog);
    opts.onActive(data.run_id, undefined);
    await Promise.allSettled(pending);
  }
}

/**
 * The train job: spawns the trainer (Contract 4), turns `step` events into job progress and the rest into job
 * logs, then runs predict on the eval splits. Exit codes map to BullMQ outcomes: 0 done; 2 -> UnrecoverableError
 * (never retried); 75 -> back to waiting without using an attempt (capped); anything else -> a retryable failure.
 */
export async function processTrainJob(job: Job<RunJobData>, data: RunJobData, token: string | undefined, runDir: string, store: Store, opts: TrainJobOptions): Promise<unknown> {
  const { recipe, run_id: runId } = data;
  if (await opts.isCancelled(runId)) throw new UnrecoverableError('cancelled by bsft cancel');
  // Stage the inputs: a fresh machine pulls the dataset and the newest complete checkpoint from the store.
  const ds = path.join(runDir, 'dataset');
  if (!existsSync(path.join(ds, 'manifest.json'))) {
    if (!(await store.has(runId, 'dataset'))) throw new Error(`dataset of ${runId} is neither in ${runDir} nor in the ${store.describe()}`);
    await store.pull(runId, 'dataset', ds);
    await logJobEvent(job, { event: 'pulled', what: 'dataset', store: store.describe() });
  }
  const checkpoints = path.join(runDir, 'checkpoints');
  if (store.kind === 'hub' && (await localCheckpoints(checkpoints)).length === 0) {
    const step = await pullNewestCheckpoint(store, runId, checkpoints, opts.log);
    if (step !== undefined) await logJobEvent(job, { event: 'pulled', what: 'checkpoint', step, store: store.describe() });
  }
  const pusher = new BackgroundPusher(opts.log);
  const onCheckpoint = (step: number, dir: string) => {
    if (store.kind !== 'hub') return;
    pusher.enqueue(`checkpoint ${step}`, async () => {
      if (!(await opts.ownsRun())) throw new Error(`attempt epoch ${opts.epoch} is stale: not pushing checkpoint ${step}`);
      await store.push(runId, dir, `checkpoints/${path.basename(dir)}`);
      await pruneRemote(store, runId, recipe.store.keep_remote);
    });
  };
  const configPath = writeTrainerConfig(recipe, runDir);
  await logJobEvent(job, { event: 'attempt', attempt: job.attemptsMade + 1, worker: job.processedBy ?? null, epoch: opts.epoch });

  // Train, then predict on the eval splits (and once per forced behavior) on the same GPU.
  const phases: [command: 'train' | 'predict', args: string[]][] = [
    ['train', []],
    ...predictArgs(recipe).map((args): ['predict', string[]] => ['predict', args]),
  ];

  let finalPath: string | undefined;
  for (const [command, args] of phases) {
    const stopRef: { reason?: StopReason } = {};
    const res = await runPhase({ job, data, runDir, command, args, configPath, onCheckpoint }, opts, stopRef);
    if (stopRef.reason === 'cancel') {
      await logJobEvent(job, { event: 'cancelled', exit: res.exitCode ?? res.signal });
      throw new UnrecoverableError('cancelled by bsft cancel');
    }
    if (res.outcome === 'done' && res.finalPath !== undefined) {
      if (command === 'train') finalPath = res.finalPath;
      continue;
    }
    if (res.outcome === 'invalid') {
      throw new UnrecoverableError(`trainer ${command}: ${res.error?.kind ?? 'invalid'} error: ${res.error?.message ?? res.stderrTail.slice(-3).join(' ')}`);
    }
    if (res.outcome === 'preempted' || stopRef.reason === 'shutdown' || opts.shuttingDown()) {
      // The last checkpoint must reach the store before another machine takes the job.
      await pusher.drain().catch((e) => opts.log.warn({ err: (e as Error).message }, 'last checkpoint push failed'));
      const preemptions = (data.preemptions ?? 0) + 1;
      if (preemptions > MAX_PREEMPTIONS) throw new UnrecoverableError(`preempted ${preemptions} times; giving up`);
      await job.updateData({ ...data, preemptions });
      await logJobEvent(job, { event: 'requeued', reason: stopRef.reason === 'shutdown' || opts.shuttingDown() ? 'worker shutdown' : 'preempted', preemptions });
      await job.moveToWait(token);
      throw new WaitingError();
    }
    if (res.outcome === 'lease-lost') {
      throw new Error(`trainer ${command} stopped: its lease ran out (this worker could not confirm it still holds the job) or a newer attempt owns the run; the job runs again from its newest checkpoint`);
    }
    if (stopRef.reason === 'lost-lock') throw new Error('the job lock was lost (Redis unreachable too long): stopped the trainer; the job runs again from its newest checkpoint');
    if (stopRef.reason === 'silent') throw new Error(`trainer ${command} emitted no event for ${Math.round(opts.silenceMs / 1000)} s and was stopped`);
    const why = res.error ? `${res.error.kind}: ${res.error.message}` : res.outcome === 'done' ? 'exited 0 without a done event' : res.stderrTail.slice(-3).join(' | ');
    throw new Error(`trainer ${command} failed (exit ${res.exitCode ?? res.signal}): ${why}`);
  }
  if (store.kind === 'hub') {
    await pusher.drain();
    if (!(await opts.ownsRun())) throw new Error(`attempt epoch ${opts.epoch} is stale: a newer attempt owns ${runId}; not pushing final/ and predictions`);
    for (const rel of ['final', 'predictions']) await store.push(runId, path.join(runDir, rel), rel);
    await logJobEvent(job, { event: 'pushed', what: 'final and predictions', store: store.describe() });
  }
  await job.updateProgress({ ...(job.progress as object), phase: 'done' });
  return { final_path: finalPath };
}
