import { UsageError } from '../errors.js';
import { retryHint } from '../queue/advice.js';
import { keys } from '../queue/names.js';
import { EXIT, type CommandImpl } from './command.js';
import { withQueues } from './queue-args.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const cancel: CommandImpl = {
  async run([runId], values, { out }) {
    return withQueues(async (q, redis) => {
      const view = await q.view(runId!);
      if (!view) throw new UsageError(`no run ${runId} in the queue`);
      if (view.state === 'completed' || view.state === 'cancelled') {
        out(`run ${runId} is already ${view.state}`);
        return EXIT.ok;
      }
      await redis.set(keys.cancelled(runId!), new Date().toISOString());
      const reached = await redis.publish(keys.cancelChannel(), runId!);
      // An active stage is stopped by its worker (after a checkpoint); a waiting stage fails when a worker takes it.
      out(`cancel sent for run ${runId} (${reached} worker(s) listening)`);
      if (values['no-wait']) return EXIT.ok;
      const grace = (((await q.jobs(runId!)).train?.data.recipe.train.preempt_grace_s ?? 60) + 15) * 1000;
      const until = Date.now() + grace;
      while (Date.now() < until) {
        const v = await q.view(runId!);
        if (!v || v.state === 'cancelled' || v.state === 'failed' || v.state === 'completed') {
          out(`run ${runId}: ${v?.state ?? 'cancelled'}`);
          // Its later stages stay in the queue, waiting on the stopped one (BullMQ's waiting-children).
          if (v && v.state !== 'completed') out(`  bsft retry ${runId} resumes it; bsft rm ${runId} removes it (folder and queued jobs)`);
          return EXIT.ok;
        }
        await sleep(250);
      }
      out(`run ${runId}: the worker has not confirmed yet; check with bsft status`);
      return EXIT.failure;
    });
  },
};

export const retry: CommandImpl = {
  async run([runId], _values, { out }) {
    return withQueues(async (q, redis) => {
      const jobs = await q.jobs(runId!);
      if (!jobs.score && !jobs.train && !jobs.build) throw new UsageError(`no run ${runId} in the queue`);
      const wasCancelled = (await redis.del(keys.cancelled(runId!))) === 1;
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
      return EXIT.ok;
    });
  },
};
