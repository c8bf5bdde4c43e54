import path from 'node:path';
import { listRuns } from '../run/local-runs.js';
import { formatBytes } from '../util/format-bytes.js';
import { table } from '../util/table.js';
import { localSweeps, readSweep } from '../sweep/sweep-files.js';
import { EXIT, type CommandImpl } from './command.js';
import { pointRows, sweepTitle } from '../sweep/sweep-view.js';

/** `bsft runs`: the run folders of a runs folder, without Redis, the most recently changed first. */
export const runs: CommandImpl = {
  async run(_args, values, { out }) {
    const dir = path.resolve((values.dir as string | undefined) ?? 'runs');
    const sweep = values.sweep ? readSweep(dir, values.sweep as string) : undefined;
    const all = listRuns(dir);
    const found = sweep ? all.filter((r) => sweep.points.some((p) => p.run_id === r.run_id)) : all;
    if (values.json) {
      out(JSON.stringify(found, null, 2));
      return EXIT.ok;
    }
    if (sweep) {
      const byId = new Map(found.map((r) => [r.run_id, r]));
      out(`sweep ${sweep.name}: ${sweepTitle(sweep)}`);
      for (const l of pointRows(sweep, { head: ['progress', 'macro-F1', 'size', 'reason'], cells: (id) => {
        const r = byId.get(id);
        return r ? [r.progress, r.macro_f1 !== undefined ? (100 * r.macro_f1).toFixed(1) : '-', formatBytes(r.bytes), r.reason ?? ''] : ['not started here', '-', '-', ''];
      } })) out(l);
      out('macro-F1: the first eval split (a sweep\'s points: validation); ranking and the best point: bsft report --sweep ' + sweep.name);
      return EXIT.ok;
    }
    if (!found.length) {
      out(`no runs in ${dir}`);
      return EXIT.ok;
    }
    const rows = found.map((r) => [
      r.run_id,
      r.method,
      r.conditioning,
      r.progress,
      r.macro_f1 !== undefined ? (100 * r.macro_f1).toFixed(1) : '-',
      formatBytes(r.bytes),
      r.changed_at.slice(0, 16).replace('T', ' '),
      r.reason ?? '',
    ]);
    for (const line of table([['run', 'method', 'conditioning', 'progress', 'macro-F1', 'size', 'changed (UTC)', 'reason'], ...rows], [1, 2, 3, 6, 7])) out(line);
    const sweeps = localSweeps(dir);
    if (sweeps.length) out(`sweeps: ${sweeps.join(', ')} (bsft runs --sweep NAME)`);
    return EXIT.ok;
  },
};
