import path from 'node:path';
import type { Job } from 'bullmq';
import type { Logger } from '../log.js';
import { percentOf, type JobProgress, type RunJobData } from '../queue/job-data.js';
import type { ResolvedRecipe } from '../recipe/resolve.js';
import type { RunHost, StopReason, StoreFolder, TrainerRun } from '../run/host.js';
import { trainerUnavailable } from '../run/python-env.js';
import type { RunContext } from '../run/step.js';
import type { Store } from '../store/store.js';
import { BackgroundPusher, pruneRemote, pullFolders, pushFolders } from '../store/sync.js';
import { logJobEvent } from './job-log.js';
import type { BuildSummary, ScoreSummary } from '../run/stage-summary.js';
import { OffloadStopped, type ChildLease, type OffloadPool } from './offload.js';
import { CancelledError, OffloadError, PreemptedError } from '../errors.js';
import type { TrainerCommand, TrainerEvent } from './trainer-events.js';
import { runTrainer, type TrainerResult } from './trainer-process.js';
import { watchLease, type Lease } from './lease.js';
import { trainerProgress } from '../run/trainer-progress.js';
import type { GangNode, GangProblem } from './gang.js';

export interface QueueHostOptions {
  log: Logger;
  store: Store;
  /** Replaces `python -m bsft_trainer` (fixture trainers in tests). */
  trainer?: string[];
  /** CUDA_VISIBLE_DEVICES for the trainer. */
  gpus?: string;
  /** A trainer that emits no event for this long is stopped and the attempt fails (retryable). */
  silenceMs: number;
  /**
   * Registers what the job runs now while it runs (for cancel, shutdown and a lost lock): `stop` ends it, `doing`
   * says what it is in the log ("the trainer after a checkpoint").
   */
  onActive(stop: ((reason: StopReason) => void) | undefined, doing?: string): void;
  shuttingDown(): boolean;
  /** The job's lease: its trainer (heartbeats on its stdin) and its offload child run only while it holds. */
  lease?: Lease;
  /** Train jobs: this attempt's fencing epoch, passed to the trainer. */
  epoch?: number;
  /** Whether this attempt is still the run's newest: a stale attempt pushes nothing to the store. */
  ownsRun(): Promise<boolean>;
  /** The worker's warm children for builds and scoring (offload.ts). */
  offload: OffloadPool;
  /** One machine of a run across machines: its place in the gang (gang.ts) and torchrun's rendezvous options. */
  gang?: { node: GangNode; args: string };
}

/**
 * Why a job's child was stopped when its lease lapsed, and what happens next, true to the job's attempts: the queue
 * runs it again only while attempts remain.
 */
export function lostLockMessage(job: Pick<Job, 'attemptsMade' | 'opts' | 'id'>, leaseMs: number | undefined): string {
  const attempts = job.opts.attempts ?? 1;
  const attempt = job.attemptsMade + 1;
  const why = `this worker could not confirm its lock on the job for ${leaseMs !== undefined ? `${(leaseMs / 1000).toFixed(1)} s` : 'its lease'} (Redis unreachable or too slow to answer, or this process too busy to renew it), so it stopped the work`;
  return attempt < attempts
    ? `${why}; the queue runs the job again (attempt ${attempt + 1} of ${attempts})`
    : `${why}; that was its last attempt (${attempt} of ${attempts}): the run fails; bsft retry ${job.id} runs it again`;
}

/**
 * A queue worker running the steps of one BullMQ job: the trainer on the job's lease and epoch with its events
 * as job progress and job logs (checkpoints pushed to a hub store in the background), builds and scoring in a
 * child process (offload.ts) so that lock renewal never stalls, and notes in the job's log.
 */
export class QueueHost implements RunHost {
  /** What the job returns: the dataset hash of a build, the scores of a score job (`scores`, by split), the final path
   * of training; for builds and scoring, `work_ms`: the work itself in the offload child (the queue benchmark
   * subtracts it). */
  readonly result: Record<string, unknown> = {};
  private readonly pusher: BackgroundPusher;

