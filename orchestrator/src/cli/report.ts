import path from 'node:path';
import { findRunDir } from '../run/run-dir.js';
import { compare, formatComparison, writeReport } from '../score/report.js';
import { scoreRun } from '../score/run-scores.js';
import { EXIT, intOption, type CommandImpl } from './command.js';

export const reportCommand: CommandImpl = {
  async run(runs, values, { out }) {
    const split = values.split as string;
    const resamples = intOption(values, 'bootstrap')!;
    const seed = intOption(values, 'seed')!;
    const dirs = runs.map((r) => findRunDir(r));
    const scored = [];
    for (const d of dirs) scored.push(await scoreRun(d, split, { resamples, seed }));
    const comparison = compare(scored, resamples, seed);
    const written = writeReport(path.resolve(values.out as string), comparison);
    if (values.json) {
      out(JSON.stringify(comparison, null, 2));
      return EXIT.ok;
    }
    out(formatComparison(comparison).join('\n'));
    out(`\nwritten: ${written.map((f) => path.relative(process.cwd(), f)).join(', ')}`);
    return EXIT.ok;
  },
};
