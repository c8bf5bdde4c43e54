import type { RunQueues, RunView } from '../queue/runs.js';
import { table } from '../util/table.js';
import { yamlValue } from './points.js';
import type { SweepRecord } from './resolve-sweep.js';

/** A sweep as tables: its title, its points with their values, and its runs' states. */

/** `train.lr` × `train.lora.r` (grid), or `8 random points of train.lr (seed 0)`. */
export function sweepTitle(r: SweepRecord): string {
  const keys = r.keys.join(' × ');
  return r.spec.random ? `${r.points.length} random points of ${r.keys.join(', ')} (seed ${r.spec.random.seed})` : `${r.points.length} points, grid ${keys}`;
}

/** The points as rows: #, one column per swept key, run id, then `extra` (a header and a cell per point). */
export function pointRows(r: SweepRecord, extra: { head: string[]; cells: (runId: string, index: number) => string[] } = { head: [], cells: () => [] }): string[] {
  return table([['#', ...r.keys, 'run', ...extra.head], ...r.points.map((p) => [String(p.index), ...r.keys.map((k) => yamlValue(p.values[k])), p.run_id, ...extra.cells(p.run_id, p.index)])],
    [...r.keys.map((_, i) => i + 1), r.keys.length + 1, ...extra.head.map((_, i) => r.keys.length + 2 + i)]);
}

/** The queue's view of each point's run (undefined where it is not queued), in the points' order. */
export const pointViews = (q: RunQueues, r: SweepRecord): Promise<(RunView | undefined)[]> => Promise.all(r.points.map((p) => q.view(p.run_id)));

/** How many of a sweep's runs are in each state, e.g. `2 completed, 1 training, 1 waiting`. */
export function stateCounts(views: (RunView | undefined)[]): string {
  const counts = new Map<string, number>();
  for (const v of views) counts.set(v?.state ?? 'not queued', (counts.get(v?.state ?? 'not queued') ?? 0) + 1);
  return [...counts].map(([s, n]) => `${n} ${s}`).join(', ');
}

