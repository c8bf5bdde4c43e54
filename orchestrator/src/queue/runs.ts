import type { Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { JobProgress, RunJobData } from './job-data.js';
import { isNodeJobId, keys, queueName, queuePrefix, STAGES, type Stage } from './names.js';
import { readGang } from './gang-record.js';
import { RunQueue } from './run-job.js';

export type RunState = 'waiting' | 'building' | 'training' | 'scoring' | 'completed' | 'failed' | 'cancelled' | 'retrying';

/** The states a run does not leave by itself (bsft retry takes a failed or cancelled one back). */
export const ENDED_STATES: readonly RunState[] = ['completed', 'failed', 'cancelled'];

export interface RunView {
  runId: string;
  state: RunState;
  stages: Partial<Record<Stage, string>>;
  /** The figures of the stage running now, or of the last one that reported. */
  progress?: JobProgress;
  worker?: string;
  failedReason?: string;
  /** A train job delayed for GPUs: what it waits for. */
  waitingFor?: string;
  submittedAt: number;
  attempts: number;
  /** A run across machines while its gang gathers or trains: each machine's worker and whether it is alive. */
  nodes?: { node: number; worker: string; alive: boolean; report?: string }[];
}

/** The three queues of a run, opened on one connection. */
export class RunQueues {
  readonly queues: Record<Stage, RunQueue<RunJobData>>;

  constructor(readonly connection: Redis) {
    this.queues = Object.fromEntries(STAGES.map((s) => [s, new RunQueue<RunJobData>(queueName(s), { connection, prefix: queuePrefix() })])) as Record<Stage, RunQueue<RunJobData>>;
  }

  async jobs(runId: string): Promise<Partial<Record<Stage, Job<RunJobData>>>> {
    const out: Partial<Record<Stage, Job<RunJobData>>> = {};
    for (const s of STAGES) {
      const job = await this.queues[s].getJob(runId);
      if (job) out[s] = job;
    }
    return out;
  }

  async view(runId: string): Promise<RunView | undefined> {
    const jobs = await this.jobs(runId);
    if (!jobs.score && !jobs.train && !jobs.build) return undefined;
    const stages: Partial<Record<Stage, string>> = {};
    // Every run has a BullMQ priority (see bullPriority), so BullMQ's "prioritized" is this run's "waiting".
    for (const s of STAGES) if (jobs[s]) stages[s] = await jobs[s]!.getState().then((st) => (st === 'prioritized' ? 'waiting' : st));
    const cancelled = (await this.connection.exists(keys.cancelled(runId))) === 1;
    const failed = STAGES.find((s) => stages[s] === 'failed');
    // A train job a worker delayed for want of GPUs (process-job.ts): waiting, not retrying. Every few seconds a
    // worker takes it back to look again (active for a moment); it clears waiting_for before it starts a trainer.
    const waitingFor = stages.train === 'delayed' || stages.train === 'active' ? jobs.train?.data.waiting_for : undefined;
    let state: RunState = 'waiting';
    const anyActive = STAGES.some((s) => stages[s] === 'active');
    if (stages.score === 'completed') state = 'completed';
    else if (failed) state = cancelled ? 'cancelled' : 'failed';
    else if (cancelled && !anyActive) state = 'cancelled';
    else if (stages.score === 'active') state = 'scoring';
    else if (waitingFor) state = 'waiting';
    else if (stages.train === 'active') state = 'training';
    else if (stages.build === 'active') state = 'building';
    else if (stages.train === 'delayed' || stages.build === 'delayed') state = 'retrying';
    const train = jobs.train;
    const any = (jobs.score ?? jobs.train ?? jobs.build)!;
    const activeJob = STAGES.map((s) => jobs[s]).find((j, i) => j && stages[STAGES[i]!] === 'active');
    const retrying = STAGES.map((s) => jobs[s]).find((j, i) => j && stages[STAGES[i]!] === 'delayed');
    // The active job's figures, else the newest any job of the run wrote.
    const progress = activeJob?.data.progress ?? STAGES.map((s) => jobs[s]?.data.progress).filter((p) => p).sort((a, b) => b!.updated_at - a!.updated_at)[0];
    const nodes = stages.train === 'active' && (train?.data.recipe?.resources?.nodes ?? 1) > 1 ? await this.gangNodes(runId) : undefined;
    return {
      runId,
      state,
      stages,
      ...(nodes ? { nodes } : {}),
      ...(progress ? { progress } : {}),
      ...(nodes?.length ? { worker: nodes.map((n) => n.worker).join(' + ') }
        : activeJob?.processedBy ? { worker: activeJob.processedBy } : train?.processedBy ? { worker: train.processedBy } : {}),
      // A failed run's reason, or the last failure of a stage waiting to retry.
      ...(failed ? { failedReason: jobs[failed]!.failedReason } : retrying?.failedReason ? { failedReason: retrying.failedReason } : {}),
      ...(waitingFor ? { waitingFor } : {}),
      submittedAt: any.timestamp,
      attempts: train?.attemptsMade ?? 0,
    };
  }

  /** The machines of a run across machines that joined its current gang (gang.ts), in order. */
  async gangNodes(runId: string): Promise<NonNullable<RunView['nodes']>> {
    const g = await readGang(this.connection, runId);
    if (!g) return [];
    const ids = Object.keys(g.joined).map(Number).sort((a, b) => a - b);
    const alive = ids.length ? await this.connection.mget(...ids.map((k) => keys.gangAlive(runId, g.epoch, k))) : [];
    return ids.map((k, i) => ({ node: k, worker: g.joined[k]!, alive: alive[i] !== null, ...(g.reports[k] ? { report: g.reports[k]!.outcome } : {}) }));
  }

  /**
   * Removes an ended run's jobs from the queues (`bsft rm`): the score job with its children (train, build), each
   * stage's job where it stands alone, the run's cancel mark, submit mark and gang record, so the same run id can be submitted
   * afresh at once. The fencing epoch stays (it only grows). Returns the stages removed. A job a worker holds cannot
   * be removed: BullMQ refuses it, and so does this (the run has not ended).
   */
  async remove(runId: string): Promise<Stage[]> {
    const jobs = await this.jobs(runId);
    const removed = STAGES.filter((s) => jobs[s]);
    for (const s of [...STAGES].reverse()) {
      // removeChildren: the parent takes its children in the other queues along (BullMQ's flow removal), so each
      // stage is looked up again: a child is usually gone by its turn.
      const job = await this.queues[s].getJob(runId);
      if (job) await job.remove({ removeChildren: true });
    }
    await this.connection.del(keys.cancelled(runId), keys.submitting(runId), keys.gang(runId));
    return removed;
  }

  /** Run ids seen in any queue, newest first. */
  async runIds(limit = 50): Promise<string[]> {
    const ids = new Map<string, number>();
    for (const s of STAGES) {
      const jobs = await this.queues[s].getJobs(['active', 'waiting', 'prioritized', 'delayed', 'waiting-children', 'failed', 'completed'], 0, limit * 2);
      // A machine's job of a run across machines (gang.ts) is part of its run, not a run.
      for (const j of jobs) if (j?.id && !isNodeJobId(j.id)) ids.set(j.id, Math.max(ids.get(j.id) ?? 0, j.timestamp));
    }
    return [...ids].sort((a, b) => b[1] - a[1]).slice(0, limit).map(([id]) => id);
  }

  async close(): Promise<void> {
    await Promise.all(STAGES.map((s) => this.queues[s].close()));
  }
}
