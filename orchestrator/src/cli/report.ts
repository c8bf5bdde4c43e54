import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { findRunDir } from '../run/run-dir.js';
import { compare, formatComparison, html, markdown, notComparable } from '../score/report.js';
import { scoreRun } from '../score/run-scores.js';
import { EXIT, intOption, type Command } from './command.js';

export const reportCommand: Command = {
  name: 'report',
  summary: 'compare runs side by side (deltas with intervals, the paper\'s figures) as a table, JSON, Markdown and HTML',
  usage: 'bsft report <run...> [--split test] [--out DIR] [--bootstrap 1000] [--seed 42]',
  details: 'The first run is the baseline of the deltas. Writes report.json, report.md and report.html (self-contained, SVG charts) to --out.',
  options: { split: { type: 'string' }, out: { type: 'string' }, bootstrap: { type: 'string' }, seed: { type: 'string' } },
  optionHelp: {
    split: 'split to compare (default test)',
    out: 'output folder (default ./report)',
    bootstrap: 'bootstrap resamples (default 1000)',
    seed: 'bootstrap seed (default 42)',
  },
  positionals: [1, Infinity],
  async run(runs, values, { out }) {
    const split = (values.split as string | undefined) ?? 'test';
    const resamples = intOption(values, 'bootstrap') ?? 1000;
    const seed = intOption(values, 'seed') ?? 42;
    const dirs = runs.map((r) => findRunDir(r));
    const scored = [];
    for (const d of dirs) scored.push(await scoreRun(d, split, { resamples, seed }));
    const comparison = compare(scored, resamples, seed, notComparable(dirs));
    const dir = path.resolve((values.out as string | undefined) ?? 'report');
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'report.json'), `${JSON.stringify(comparison, null, 2)}\n`);
    writeFileSync(path.join(dir, 'report.md'), markdown(comparison));
    writeFileSync(path.join(dir, 'report.html'), html(comparison));
    out(formatComparison(comparison).join('\n'));
    out(`\nwritten: ${['report.json', 'report.md', 'report.html'].map((f) => path.relative(process.cwd(), path.join(dir, f))).join(', ')}`);
    return EXIT.ok;
  },
};
