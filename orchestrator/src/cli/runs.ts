import path from 'node:path';
import { listRuns } from '../run/local-runs.js';
import { formatBytes } from '../util/format-bytes.js';
import { table } from '../util/table.js';
import { EXIT, type CommandImpl } from './command.js';

/** `bsft runs`: the run folders of a runs folder, without Redis, the most recently changed first. */
export const runs: CommandImpl = {
  async run(_args, values, { out }) {
    const dir = path.resolve((values.dir as string | undefined) ?? 'runs');
    const found = listRuns(dir);
    if (values.json) {
      out(JSON.stringify(found, null, 2));
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
    return EXIT.ok;
  },
};
