import { UsageError } from '../errors.js';
import path from 'node:path';
import { STAGES, type Stage } from '../queue/names.js';
import { readMetrics, thin } from '../score/run-meta.js';
import { table } from '../util/table.js';
import { EXIT, type CommandImpl } from './command.js';
import { withQueues } from './queue-args.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The run's metrics history, where its folder is readable here: up to 20 steps evenly spaced, and every eval. */
export function metricsSummary(runDir: string): string[] {
  const lines = readMetrics(runDir);
  const steps = lines.filter((m) => m.kind === 'step');
  if (!steps.length) return [];
  const kept = new Set(thin(steps, 20));
  const shown = lines.filter((m) => m.kind === 'eval' || kept.has(m));
  return [
    `metrics (${path.join(runDir, 'metrics.jsonl')}, ${steps.length} steps):`,
    ...table([['step', 'loss', 'lr', 'val loss'], ...shown.map((m) => [String(m.step), m.kind === 'step' ? m.loss.toFixed(4) : '', m.lr !== undefined ? m.lr.toExponential(2) : '', m.kind === 'eval' ? m.loss.toFixed(4) : ''])]).map((l) => `  ${l}`),
  ];
}

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
        if (ended || !values.follow) {
          const dir = (await q.jobs(runId!)).train?.data.run_dir;
          for (const line of dir ? metricsSummary(dir) : []) out(line);
        }
        if (ended) out(`-- run ${runId}: ${v?.state ?? 'gone'}`);
        if (ended || !values.follow) return EXIT.ok;
        await sleep(1000);
      }
    });
  },
};
