import path from 'node:path';
import { UsageError } from '../errors.js';
import { findRunDir } from '../run/run-dir.js';
import { pct } from '../score/format.js';
import { deriveHardSubset, writeHardSubset } from '../score/hard-subset.js';
import { scoreRun } from '../score/run-scores.js';
import { table } from '../util/table.js';
import { EXIT, intOption, type CommandImpl, type OptionValues } from './command.js';

/** Where Hard subsets are kept: --hard-dir, else ./hard-subsets. */
export const hardDir = (values: OptionValues) => path.resolve((values['hard-dir'] as string | undefined) ?? 'hard-subsets');

/** `bsft hard-subset <name> --runs A B C`: the tasks of a split that most of the runs get wrong. */
export const hardSubset: CommandImpl = {
  async run([name], values, { out }) {
    const runs = (values.runs as string[] | undefined) ?? [];
    if (runs.length < 2) throw new UsageError('--runs takes at least two runs (run ids or folders): the strong models whose shared failures make the subset');
    if (values['max-correct'] !== undefined && values['max-share'] !== undefined) throw new UsageError('--max-correct and --max-share exclude each other');
    const share = values['max-share'] !== undefined ? Number(values['max-share']) : undefined;
    if (share !== undefined && !Number.isFinite(share)) throw new UsageError('--max-share must be a number, e.g. 0.5');
    const split = values.split as string;
    const scored = [];
    for (const r of runs) scored.push(await scoreRun(findRunDir(r), split, { resamples: 0 }, { write: false }));
    const subset = deriveHardSubset(name!, split, scored, { ...(values['max-correct'] !== undefined ? { maxCorrect: intOption(values, 'max-correct')! } : {}), ...(share !== undefined ? { maxShare: share } : {}) });
    const file = writeHardSubset(hardDir(values), subset);
    out(`Hard subset ${subset.name}: ${subset.ids.length} of ${subset.tasks} ${split} tasks (${pct(subset.ids.length / subset.tasks)}%) that at most ${subset.rule.max_correct} of the ${subset.rule.of} runs get right`);
    out(table([['run', `${split} macro-F1`], ...subset.runs.map((r) => [r.label, pct(r.macro_f1)])]).map((l) => `  ${l}`).join('\n'));
    out(`  runs right per task: ${subset.correct_histogram.map((n, k) => `${k}: ${n}`).join(', ')}`);
    out(table([['category', 'tasks', 'in the subset'], ...Object.entries(subset.per_category).map(([c, v]) => [c, String(v.tasks), String(v.hard)])]).map((l) => `  ${l}`).join('\n'));
    const rel = path.relative(process.cwd(), file);
    out(`written: ${rel.startsWith('..') ? file : rel}`);
    out(`use it:  bsft score <run> --hard-subset ${subset.name}   bsft report <runs...> --hard-subset ${subset.name}`);
    return EXIT.ok;
  },
};
