import { existsSync } from 'node:fs';
import path from 'node:path';
import { DelayedError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import { buildStep } from '../dataset/build-step.js';
import { DiskFullError } from '../errors.js';
import { judgeStep } from '../judge/judge-step.js';
import type { Logger } from '../log.js';
import type { RunJobData } from '../queue/job-data.js';
import { keys, type Stage } from '../queue/names.js';
import type { StopReason } from '../run/host.js';
import { runSteps } from '../run/pipeline.js';
import type { Step } from '../run/step.js';
import { predictStep, trainStep } from '../run/steps.js';
import { scoreStep } from '../score/score-step.js';
import { openStore, type Store } from '../store/store.js';
import { logJobEvent } from './job-log.js';
import { finalFailure, settleJob } from './job-outcome.js';
import { checkJob, type JobPolicy } from './job-policy.js';
import type { GpuPool } from './gpu-pool.js';
import { gpuCounts } from '../recipe/gpu-counts.js';
import { lockLease } from './lock-lease.js';
import type { OffloadPool } from './offload.js';
import { QueueHost, type QueueHostOptions } from './queue-host.js';
import { formGang, gathering, joinGang, pledge } from './gang.js';
import { PreemptedError } from '../errors.js';
import { unparseableJob } from '../queue/run-job.js';

/** The steps each job of a run's flow executes: the same Step objects as `bsft run`. */
/** The judge goes with predict, on the machine that has the model (a `kind: model` judge may use its GPU). */
export const STEPS_OF: Record<Stage, Step[]> = { build: [buildStep], train: [trainStep, predictStep, judgeStep], score: [scoreStep] };

/** What a worker gives every job it processes. */
export interface JobContext {
  connection: Redis;
  log: Logger;
  policy: JobPolicy;
  /** Where hub-store runs are staged on this machine. */
  workdir: string;
  lockMs: number;
  silenceMs: number;
  trainer?: string[];
  /** This worker's GPUs, shared by its train jobs (`--gpus`); without it a trainer sees every GPU of the machine. */
  pool?: GpuPool;
  /** This worker's name, for the reason a job waits. */
  workerName: string;
  /** How long a train job waiting for GPUs stays delayed before it is tried again (here or on another worker). */
  gpuWaitMs: number;
  isCancelled(runId: string): Promise<boolean>;
  /** Warm child processes for builds and scoring (offload.ts). */
  offload: OffloadPool;
  /** This machine's disk is full: the worker takes no new job for a while, so that another worker takes this one. */
  diskFull(message: string): void;
  /** What each job runs now, by job id (a run's, or a machine's of a run across machines): its run, how to stop it,
   * and what that is (for the log). Cancel, shutdown and a lost lock stop it. */
  active: Map<string, { runId: string; stop: (reason: StopReason) => void; doing: string }>;
  /** How long machine 0 of a run across machines waits for the others (BSFT_GANG_FORM_MS, gang.ts). */
  gangFormMs: number;
  shuttingDown(): boolean;
}

const never = new AbortController().signal;

/**
 * One BullMQ job: its data checked (whoever can write to Redis can write a job), its steps run with runSteps on a
 * QueueHost, as `bsft run` runs them; a train job first takes its fencing epoch and lease. Failures become BullMQ
 * outcomes in settleJob. Returns what the job's host collected (dataset hash, final path, scores).
 */
export async function processJob(ctx: JobContext, stage: Stage, job: Job<RunJobData>, token: string | undefined): Promise<unknown> {
  const unreadable = unparseableJob(job.data);
  if (unreadable) {
    ctx.log.warn({ run_id: job.id, err: unreadable }, 'refused a job');
    throw finalFailure(`job data refused: ${unreadable}`);
  }
  let data: RunJobData;
  try {
    data = checkJob(job.data, ctx.policy);
  } catch (e) {
    ctx.log.warn({ run_id: job.id, err: (e as Error).message }, 'refused a job');
    throw finalFailure((e as Error).message);
  }
  const runId = data.run_id;
  const member = data.node !== undefined;
  if (await ctx.isCancelled(runId)) {
    if (member) return { ended: 'cancelled' }; // a member job never fails: the run's own job says how the run ended
    throw finalFailure('cancelled by bsft cancel');
  }
  const gpus = stage === 'train' && ctx.pool ? await takeGpus(ctx, ctx.pool, job, data, token) : undefined;
  try {
    return await processWith(ctx, stage, job, data, token, gpus);
  } finally {
    if (gpus) ctx.pool!.release(gpus);
  }
}

/**
 * The GPUs a train job needs (`resources.gpus`, or for an elastic run as many as it can from `resources.min_gpus`) from this worker's pool (gpu-pool.ts), or the job goes back to the
 * queue as delayed (no attempt used), with the reason in its data for `bsft status`: too few free here now, or more
 * than this worker has at all (left for a bigger worker).
 */
async function takeGpus(ctx: JobContext, pool: GpuPool, job: Job<RunJobData>, data: RunJobData, token: string | undefined): Promise<string[]> {
  const counts = gpuCounts(data.recipe); // an elastic run: any of these, the most this worker can give
  await holdBackForGathering(ctx, pool, data.run_id);
  const tooWide = counts[0]! > pool.size;
  const grant = tooWide ? { wait: `a worker with ${counts[0]} GPUs (${ctx.workerName} has ${pool.size})` } : pool.take(data.run_id, counts);
  if ('gpus' in grant) {
    await setWaiting(job, undefined);
    return grant.gpus;
  }
  return waitFor(ctx, job, token, grant.wait, tooWide ? 5 : 1);
}

/**
 * While a run across machines gathers, a worker that could host one of its missing machines (and is not one of its
 * machines already) holds that many GPUs back from other runs, if it is among the first as many workers as the gang
 * still needs (gang.ts pledge): the gang's reservation across workers, as the pool's is on one. Renewed at each look.
 */
async function holdBackForGathering(ctx: JobContext, pool: GpuPool, runId: string): Promise<void> {
  const g = await gathering(ctx.connection).catch(() => undefined);
  if (!g || g.runId === runId || g.gpus > pool.size || g.workers.includes(ctx.workerName)) return;
  const hold = 5 * ctx.gpuWaitMs; // lapses soon after the gang gathered or dissolved
  if (await pledge(ctx.connection, g, ctx.workerName, ctx.gangFormMs + hold)) pool.reserve(g.runId, g.gpus, hold);
}

/** What a train job waits for, in its data for `bsft status` (undefined: nothing, it runs). */
async function setWaiting(job: Job<RunJobData>, what: string | undefined): Promise<void> {
  if (job.data.waiting_for === what) return;
  const { waiting_for: _old, ...rest } = job.data;
  await job.updateData((what === undefined ? rest : { ...rest, waiting_for: what }) as RunJobData);
}

/** What every job's QueueHost gets from its worker: the trainer and its GPUs, the stop hooks, the offload children. */
function hostBase(ctx: JobContext, job: Job<RunJobData>, store: Store, gpus: string[] | undefined) {
  return {
    log: ctx.log,
    store,
    ...(ctx.trainer ? { trainer: ctx.trainer } : {}),
    ...(gpus !== undefined ? { gpus: gpus.join(',') } : {}),
    silenceMs: ctx.silenceMs,
    onActive: (stop: ((reason: StopReason) => void) | undefined, doing = 'the job') =>
      void (stop ? ctx.active.set(job.id!, { runId: job.data.run_id, stop, doing }) : ctx.active.delete(job.id!)),
    shuttingDown: ctx.shuttingDown,
    offload: ctx.offload,
  } satisfies Partial<QueueHostOptions>;
}

/** The train job goes back to the queue as delayed for `times` x gpuWaitMs (no attempt used), `what` it waits for in
 * its data for `bsft status`. */
async function waitFor(ctx: JobContext, job: Job<RunJobData>, token: string | undefined, what: string, times: number): Promise<never> {
  if (job.data.waiting_for !== what) ctx.log.info({ run_id: job.data.run_id, job: job.id, waiting_for: what }, 'train job waits');
  await setWaiting(job, what);
  await job.moveToDelayed(Date.now() + times * ctx.gpuWaitMs, token);
  throw new DelayedError();
}

/** Whether the run's training is done already (its final model is complete): a retry after it needs no gang. */
function trained(store: Store, data: RunJobData): boolean {
  return store.kind === 'local' && existsSync(path.join(data.run_dir, 'final', 'COMPLETE'));
}

/**
 * A member job of a run across machines (gang.ts): joins its gang, trains as its machine until the gang's run ends
 * or breaks, reports, and ends. It never fails or retries: the run's own job decides what the run does next.
 */
async function processMember(ctx: JobContext, job: Job<RunJobData>, data: RunJobData, token: string | undefined, gpus: string[] | undefined): Promise<unknown> {
  const runId = data.run_id;
  const log = ctx.log.child({ run_id: runId, node: data.node });
  const joined = await joinGang({
    redis: ctx.connection, data, worker: ctx.workerName, aliveMs: ctx.lockMs,
    stopped: async () => (await ctx.isCancelled(runId)) || ctx.shuttingDown(),
  });
  if (!joined) {
    log.info('the gang of this machine is gone: nothing to do');
    return { ended: 'gang gone' };
  }
  await logJobEvent(job, { event: 'node-joined', node: data.node, epoch: data.gang_epoch, worker: ctx.workerName });
  const store = await openStore(data.recipe);
  const lock = lockLease(ctx.connection, job, token, ctx.lockMs);
  const epoch = data.gang_epoch!;
  const host = new QueueHost(job, {
    ...hostBase(ctx, job, store, gpus),
    // The trainer runs while this worker holds the member job and the gang stands.
    lease: { ms: lock.ms, holds: async () => joined.gang.current && (await lock.holds()) },
    epoch,
    ownsRun: async () => (await ctx.connection.get(keys.epoch(runId))) === String(epoch),
    gang: { node: joined.gang, args: joined.args },
  });
  try {
    await runSteps([trainStep], { recipe: data.recipe, runDir: data.run_dir, log, signal: never, host });
    return { ended: 'done', ...host.result };
  } catch (e) {
    log.warn({ err: (e as Error).message }, `machine ${data.node} of the run ended`);
    return { ended: (e as Error).message };
  } finally {
    // Ended before its trainer reported (it never started): the others learn it now, not when its key lapses.
    if (joined.gang.current) await joined.gang.report({ exitCode: undefined, outcome: 'failed', error: { event: 'error', kind: 'internal', message: 'its trainer did not start' } }).catch(() => undefined);
  }
}

async function processWith(ctx: JobContext, stage: Stage, job: Job<RunJobData>, data: RunJobData, token: string | undefined, gpus: string[] | undefined): Promise<unknown> {
  if (data.node !== undefined) return processMember(ctx, job, data, token, gpus);
  const runId = data.run_id;
  const store = await openStore(data.recipe).catch((e) => settleJob(job, token, e));
  const runDir = store.kind === 'hub' ? path.join(ctx.workdir, runId) : data.run_dir;
  let fencing = {};
  let gang: QueueHostOptions['gang'];
  if (stage === 'train') {
    // Fencing: this attempt's epoch; the trainer refuses to publish once a newer attempt has taken the run.
    const epoch = await ctx.connection.incr(keys.epoch(runId));
    fencing = {
      epoch,
      ownsRun: async () => (await ctx.connection.get(keys.epoch(runId))) === String(epoch),
    };
    await logJobEvent(job, { event: 'attempt', attempt: job.attemptsMade + 1, worker: job.processedBy ?? null, epoch });
    if (data.recipe.resources.nodes > 1 && !trained(store, data)) {
      const formed = await formGang({
        redis: ctx.connection, data, epoch, worker: ctx.workerName, aliveMs: ctx.lockMs, formMs: ctx.gangFormMs,
        stopped: async () => ((await ctx.isCancelled(runId)) ? 'cancel' : ctx.shuttingDown() ? 'shutdown' : undefined),
        log: (record) => logJobEvent(job, record),
        waiting: (what) => setWaiting(job, what),
      });
      if ('stopped' in formed) {
        if (formed.stopped === 'cancel') throw finalFailure('cancelled by bsft cancel');
        return settleJob(job, token, new PreemptedError('worker shutdown'));
      }
      if ('wait' in formed) return waitFor(ctx, job, token, formed.wait, 5);
      gang = { node: formed.gang, args: formed.args };
    }
  }
  const host = new QueueHost(job, {
    ...hostBase(ctx, job, store, gpus),
    ownsRun: async () => true,
    // Every job's child process (trainer, build, scoring) runs only while this worker holds the job's lock.
    lease: lockLease(ctx.connection, job, token, ctx.lockMs),
    ...fencing,
    ...(gang ? { gang } : {}),
  });
  try {
    await runSteps(STEPS_OF[stage], { recipe: data.recipe, runDir, log: ctx.log.child({ run_id: runId }), signal: never, host });
  } catch (e) {
    if (e instanceof DiskFullError) ctx.diskFull(e.message);
    return settleJob(job, token, e);
  } finally {
    // A gang whose machine 0 ended before its trainer did (a step before training failed): the others stop now.
    if (gang?.node.current) await gang.node.end('dissolved', `machine 0 (worker ${ctx.workerName}) ended before training`).catch(() => undefined);
  }
  return host.result;
}