  constructor(
    private readonly job: Job<RunJobData>,
    private readonly opts: QueueHostOptions,
  ) {
    this.pusher = new BackgroundPusher(opts.log);
  }

  trainerGpus(): number | undefined {
    return this.opts.gpus === undefined ? undefined : this.opts.gpus.split(',').length;
  }

  trainerUnavailable(recipe: ResolvedRecipe): Promise<string | undefined> {
    // A replacement trainer (--trainer) needs no Python of ours.
    return this.opts.trainer ? Promise.resolve(undefined) : trainerUnavailable(recipe);
  }

  async trainer(ctx: RunContext, command: TrainerCommand, config: string, args: string[]): Promise<TrainerRun> {
    const { job, opts } = this;
    const controller = new AbortController();
    const killer = new AbortController();
    let stopReason: StopReason | undefined;
    let lastEvent = Date.now();
    let total = 0;
    let resumed = 0;
    const stop = (reason: StopReason) => {
      stopReason ??= reason;
      // The job is no longer ours, or a machine of its gang is gone (the ranks would wait for it in a collective):
      // nothing the trainer writes now can be published (fencing), so no checkpoint.
      if (reason === 'lost-lock' || reason === 'node-lost') killer.abort();
      else controller.abort();
    };
    opts.onActive(stop, `the ${command === 'train' ? 'trainer after a checkpoint' : `trainer's ${command}`}`);
    const gang = command === 'train' ? opts.gang : undefined;
    let gangLost: GangProblem | undefined;
    const unwatch = gang ? gang.node.watch((problem) => {
      gangLost ??= problem;
      opts.log.warn({ run_id: ctx.recipe.run_id, node: gang.node.o.node, why: problem.why }, 'the run\'s gang is broken: stopping this machine\'s trainer');
      stop('node-lost');
    }) : () => undefined;
    let nodeLost: string | undefined;
    const watchdog = setInterval(() => {
      if (Date.now() - lastEvent > opts.silenceMs) {
        stopReason ??= 'silent';
        controller.abort();
      }
    }, Math.min(5000, opts.silenceMs / 2));
    const pending: Promise<unknown>[] = [];
    // This worker's own output: one line for the job (redrawn at a terminal, sparse records in a log).
    const shown = trainerProgress(command, args, { tty: process.stderr.isTTY === true, columns: process.stderr.columns, write: (t) => process.stderr.write(t), log: opts.log.child({ run_id: ctx.recipe.run_id }), prefix: ctx.recipe.run_id });
    let figures: Partial<JobProgress> = {};
    const onEvent = (e: TrainerEvent) => {
      lastEvent = Date.now();
      shown.onEvent(e);
      const { rate_per_s, eta_s } = shown.bar.snapshot();
      const rate = rate_per_s !== undefined ? { rate_per_s, ...(eta_s !== undefined ? { eta_s } : {}) } : {};
      if (e.event === 'start') {
        total = e.total_steps;
        resumed = e.resumed_from_step;
        figures = { resumed_from: resumed };
        this.progress({ stage: command, phase: 'starting', done: resumed, total, ...figures }, pending);
      } else if (e.event === 'step') {
        figures = { ...figures, loss: e.loss, lr: e.lr, tokens_per_s: e.tokens_per_s, mem_gib: e.mem_gib, mem_alloc_gib: e.mem_alloc_gib };
        this.progress({ stage: command, phase: 'running', done: e.step, total, ...figures, ...rate }, pending);
      } else if (e.event === 'progress') {
        total = e.total;
        this.progress({ stage: command, phase: 'running', done: e.done, total, ...rate }, pending);
      } else if (e.event === 'eval') {
        figures = { ...figures, eval_loss: e.loss };
      } else if (e.event === 'done') {
        this.progress({ stage: command, phase: 'done', done: total, total, ...figures }, pending, true);
      }
      // The job log keeps the loss history too, thinned to about 50 steps an attempt (every step is in metrics.jsonl).
      const logged = e.event === 'step' ? e.step % Math.max(1, Math.ceil(total / 50)) === 0 || e.step === total : e.event !== 'progress';
      if (logged) pending.push(e.event === 'error' ? this.logIfOurs({ ...e, phase: command }) : logJobEvent(job, { ...e, phase: command }));
      if (e.event === 'checkpoint') this.pushCheckpoint(ctx, e.step, e.path);
      if (e.event === 'done' && command === 'train') this.result.final_path = e.final_path;
    };
    try {
      const res = await runTrainer({
        command,
        config,
        cwd: ctx.runDir,
        args,
        ...(opts.trainer ? { program: opts.trainer } : {}),
        signal: controller.signal,
        kill: killer.signal,
        graceMs: ctx.recipe.train.preempt_grace_s * 1000,
        ...(opts.lease ? { lease: opts.lease } : {}),
        ...(opts.epoch !== undefined ? { epoch: opts.epoch } : {}),
        env: { ...(opts.gpus !== undefined ? { CUDA_VISIBLE_DEVICES: opts.gpus } : {}), ...(gang ? { BSFT_TORCHRUN_ARGS: gang.args } : {}) },
        onEvent,
        onLog: (line) => {
          lastEvent = Date.now();
          opts.log.debug({ run_id: ctx.recipe.run_id, trainer: line });
        },
      });
      unwatch();
      if (gang) {
        nodeLost = await this.gangEnded(gang, res, gangLost);
        if (nodeLost === undefined && stopReason === 'node-lost') stopReason = undefined; // the trainer's outcome decides
      }
      if (nodeLost !== undefined && stopReason !== 'cancel') stopReason = 'node-lost';
      if (opts.shuttingDown() && res.outcome !== 'done') stopReason ??= 'shutdown';
      // How the trainer ended, in the worker's own log (exit 74: this machine's disk is full; 75: preempted; ...).
      const ended = { run_id: ctx.recipe.run_id, command, exit: res.exitCode, signal: res.signal, outcome: res.outcome, ...(stopReason ? { stop: stopReason } : {}) };
      const how = `trainer ${command} ended: ${res.signal ?? `exit ${res.exitCode}`} (${res.outcome}${stopReason ? `, ${stopReason}` : ''})`;
      if (res.outcome === 'done') opts.log.info(ended, how);
      else opts.log.warn(ended, how);
      if (res.outcome === 'preempted' || stopReason === 'shutdown') await this.drainPushes();
      if (stopReason === 'cancel') await logJobEvent(job, { event: 'cancelled', exit: res.exitCode ?? res.signal });
      shown.bar.finish(res.outcome === 'done' ? '' : `stopped (${stopReason ?? res.outcome})`);
      return { ...res, ...(stopReason ? { stopReason } : {}), ...(stopReason === 'silent' ? { silenceMs: opts.silenceMs } : {}),
        ...(stopReason === 'lost-lock' || res.outcome === 'lease-lost' ? { lostLock: `${lostLockMessage(job, opts.lease?.ms)}; it resumes from its newest checkpoint` } : {}),
        ...(stopReason === 'node-lost' ? { nodeLost: nodeLost ?? 'a machine of the run was lost' } : {}) };
    } finally {
      unwatch();
      clearInterval(watchdog);
      opts.onActive(undefined);
      await Promise.allSettled(pending);
    }
  }

  /**
   * A machine of a run across machines whose trainer ended: it reports how (gang.ts; a failure stops the other machines
   * at once). Machine 0, when its own trainer did not finish, waits for the others' reports, and the run's outcome is
   * then: a config or data error on any machine (the others' ranks only lost their peers) → that error; a machine lost
   * (no report, its key lapsed; or a newer gang) → returns why: back to waiting as after a preemption; a machine whose
   * trainer failed → a retryable failure naming it (`res` rewritten); else the trainer's own outcome.
   */
  private async gangEnded(gang: NonNullable<QueueHostOptions['gang']>, res: TrainerResult, problem: GangProblem | undefined): Promise<string | undefined> {
    const { node } = gang;
    await node.report(res);
    if (node.o.node !== 0) {
      await logJobEvent(this.job, { event: 'node-ended', node: node.o.node, worker: node.o.worker, exit: res.exitCode ?? res.signal, outcome: res.outcome });
      return problem?.why;
    }
    if (res.outcome === 'done') {
      await node.end('ended');
      return undefined;
    }
    const { lost, reports } = await node.othersEnded();
    for (const [k, r] of Object.entries(reports)) if (k !== '0') await logJobEvent(this.job, { event: 'node-ended', node: Number(k), worker: r.worker, exit: r.exit, outcome: r.outcome, ...(r.message ? { message: r.message } : {}) });
    const why = lost.length ? `${lost.join(', ')} of the run was lost (it ended without a report)` : problem?.why;
    await node.end('broken', why ?? `machine 0 (worker ${node.o.worker}) ended: ${res.outcome}`);
    if (res.outcome === 'invalid') return undefined;
    const invalid = Object.entries(reports).find(([k, r]) => k !== '0' && r.outcome === 'invalid');
    if (invalid) {
      const [k, r] = invalid;
      res.outcome = 'invalid';
      res.error = { event: 'error', kind: 'config', message: `machine ${k} (worker ${r.worker}): ${r.message ?? `exit ${r.exit}`}` };
      return undefined;
    }
    if (lost.length || problem?.cause === 'lost') return why;
    if (problem?.cause === 'failed') {
      res.outcome = 'failed';
      res.error = { event: 'error', kind: 'internal', message: problem.why };
    }
    return undefined;
  }

  /**
   * A trainer's error, in the job's log only while this attempt owns the run: a stale attempt's (a newer epoch took
   * the run while this one was frozen or cut off) goes to this worker's log, as the job's log is the newer attempt's,
   * which may have completed.
   */
  private async logIfOurs(record: Record<string, unknown>): Promise<void> {
    if (await this.opts.ownsRun().catch(() => false)) await logJobEvent(this.job, record);
    else this.opts.log.warn({ run_id: this.job.id, stale_epoch: this.opts.epoch, trainer: record }, "a stale attempt's trainer error, kept out of the job's log");
  }

  private lastProgress = 0;

  /**
   * The job's progress: the percent as `job.progress` (Bull Board's bar), the figures in its data. At most four
   * writes a second while running; phase changes always.
   */
  private progress(p: Omit<JobProgress, 'updated_at'>, pending: Promise<unknown>[], force = false): void {
    const now = Date.now();
    if (!force && p.phase === 'running' && p.done < p.total && now - this.lastProgress < 250) return;
    this.lastProgress = now;
    const { job } = this;
    const progress: JobProgress = { ...p, updated_at: now };
    const { progress: _old, ...rest } = job.data;
    // First in the data, so that it is what Bull Board's Data tab shows at the top.
    pending.push(job.updateData({ progress, ...rest }).then(() => job.updateProgress(percentOf(progress))));
  }

  /** A hub run's checkpoint goes to the store in the background (training never waits for the network). */
  private pushCheckpoint(ctx: RunContext, step: number, dir: string): void {
    const { store } = this.opts;
    if (store.kind !== 'hub') return;
    this.pusher.enqueue(`checkpoint ${step}`, async () => {
      if (!(await this.opts.ownsRun())) throw new Error(`attempt epoch ${this.opts.epoch} is stale: not pushing checkpoint ${step}`);
      await store.push(ctx.recipe.run_id, dir, `checkpoints/${path.basename(dir)}`);
      await pruneRemote(store, ctx.recipe.run_id, ctx.recipe.store.keep_remote);
    });
  }

  /** The last checkpoint must reach the store before another machine takes the job. */
  async drainPushes(): Promise<void> {
    await this.pusher.drain().catch((e) => this.opts.log.warn({ err: (e as Error).message }, 'last checkpoint push failed'));
  }

  /**
   * A task in the offload child, for as long as this job is ours: cancel, shutdown and a lost lock stop the child
   * (as they stop a trainer), and the step then ends as a stopped trainer's does.
   */
  private async offloaded<T>(what: 'build' | 'score', run: (signal: AbortSignal, lease?: ChildLease) => Promise<T>): Promise<T> {
    const controller = new AbortController();
    let reason: StopReason | undefined;
    const stop = (r: StopReason) => {
      reason ??= r;
      controller.abort();
    };
    this.opts.onActive(stop, what === 'build' ? 'the dataset build (nothing of it is kept)' : 'the scoring');
    // Redis unreachable: the worker cannot tell whether it still owns the job, so the child stops within the lease.
    // Each confirmation is also the child's heartbeat (its own lease, when this process is frozen or cut off).
    let beat: ((checkedAt: number) => void) | undefined;
    const unwatch = this.opts.lease ? watchLease(this.opts.lease, (checkedAt) => beat?.(checkedAt), () => stop('lost-lock')) : () => undefined;
    const childLease = this.opts.lease ? { ms: this.opts.lease.ms, onBeat: (send: (checkedAt: number) => void) => (beat = send) } : undefined;
    try {
      return await run(controller.signal, childLease);
    } catch (e) {
      if (!(e instanceof OffloadStopped)) throw e;
      if (reason === 'cancel') throw new CancelledError();
      if (reason === 'shutdown') throw new PreemptedError('worker shutdown');
      throw new OffloadError(`${e.message}: ${lostLockMessage(this.job, this.opts.lease?.ms)}`);
    } finally {
      unwatch();
      this.opts.onActive(undefined);
    }
  }

  async buildDataset(recipe: ResolvedRecipe, outDir: string): Promise<BuildSummary> {
    const pending: Promise<unknown>[] = [];
    this.progress({ stage: 'build', phase: 'starting', done: 0, total: 1 }, pending, true);
    // Runs of one submission that share their data section share one build (by dataset hash).
    const cacheDir = path.join(path.dirname(path.dirname(outDir)), '_datasets');
    const { value: res, workMs } = await this.offloaded('build', (signal, lease) => this.opts.offload.run({ kind: 'build', recipe, outDir, cacheDir }, signal, lease));
    this.result.work_ms = Math.round(workMs);
    this.result.dataset_hash = res.dataset_hash;
    this.progress({ stage: 'build', phase: 'done', done: 1, total: 1 }, pending, true);
    await Promise.allSettled(pending);
    return res;
  }

  async scoreSplits(runDir: string, splits: string[]): Promise<ScoreSummary> {
    const pending: Promise<unknown>[] = [];
    this.progress({ stage: 'score', phase: 'starting', done: 0, total: splits.length }, pending, true);
    const { value: scores, workMs } = await this.offloaded('score', (signal, lease) => this.opts.offload.run({ kind: 'score', runDir, splits }, signal, lease));
    this.result.work_ms = Math.round(workMs);
    this.progress({ stage: 'score', phase: 'done', done: splits.length, total: splits.length }, pending, true);
    await Promise.allSettled(pending);
    this.result.scores = Object.fromEntries(Object.entries(scores).map(([split, s]) => [split, { macro_f1: s.macro_f1, accuracy: s.accuracy }]));
    return scores;
  }

  async pull(ctx: RunContext, folders: StoreFolder[]): Promise<void> {
    const { store } = this.opts;
    for (const p of await pullFolders(store, ctx.recipe.run_id, ctx.runDir, folders, this.opts.log)) await logJobEvent(this.job, { event: 'pulled', ...p, store: store.describe() });
  }

  async push(ctx: RunContext, folders: StoreFolder[]): Promise<void> {
    const { store } = this.opts;
    if (store.kind !== 'hub') return;
    await this.pusher.drain();
    if (!(await this.opts.ownsRun())) throw new Error(`attempt epoch ${this.opts.epoch} is stale: a newer attempt owns ${ctx.recipe.run_id}; not pushing ${folders.join(', ')}`);
    const pushed = await pushFolders(store, ctx.recipe, ctx.runDir, folders);
    if (pushed.length) await logJobEvent(this.job, { event: 'pushed', what: pushed.join(' and '), store: store.describe() });
  }

  async note(record: Record<string, unknown> & { event: string }): Promise<void> {
    await logJobEvent(this.job, record);
  }
}
