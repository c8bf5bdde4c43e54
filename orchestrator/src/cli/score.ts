import { UsageError } from '../errors.js';
import { statSync } from 'node:fs';
import path from 'node:path';
import { findRunDir } from '../run/run-dir.js';
import { formatScore } from '../score/format.js';
import { runRecipe, scoreFile, scoreRun } from '../score/run-scores.js';
import { readHardSubset } from '../score/hard-subset.js';
import { EXIT, intOption, type CommandImpl } from './command.js';
import { hardDir } from './hard-subset.js';

export const scoreCommand: CommandImpl = {
  async run([target], values, { out }) {
    const resamples = intOption(values, 'bootstrap');
    const seed = intOption(values, 'seed');
    let isFile = false;
    try {
      isFile = statSync(target!).isFile();
    } catch {
      isFile = false;
    }
    if (isFile) {
      const tasks = (values.tasks as string[] | undefined) ?? [];
      if (tasks.length === 0) throw new UsageError('a predictions file needs --tasks <tasks.jsonl> with the gold labels');
      const s = await scoreFile(target!, tasks, { resamples: resamples ?? 1000, seed: seed ?? 42 });
      out(values.json ? JSON.stringify(s.report, null, 2) : formatScore(s.label, s.report).join('\n'));
      return EXIT.ok;
    }
    const subset = values['hard-subset'] ? readHardSubset(values['hard-subset'] as string, hardDir(values)) : undefined;
    const runDir = findRunDir(target!);
    const splits = (values.split as string[] | undefined) ?? runRecipe(runDir).eval.splits;
    if (subset && !splits.includes(subset.split)) throw new UsageError(`Hard subset ${subset.name} was derived on the ${subset.split} split: score --split ${subset.split}`);
    const reports = [];
    for (const split of splits) {
      const s = await scoreRun(runDir, split, { ...(resamples !== undefined ? { resamples } : {}), ...(seed !== undefined ? { seed } : {}),
        ...(subset && subset.split === split ? { subset: { name: subset.name, ids: subset.ids } } : {}) });
      reports.push(s.report);
      if (!values.json) out([...formatScore(s.label, s.report), `  written: ${path.relative(process.cwd(), path.join(runDir, 'score', `${split}.json`))}`, ''].join('\n'));
    }
    if (values.json) out(JSON.stringify(reports.length === 1 ? reports[0] : reports, null, 2));
    return EXIT.ok;
  },
};
