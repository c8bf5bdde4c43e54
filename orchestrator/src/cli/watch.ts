import { UsageError } from '../errors.js';
import { QueueEvents } from 'bullmq';
import { RedisWatch, workerConnection } from '../queue/connection.js';
import type { TrainProgress } from '../queue/job-data.js';
import { queueName, queuePrefix, STAGES } from '../queue/names.js';
import { formatProgress } from '../util/progress.js';
import { EXIT, type CommandImpl } from './command.js';
import { withQueues } from './queue-args.js';

function progressLine(p: TrainProgress, startedAt: number, startStep: number): string {
  const seconds = (Date.now() - startedAt) / 1000;
  const base = formatProgress('train', p.step, p.total_steps, 0, 'steps').replace(/\s+0(\.0)? steps\/s\s+ETA \S+$/, '');
  const done = p.step - startStep;
  const rate = seconds > 0 ? done / seconds : 0;
  const eta = rate > 0 ? (p.total_steps - p.step) / rate : Infinity;
  const etaText = Number.isFinite(eta) ? `${Math.round(eta)}s` : '?';
  return `${base}  loss ${p.loss?.toFixed(4) ?? '-'}  ${p.tokens_per_s ? Math.round(p.tokens_per_s).toLocaleString('en') : '-'} tok/s  ETA ${etaText}`;
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
      let lastPrinted = 0;
      const startedAt = Date.now();
      let startStep = initial.progress?.step ?? 0;
      let trainActive = initial.stages.train === 'active';
      let lastLine = '';
      const show = (line: string, force = false) => {
        if (tty) process.stdout.write(`\r\x1b[2K${line}`);
        else if (force || Date.now() - lastPrinted > 5000) {
          out(line);
          lastPrinted = Date.now();
        }
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
              show(`${stage}: started`, true);
            });
            e.on('completed', ({ jobId }) => {
              if (jobId !== runId) return;
              if (stage === 'train' && lastLine) show(lastLine, true);
              show(`${stage}: completed`, true);
              void check();
            });
            e.on('failed', ({ jobId, failedReason }) => jobId === runId && (show(`${stage}: failed: ${failedReason}`, true), void check()));
            e.on('waiting', ({ jobId }) => {
              if (jobId !== runId || stage !== 'train' || !trainActive) return;
              trainActive = false;
              show('train: back in waiting (preempted or its worker stopped); it resumes from its newest checkpoint', true);
            });
          });
          events[1]!.on('progress', ({ jobId, data }) => {
            if (jobId !== runId || typeof data !== 'object') return;
            const p = data as unknown as TrainProgress;
            if (p.phase === 'starting') startStep = p.step;
            lastLine = progressLine(p, startedAt, startStep);
            show(lastLine, p.phase === 'starting');
          });
          void check();
          if (initial.progress) show(progressLine(initial.progress, startedAt, startStep), true);
          else show(`run ${runId}: ${initial.state}`, true);
        });
        if (tty) process.stdout.write('\n');
        const v = await q.view(runId!);
        const scores = outcome === 'completed' ? ((await q.jobs(runId!)).score?.returnvalue ?? null) : null;
        if (json) print(JSON.stringify({ run_id: runId, outcome, view: v ?? null, scores }, null, 2));
        out(`run ${runId}: ${outcome}${v?.failedReason ? ` (${v.failedReason})` : ''}`);
        if (scores) out(`scores: ${JSON.stringify(scores)}`);
        return outcome === 'completed' ? EXIT.ok : EXIT.failure;
      } finally {
        // Closing the event readers does not close connections we passed in: disconnect them (a blocked read too).
        for (const c of connections) c.disconnect();
        await Promise.allSettled(events.map((e) => e.close()));
      }
    });
  },
};
