import { STAGES, queueName } from '../queue/names.js';
import type { Redis } from 'ioredis';
import type { RunQueues, RunView } from '../queue/runs.js';
import { findQueuedSweep, queuedSweep, queuedSweeps } from '../sweep/sweep-files.js';
import { pointRows, pointViews, stateCounts, sweepTitle } from '../sweep/sweep-view.js';
import { percentOf, type JobProgress } from '../queue/job-data.js';
import { formatDuration, formatGib } from '../util/progress.js';
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

/**
 * Why a run waits for GPUs, failed, was cancelled or is waiting to retry: what it waits for, else the first line
 * of its job's failure, shortened.
 */
export function reason(v: RunView, width = 60): string {
  const first = v.waitingFor ? `waiting for ${v.waitingFor}` : v.failedReason?.split('\n')[0]?.trim();
  if (!first) return '-';
  return first.length > width ? `${first.slice(0, width - 1)}…` : first;
}

/** The columns of `runRow`, for every table of runs (status, reproduce). */
export const RUN_COLUMNS = ['run', 'state', 'progress', 'loss', 'tok/s', 'ETA', 'mem (peak)', 'worker', 'age', 'reason'];
/** The text columns of RUN_COLUMNS (left-aligned; the figures are right-aligned). */
export const RUN_TEXT_COLUMNS = ['state', 'progress', 'worker', 'reason'].map((c) => RUN_COLUMNS.indexOf(c));

/** `train   [######----]  60%  30/50`: the stage a run is in, as a bar. */
export function progressCell(p: JobProgress): string {
  const pct = percentOf(p);
  const filled = Math.round(pct / 10);
  return `${p.stage.padEnd(7)} [${'#'.repeat(filled)}${'-'.repeat(10 - filled)}] ${String(Math.floor(pct)).padStart(3)}%  ${p.done}/${p.total}`;
}

export function runRow(v: RunView, now = Date.now()): string[] {
  const p = v.progress;
  const running = p && p.phase !== 'done' && !['completed', 'failed', 'cancelled'].includes(v.state);
  return [
    v.runId,
    v.state,
    p ? progressCell(p) : '-',
    p?.loss !== undefined ? p.loss.toFixed(4) : '-',
    p?.tokens_per_s !== undefined ? Math.round(p.tokens_per_s).toLocaleString('en') : '-',
    running && p.eta_s !== undefined ? formatDuration(Math.max(0, p.eta_s - (now - p.updated_at) / 1000)) : '-',
    p?.mem_gib !== undefined ? `${p.mem_alloc_gib !== undefined ? `${p.mem_alloc_gib.toFixed(1)} ` : ''}(${formatGib(p.mem_gib)})` : '-',
    v.worker ?? '-',
    age(now - v.submittedAt),
    reason(v),
  ];
}

/** `bsft status --sweep NAME`: the sweep's points, each with its values and its run's row. */
async function sweepStatus(q: RunQueues, redis: Redis, name: string, json: boolean, out: (line: string) => void): Promise<number> {
  const record = await findQueuedSweep(redis, name);
  const views = await pointViews(q, record);
  if (json) {
    out(JSON.stringify({ sweep: record, runs: views.map((v, i) => v ?? { runId: record.points[i]!.run_id, state: 'not queued' }) }, null, 2));
    return EXIT.ok;
  }
  const byId = new Map(views.filter((v): v is RunView => !!v).map((v) => [v.runId, v]));
  out(`sweep ${record.name}: ${sweepTitle(record)}; ${stateCounts(views)}`);
  const cols = RUN_COLUMNS.slice(1);
  for (const l of pointRows(record, { head: cols, cells: (id) => { const v = byId.get(id); return v ? runRow(v).slice(1) : ['not queued', ...cols.slice(1).map(() => '-')]; } })) out(l);
  return EXIT.ok;
}

export const status: CommandImpl = {
  async run(_args, values, { out }) {
    const limit = intOption(values, 'limit')!;
    return withQueues(async (q, redis) => {
      if (values.sweep) return sweepStatus(q, redis, values.sweep as string, values.json === true, out);
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
      else out(table([RUN_COLUMNS, ...views.map((v) => runRow(v))], RUN_TEXT_COLUMNS).join('\n'));
      const sweeps = await queuedSweeps(redis, 10); // the newest ten; bsft status --sweep NAME for any
      if (sweeps.length) {
        out('');
        const rows = [['sweep', 'points', 'states', 'created']];
        const seen = new Map(views.map((v) => [v.runId, v]));
        for (const name of sweeps) {
          const record = await queuedSweep(redis, name);
          if (!record) continue;
          // The runs listed above are not asked for again.
          const states = await Promise.all(record.points.map((p) => seen.get(p.run_id) ?? q.view(p.run_id)));
          rows.push([name, String(record.points.length), stateCounts(states), record.created_at.slice(0, 16).replace('T', ' ')]);
        }
        out(table(rows, [2, 3]).join('\n'));
        out('a sweep\'s points: bsft status --sweep NAME');
      }
      return EXIT.ok;
    });
  },
};
