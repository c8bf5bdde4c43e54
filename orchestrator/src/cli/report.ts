import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { findRunDir } from '../run/run-dir.js';
import { compare, formatComparison, html, markdown, notComparable } from '../score/report.js';
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
    const comparison = compare(scored, resamples, seed, notComparable(dirs));
    const dir = path.resolve(values.out as string);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'report.json'), `${JSON.stringify(comparison, null, 2)}\n`);
    writeFileSync(path.join(dir, 'report.md'), markdown(comparison));
    writeFileSync(path.join(dir, 'report.html'), html(comparison));
    if (values.json) {
      out(JSON.stringify(comparison, null, 2));
      return EXIT.ok;
    }
    out(formatComparison(comparison).join('\n'));
    out(`\nwritten: ${['report.json', 'report.md', 'report.html'].map((f) => path.relative(process.cwd(), path.join(dir, f))).join(', ')}`);
    return EXIT.ok;
  },
};
