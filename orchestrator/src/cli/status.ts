import { STAGES, queueName } from '../queue/names.js';
import type { RunView } from '../queue/runs.js';
import { table } from '../util/table.js';
import { EXIT, intOption, type CommandImpl } from './command.js';
import { withQueues } from './queue-args.js';

export function age(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${Math.floor((s % 86400) / 3600)}h`;
}

/** Why a run failed, was cancelled or is waiting to retry: the first line of its job's failure, shortened. */
export function reason(v: RunView, width = 60): string {
  const first = v.failedReason?.split('\n')[0]?.trim();
  if (!first) return '-';
  return first.length > width ? `${first.slice(0, width - 1)}…` : first;
}

/** The columns of `runRow`, for every table of runs (status, reproduce). */
export const RUN_COLUMNS = ['run', 'state', 'step', 'loss', 'tok/s', 'worker', 'age', 'reason'];

export function runRow(v: RunView, now = Date.now()): string[] {
  const p = v.progress;
  return [
    v.runId,
    v.state,
    p ? `${p.step}/${p.total_steps}` : '-',
    p?.loss !== undefined ? p.loss.toFixed(4) : '-',
    p?.tokens_per_s !== undefined ? Math.round(p.tokens_per_s).toLocaleString('en') : '-',
    v.worker ?? '-',
    age(now - v.submittedAt),
    reason(v),
  ];
}

export const status: CommandImpl = {
  async run(_args, values, { out }) {
    const limit = intOption(values, 'limit')!;
    return withQueues(async (q) => {
      const counts = Object.fromEntries(
        await Promise.all(STAGES.map(async (s) => [s, await q.queues[s].getJobCounts('waiting', 'prioritized', 'active', 'delayed', 'waiting-children', 'completed', 'failed')])),
      ) as Record<string, Record<string, number>>;
      const views = (await Promise.all((await q.runIds(limit)).map((id) => q.view(id)))).filter((v): v is RunView => !!v);
      if (values.json) {
        out(JSON.stringify({ queues: counts, runs: views }, null, 2));
        return EXIT.ok;
      }
      // Runs wait in BullMQ's "prioritized" set (every run has a priority): both are shown as waiting.
      const cols = ['waiting', 'active', 'delayed', 'waiting-children', 'completed', 'failed'];
      const count = (s: string, c: string) => (counts[s]![c] ?? 0) + (c === 'waiting' ? (counts[s]!.prioritized ?? 0) : 0);
      out(table([['queue', ...cols], ...STAGES.map((s) => [queueName(s), ...cols.map((c) => String(count(s, c)))])]).join('\n'));
      out('');
      if (views.length === 0) out('no runs');
      else out(table([RUN_COLUMNS, ...views.map((v) => runRow(v))]).join('\n'));
      return EXIT.ok;
    });
  },
};
