import { UsageError } from '../errors.js';
import { retryHint } from '../queue/advice.js';
import { keys } from '../queue/names.js';
import type { Redis } from 'ioredis';
import { ENDED_STATES, type RunQueues, type RunView } from '../queue/runs.js';
import { findQueuedSweep } from '../sweep/sweep-files.js';
import { pointViews, stateCounts } from '../sweep/sweep-view.js';
import { EXIT, type CommandImpl } from './command.js';
import { withQueues } from './queue-args.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const cancel: CommandImpl = {
  async run([runId], values, { out }) {
    if (!runId === !values.sweep) throw new UsageError('name a run to cancel, or --sweep NAME (every point of a sweep that has not ended)');
    return withQueues(async (q, redis) => {
      let ids: string[];
      if (values.sweep) {
        const record = await findQueuedSweep(redis, values.sweep as string);
        const views = await pointViews(q, record);
        ids = views.filter((v) => v && v.state !== 'completed' && v.state !== 'cancelled').map((v) => v!.runId);
        out(`sweep ${record.name}: ${stateCounts(views)}; cancelling ${ids.length} point(s)`);
      } else {
        const view = await q.view(runId!);
        if (!view) throw new UsageError(`no run ${runId} in the queue`);
        if (view.state === 'completed' || view.state === 'cancelled') {
          out(`run ${runId} is already ${view.state}`);
          return EXIT.ok;
        }
        ids = [runId!];
      }
      let reached = 0;
      for (const id of ids) {
        await redis.set(keys.cancelled(id), new Date().toISOString());
        reached = Math.max(reached, await redis.publish(keys.cancelChannel(), id));
      }
      // An active stage is stopped by its worker (after a checkpoint); a waiting stage fails when a worker takes it.
      for (const id of ids) out(`cancel sent for run ${id} (${reached} worker(s) listening)`);
      if (values['no-wait'] || !ids.length) return EXIT.ok;
      let grace = 0;
      for (const id of ids) grace = Math.max(grace, (await q.jobs(id)).train?.data.recipe.train.preempt_grace_s ?? 60);
      const until = Date.now() + (grace + 15) * 1000;
      const pending = new Set(ids);
      while (pending.size && Date.now() < until) {
        for (const id of [...pending]) {
          const v = await q.view(id);
          if (!v || ENDED_STATES.includes(v.state)) {
            pending.delete(id);
            out(`run ${id}: ${v?.state ?? 'cancelled'}`);
            // Its later stages stay in the queue, waiting on the stopped one (BullMQ's waiting-children).
            if (v && v.state !== 'completed') out(`  bsft retry ${id} resumes it; bsft rm ${id} removes it (folder and queued jobs)`);
          }
        }
        if (pending.size) await sleep(250);
      }
      if (!pending.size) return EXIT.ok;
      out(`${[...pending].map((id) => `run ${id}`).join(', ')}: the worker has not confirmed yet; check with bsft status`);
      return EXIT.failure;
    });
  },
};

/** Puts a run's failed stages back in the queue and withdraws its cancel; says what each means. */
async function retryRun(q: RunQueues, redis: Redis, runId: string, out: (line: string) => void): Promise<void> {
  const jobs = await q.jobs(runId);
  if (!jobs.score && !jobs.train && !jobs.build) throw new UsageError(`no run ${runId} in the queue`);
  const wasCancelled = (await redis.del(keys.cancelled(runId))) === 1;
  const retried: string[] = [];
  for (const [stage, job] of Object.entries(jobs)) {
    if ((await job!.getState()) === 'failed') {
      await job!.retry('failed');
      retried.push(stage);
    }
  }
  // Each failed stage says what running it again means (a build reads the task files again; training resumes).
  for (const stage of retried) out(`run ${runId}: ${stage} back in the queue; ${stage === 'build' ? 'it reads the task files again' : retryHint(stage)}`);
  if (!retried.length) out(wasCancelled ? `run ${runId}: cancel withdrawn; its waiting stages will run` : `run ${runId} has no failed stage`);
}

export const retry: CommandImpl = {
  async run([runId], values, { out }) {
    if (!runId === !values.sweep) throw new UsageError('name a run to retry, or --sweep NAME (every failed or cancelled point of a sweep)');
    return withQueues(async (q, redis) => {
      if (!values.sweep) {
        await retryRun(q, redis, runId!, out);
        return EXIT.ok;
      }
      const record = await findQueuedSweep(redis, values.sweep as string);
      const views = await pointViews(q, record);
      const ended = views.filter((v): v is RunView => !!v && (v.state === 'failed' || v.state === 'cancelled'));
      out(`sweep ${record.name}: ${stateCounts(views)}; retrying ${ended.length} point(s)`);
      for (const v of ended) await retryRun(q, redis, v.runId, out);
      return EXIT.ok;
    });
  },
};
