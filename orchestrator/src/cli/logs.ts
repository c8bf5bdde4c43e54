import { UsageError } from '../errors.js';
import { STAGES, type Stage } from '../queue/names.js';
import { EXIT, type CommandImpl } from './command.js';
import { withQueues } from './queue-args.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export const logs: CommandImpl = {
  async run([runId], values, { out }) {
    return withQueues(async (q) => {
      if (!(await q.view(runId!))) throw new UsageError(`no run ${runId} in the queue`);
      const seen: Record<Stage, number> = { build: 0, train: 0, score: 0 };
      for (;;) {
        for (const stage of STAGES) {
          const { logs: lines } = await q.queues[stage].getJobLogs(runId!, seen[stage], -1);
          for (const line of lines) out(`[${stage}] ${line}`);
          seen[stage] += lines.length;
        }
        const v = await q.view(runId!);
        const ended = !v || ['completed', 'failed', 'cancelled'].includes(v.state);
        if (ended || !values.follow) {
          // A failed stage's reason is in no log line of its own (a build that fails on bad data logs nothing else).
          for (const stage of STAGES) if (v?.stages[stage] === 'failed') out(`[${stage}] failed: ${(await q.queues[stage].getJob(runId!))?.failedReason ?? 'no reason recorded'}`);
        }
        if (ended) out(`-- run ${runId}: ${v?.state ?? 'gone'}`);
        if (ended || !values.follow) return EXIT.ok;
        await sleep(1000);
      }
    });
  },
};
