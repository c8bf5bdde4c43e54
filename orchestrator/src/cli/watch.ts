import { UsageError } from '../errors.js';
import { QueueEvents } from 'bullmq';
import { RedisWatch, workerConnection } from '../queue/connection.js';
import type { JobProgress } from '../queue/job-data.js';
import { queueName, queuePrefix, STAGES } from '../queue/names.js';
import { ProgressLine } from '../util/progress.js';
import { table } from '../util/table.js';
import type { ScoreSummary } from '../run/stage-summary.js';
import type { Estimate } from '../score/metrics.js';
import { EXIT, type CommandImpl } from './command.js';
import { withQueues } from './queue-args.js';

/** The score job's result as a table: macro-F1 and accuracy per split, with their intervals. */
function scoreTable(scores: ScoreSummary): string[] {
  const pct = (m: Estimate) => `${(100 * m.value).toFixed(1)}${m.ci ? ` [${(100 * m.ci[0]).toFixed(1)}, ${(100 * m.ci[1]).toFixed(1)}]` : ''}`;
  return table([['split', 'behavior macro-F1 [95% CI]', 'accuracy [95% CI]'], ...Object.entries(scores).map(([split, s]) => [split, pct(s.macro_f1), pct(s.accuracy)])]);
}

export const watch: CommandImpl = {
  async run([runId], values, { log, out: print }) {
    const json = values.json === true;
    const out = (line: string) => !json && print(line);
    return withQueues(async (q) => {
      const initial = await q.view(runId!);
      if (!initial) throw new UsageError(`no run ${runId} in the queue`);
      const tty = process.stdout.isTTY === true && !json;
      const redis = new RedisWatch(log);
      const connections = STAGES.map(() => workerConnection(undefined, redis));
      const events = STAGES.map((s, i) => redis.watch(new QueueEvents(queueName(s), { connection: connections[i]!, prefix: queuePrefix() }), s));
      await Promise.all(events.map((e) => e.waitUntilReady()));
      let trainActive = initial.stages.train === 'active';
      // One progress line per stage (build, train, predict, score): rate and ETA from the recent steps of the current
      // attempt (a preemption's downtime and the steps done before it do not count); on a terminal redrawn in place,
      // else a line every tenth or 30 s. The figures come from the job's data; its numeric progress says when.
      let bar: ProgressLine | undefined;
      let barStage = '';
      const newBar = (stage: string): ProgressLine => {
        const line: ProgressLine = new ProgressLine(stage, stage === 'train' ? 'step' : 'task', (text) => process.stdout.write(text), {
          tty,
          columns: process.stdout.columns,
          record: () => out(line.render()),
        });
        return line;
      };
      const show = (line: string) => (tty && bar ? bar.note(line) : out(line));
      const onProgress = (p: JobProgress) => {
        if (p.stage !== barStage || !bar) {
          bar?.finish();
          bar = newBar(p.stage);
          barStage = p.stage;
          bar.start(p.total, p.done);
        } else if (p.phase === 'starting') bar.start(p.total, p.done); // a new attempt: the rate starts again
        else if (!bar.isStarted) return; // a late record of a stage whose line has ended
        else bar.update(p.done, { loss: p.loss, tokens_per_s: p.tokens_per_s, mem_alloc_gib: p.mem_alloc_gib, mem_gib: p.mem_gib });
        if (p.phase === 'done') bar.finish();
      };
      try {
        const outcome = await new Promise<string>((resolve) => {
          const check = async () => {
            const v = await q.view(runId!);
            if (!v) return resolve('removed');
            if (['completed', 'failed', 'cancelled'].includes(v.state)) resolve(v.state);
          };
          STAGES.forEach((stage, i) => {
            const e = events[i]!;
            e.on('active', ({ jobId }) => {
              if (jobId !== runId) return;
              if (stage === 'train') trainActive = true;
              show(`${stage}: started`);
            });
            e.on('completed', ({ jobId }) => {
              if (jobId !== runId) return;
              if (barStage === stage || (stage === 'train' && barStage === 'predict')) bar?.finish();
              show(`${stage}: completed`);
              void check();
            });
            e.on('failed', ({ jobId, failedReason }) => {
              if (jobId !== runId) return;
              bar?.finish('failed');
              show(`${stage}: failed: ${failedReason}`);
              void check();
            });
            e.on('waiting', ({ jobId }) => {
              if (jobId !== runId || stage !== 'train' || !trainActive) return;
              trainActive = false;
              show('train: back in waiting (preempted or its worker stopped); it resumes from its newest checkpoint');
            });
          });
          STAGES.forEach((stage, i) => {
            events[i]!.on('progress', ({ jobId }) => {
              if (jobId !== runId) return;
              void q.queues[stage].getJob(runId).then((job) => job?.data.progress && onProgress(job.data.progress));
            });
          });
          void check();
          if (initial.progress) onProgress(initial.progress);
          else show(`run ${runId}: ${initial.state}`);
        });
        bar?.finish();
        const v = await q.view(runId!);
        const scores = outcome === 'completed' ? ((await q.jobs(runId!)).score?.returnvalue as { scores?: ScoreSummary } | undefined)?.scores ?? null : null;
        if (json) print(JSON.stringify({ run_id: runId, outcome, view: v ?? null, scores }, null, 2));
        out(`run ${runId}: ${outcome}${v?.failedReason ? ` (${v.failedReason})` : ''}`);
        if (scores) for (const line of scoreTable(scores)) out(line);
        return outcome === 'completed' ? EXIT.ok : EXIT.failure;
      } finally {
        // Closing the event readers does not close connections we passed in: disconnect them (a blocked read too).
        for (const c of connections) c.disconnect();
        await Promise.allSettled(events.map((e) => e.close()));
      }
    });
  },
};
